"""Tiny models built in code: real architectures, random weights, no network. The tests'
stand-in models (tests/tiny_models.py) and the device check (scripts/gpu_check.py) use them."""

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
