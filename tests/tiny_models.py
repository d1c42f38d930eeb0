"""Tiny models built in code for tests: real architectures, random weights, no network."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a computer is a machine that follows instructions",
    "hello there, how are you today?",
    "streaming tokens one by one is what users expect",
] * 20


def make_text_model(path: Path, vocab_size: int = 300, seed: int = 0) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    if (path / "config.json").exists():
        return path
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        padding_side="left",
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
    ).save_pretrained(path)
    return path


def make_image_model(path: Path, labels: list[str] | None = None, seed: int = 0) -> Path:
    """A random-weight class-conditional 28x28 generator in the served artifact format."""
    import json

    import torch
    from safetensors.torch import save_file

    from services.image.networks import CONFIG_FILE, WEIGHTS_FILE, build_generator

    if (path / CONFIG_FILE).exists():
        return path
    config = {
        "architecture": "cgan28",
        "latent_dim": 16,
        "image_size": 28,
        "channels": 1,
        "labels": labels or ["circle", "square", "triangle"],
        "kwargs": {"embed_dim": 8, "base": 16},
        "license": "test",
        "source": "built in tests",
    }
    torch.manual_seed(seed)
    model = build_generator(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(config))
    return path


REPO = Path(__file__).resolve().parents[1]
# SmolLM2-135M-Instruct's Q4_1 GGUF, fetched by `make assets` (a dependency of `make test`).
SMOLLM2_GGUF = REPO / "models" / "smollm2-gguf"


def gguf_model_config(name: str = "gguf") -> dict:
    """SmolLM2's GGUF on the llamacpp engine, as configs/local.yaml serves it, with a smaller
    KV cache: 16 sequences of up to 512 tokens."""
    return {
        "name": name,
        "modality": "text",
        "engine": "llamacpp",
        "weights": str(SMOLLM2_GGUF),
        "options": {
            "prompt_format": "chat",
            "default_max_tokens": 32,
            "context_per_sequence": 512,
            "kv_cells": 4096,
        },
        "batching": {"max_batch_size": 16},
        "scaling": {"max_ongoing_requests": 64},
        "resources": {"num_cpus": 0.25, "torch_threads": 1},
        "limits": {"max_tokens": 256, "max_n": 4},
    }


def stack_config(root: Path) -> dict:
    """The integration stack: tiny text and image models, SmolLM2's GGUF on llama.cpp (when
    `make assets` fetched it), real speech, an echo per modality."""
    text = make_text_model(root / "tiny-text")
    image = make_image_model(root / "tiny-gan")
    small = {"num_cpus": 0.25, "torch_threads": 1}
    gguf = [gguf_model_config()] if SMOLLM2_GGUF.is_dir() else []
    return {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "refresh_models_s": 1.0},
        "ray": {"num_cpus": 4},
        "models": [
            {
                "name": "tiny",
                "modality": "text",
                "engine": "transformers",
                "weights": str(text),
                "default": True,
                "options": {"add_bos_token": True, "default_max_tokens": 16},
                "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.005},
                "resources": small,
                "limits": {"max_tokens": 100, "max_n": 3},
            },
            *gguf,
            {
                "name": "echo-text",
                "modality": "text",
                "engine": "echo",
                "options": {"delay_s": 0.05},
                "resources": {"num_cpus": 0.1},
            },
            {
                # 250 ms before every word: a long prompt streams for minutes, so a test that
                # cancels after the first chunk cancels a stream that is certainly still running
                "name": "slow-text",
                "modality": "text",
                "engine": "echo",
                "options": {"delay_s": 0.25},
                "resources": {"num_cpus": 0.1},
            },
            {
                "name": "shapes",
                "modality": "image",
                "engine": "gan",
                "weights": str(image),
                "default": True,
                # two batches in flight: one encodes PNGs while the next runs the generator
                "batching": {
                    "max_batch_size": 16,
                    "batch_wait_timeout_s": 0.01,
                    "max_concurrent_batches": 2,
                },
                "resources": small,
                "limits": {"max_images": 16},
            },
            {
                "name": "echo-image",
                "modality": "image",
                "engine": "echo",
                # a batch takes 50 ms; two may be in flight (tests count them)
                "options": {"delay_s": 0.05},
                "batching": {
                    "max_batch_size": 4,
                    "batch_wait_timeout_s": 0.0,
                    "max_concurrent_batches": 2,
                },
                "limits": {"max_images": 4},
                # eight 4-image requests at once are queued at the gateway, not refused
                "admission": {"max_queue_wait_s": 10},
                "resources": {"num_cpus": 0.1},
            },
            {
                "name": "speech",
                "modality": "audio",
                "engine": "hibari",
                "default": True,
                "resources": small,
                "limits": {"max_text_chars": 500},
            },
            {
                "name": "echo-audio",
                "modality": "audio",
                "engine": "echo",
                "resources": {"num_cpus": 0.1},
            },
        ],
    }


def make_vits_model(path: Path, seed: int = 0) -> Path:
    """A random tiny VITS (character vocabulary, no phonemizer) in Hugging Face format."""
    import json

    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    chars = list(" abcdefghijklmnopqrstuvwxyz.,!?'")
    (path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(["<pad>", *chars])}))
    tok = VitsTokenizer(
        str(path / "vocab.json"), phonemize=False, add_blank=True, pad_token="<pad>",
        unk_token="<pad>",
    )  # fmt: skip
    config = VitsConfig(
        vocab_size=len(chars) + 1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ffn_dim=32, flow_size=16, spectrogram_bins=17, upsample_initial_channel=16,
        upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1]], prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1, duration_predictor_filter_channels=16,
        depth_separable_num_layers=1, sampling_rate=16000,
    )  # fmt: skip
    torch.manual_seed(seed)
    VitsModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path
