"""The device check's models and timing helpers (scripts/gpu_check.py): the weights it uses,
random-weight stand-ins in real layouts, dtypes per device, PSNR, and throughput loops."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

FACES = ROOT / "models/faces"
FASHION = ROOT / "models/fashion"
FORTUNE = ROOT / "models/fortune"
SPEECH_TEXT = "Hello there, how are you today? The weather is fine."  # engine and served alike
SMOL_135M = {  # HuggingFaceTB/SmolLM2-135M's layout (its config.json); weights are random
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _dtypes(device: str) -> list[torch.dtype]:
    reduced = [torch.float16, torch.bfloat16] if device.startswith("cuda") else [torch.bfloat16]
    return [torch.float32, *reduced]


REDUCED = [torch.float16, torch.bfloat16]  # quality is measured for both on any device


def _vits(a: argparse.Namespace, device: str, real_on_cpu: bool = False) -> tuple[Path, str]:
    """The VITS layout to measure: the real one, or a tiny one for --quick and, for throughput,
    on CPU (the real layout takes seconds per utterance on a CPU)."""
    if a.quick or not (device.startswith("cuda") or real_on_cpu):
        from scripts.tiny_models import make_vits_model

        return make_vits_model(Path(tempfile.mkdtemp()) / "vits"), "random, tiny (tests)"
    return _random_vits(Path(tempfile.mkdtemp()) / "vits"), "random, VitsConfig() layout"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _pixels(images: torch.Tensor) -> np.ndarray:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB; None when the images are identical (JSON has no infinity)."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return None if mse == 0 else round(10 * math.log10(255.0**2 / mse), 2)


def _have_faces() -> bool:
    return (FACES / "model.safetensors").exists()


def _encode_threads(device: str) -> int:
    """PNG threads per face-GAN replica, the same in the engine and the served sections."""
    return 4 if device.startswith("cuda") else 1


def _throughput(step: Callable[[], Any], items: int, seconds: float, device: str) -> float:
    """Items/s of `step()`: one warm-up call, then calls for `seconds`."""
    step()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += items
    _sync(device)
    return round(n / (time.perf_counter() - t0), 1)


async def _athroughput(run: Callable[[], Awaitable[Any]], items: int, seconds: float) -> float:
    await run()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await run()
        n += items
    return round(n / (time.perf_counter() - t0), 1)


def _faces(device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    from services.image.networks import build_generator, load_generator

    if _have_faces():
        return load_generator(FACES, device=device)
    # same architecture, random weights: the FLOPs are what is measured (quality is skipped)
    meta = {"architecture": "dcgan64", "latent_dim": 100, "channels": 3, "labels": []}
    return build_generator(meta).to(device).eval(), {**meta, "random": True}


def _random_vits(path: Path, seed: int = 0) -> Path:
    """A VITS with `VitsConfig()`'s layout (that of facebook/mms-tts-eng), random weights, and a
    character tokenizer, saved as a Hugging Face checkpoint for the engine."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    if (path / "config.json").exists():
        return path
    from scripts.tiny_models import make_vits_model

    tiny = make_vits_model(path.parent / "vits-tokenizer")  # its tokenizer: characters
    tokenizer = VitsTokenizer.from_pretrained(tiny)
    torch.manual_seed(seed)
    model = VitsModel(VitsConfig(vocab_size=len(tokenizer))).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _random_smol(path: Path, seed: int = 0) -> Path:
    """SmolLM2-135M's layout with random weights and fortune's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (path / "config.json").exists():
        return path
    tokenizer = AutoTokenizer.from_pretrained(FORTUNE)
    fortune = json.loads((FORTUNE / "config.json").read_text())
    config = LlamaConfig(
        vocab_size=fortune["vocab_size"],
        bos_token_id=fortune.get("bos_token_id"),
        eos_token_id=fortune.get("eos_token_id"),
        pad_token_id=fortune.get("pad_token_id"),
        **SMOL_135M,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    for name in ("generation_config.json", "chat_template.jinja"):
        if (FORTUNE / name).exists():
            (path / name).write_bytes((FORTUNE / name).read_bytes())
    return path


# -- sections -------------------------------------------------------------------------------------
