"""The test stack's models: tiny ones built in code (scripts/tiny_models.py: real
architectures, random weights, no network) and SmolLM2's GGUF from `make assets`."""

from __future__ import annotations

from pathlib import Path

from scripts.tiny_models import CORPUS, make_image_model, make_text_model, make_vits_model

__all__ = [
    "CORPUS",
    "HERMES_TEMPLATE",
    "SMOLLM2_GGUF",
    "gguf_model_config",
    "hermes_model_config",
    "make_image_model",
    "make_text_model",
    "make_vits_model",
    "stack_config",
]

REPO = Path(__file__).resolve().parents[1]
# SmolLM2-135M-Instruct's Q4_1 GGUF, fetched by `make assets` (a dependency of `make test`).
SMOLLM2_GGUF = REPO / "models" / "smollm2-gguf"
# ChatML with Hermes' tool syntax (<tools>, <tool_call>, <tool_response>), in Qwen2.5's style
HERMES_TEMPLATE = REPO / "configs" / "chat-templates" / "chatml-hermes-tools.jinja"


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


def hermes_model_config(name: str = "gguf-hermes") -> dict:
    """The same GGUF with a chat template that has Hermes' tool syntax (the `chat_template`
    setting), so tools take the native format: a smaller batch and KV cache beside `gguf`."""
    spec = gguf_model_config(name)
    spec["chat_template"] = str(HERMES_TEMPLATE)
    spec["options"] = {**spec["options"], "kv_cells": 2048}
    spec["batching"] = {"max_batch_size": 4}
    spec["scaling"] = {"max_ongoing_requests": 16}
    return spec


def stack_config(root: Path) -> dict:
    """The integration stack: tiny text and image models, SmolLM2's GGUF on llama.cpp (when
    `make assets` fetched it: with its own template, and with the Hermes tool template), real
    speech, a video model over the tiny GAN, an echo per modality (video's a slow one: a clip
    that is certainly still being made when a test acts on it)."""
    text = make_text_model(root / "tiny-text")
    image = make_image_model(root / "tiny-gan")
    small = {"num_cpus": 0.25, "torch_threads": 1}
    gguf = [gguf_model_config(), hermes_model_config()] if SMOLLM2_GGUF.is_dir() else []
    return {
        "gateway": {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "refresh_models_s": 1.0,
            "jobs": {"state_dir": str(root / "state"), "lease_s": 3.0, "max_file_mb": 1},
        },
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
                # clips walked through the tiny GAN (labels circle, square, triangle), 28x28
                "name": "shapes-video",
                "modality": "video",
                "engine": "gan",
                "weights": str(image),
                "options": {"fps": 8, "max_seconds": 4, "max_forward_batch": 8},
                "resources": small,
            },
            {
                # one second of clip takes one second (flat 16x16 frames whose colour walks away
                # from the seed's, 4 a second): a test that kills a gateway or deletes a job
                # while a clip is made acts on one that is certainly still being made
                "name": "slow-video",
                "modality": "video",
                "engine": "echo",
                "options": {"size": 16, "fps": 4, "max_seconds": 8, "delay_s": 1.0},
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
