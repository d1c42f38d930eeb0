"""Device check: quality per dtype, raw vs engine vs served throughput per modality, batch sweeps.

Sized for one H200 in under 8 minutes (`--budget-s`, default 420: a section that would start
with less than its reserve left is skipped and says so). Each section runs in a process of its
own with a time limit, and the report is rewritten after every section, so a run cut short
still returns what it measured. Sections:

- env: device, torch, CUDA.
- quality: each reduced precision against float32 on the same seeds. Faces: PSNR of the
  pixels. Fashion: PSNR, and the share of samples the independent judge
  (models/fashion-classifier) gives the requested label. VITS: SNR and length agreement
  of the waveform (random weights in the `VitsConfig()` layout: no checkpoint is offline).
- gan_raw: generator forward only, images/s by batch size and dtype.
- gan_compile: eager vs `torch.compile` (CUDA graphs on CUDA) at two batch sizes.
- gan_engine: our engine (seeded latents, forward, uint8, PNG on a thread pool), eager and
  compiled, images/s by batch size.
- text_engine: our continuous-batching engine, output tokens/s by concurrency (the served
  section's request: default sampling, up to 64 tokens, stops at EOS), with the fortune model
  and a random-weight model in the SmolLM2-135M layout (fortune's tokenizer).
- vits_engine: utterances/s by batch size and dtype.
- served: the whole stack (Ray Serve + gateway, gRPC client) per modality, closed loop (the
  face GAN with one and with two batches in flight), and its ratio to the engine measured
  above at the nearest batch size.

    python scripts/gpu_check.py --out "$OUT/gpu_check.json"          # on the GPU machine
    .venv/bin/python scripts/gpu_check.py --device cpu --quick       # here: the code runs
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: scripts.* and the project import from ROOT

from scripts.gpu_check_models import (  # noqa: E402
    FACES,
    FASHION,
    FORTUNE,
    REDUCED,
    SPEECH_TEXT,
    _athroughput,
    _dtypes,
    _encode_threads,
    _faces,
    _have_faces,
    _name,
    _pixels,
    _psnr,
    _random_smol,
    _sync,
    _throughput,
    _vits,
)
from scripts.gpu_check_served import _ratios, served  # noqa: E402


def env(device: str, a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "c_compiler": shutil.which("cc") or shutil.which("gcc"),  # Triton/inductor need one
        "quick": a.quick,
    }
    if device.startswith("cuda"):
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return out


@torch.inference_mode()
def quality(device: str, a: argparse.Namespace) -> dict[str, Any]:
    from services.image.networks import load_classifier, load_generator

    out: dict[str, Any] = {}
    n = 32 if a.quick else 256
    g = torch.Generator().manual_seed(0)
    if _have_faces():
        model, meta = load_generator(FACES, device=device)
        z = torch.randn(n, int(meta["latent_dim"]), generator=g).to(device)
        ref = _pixels(model(z, None))
        faces: dict[str, Any] = {"images": n}
        for dtype in REDUCED:  # a fresh copy per dtype: no weights rounded by an earlier one
            px = _pixels(copy.deepcopy(model).to(dtype)(z.to(dtype), None))
            faces[_name(dtype)] = {
                "psnr_db": _psnr(ref, px),
                "max_abs_diff": int(np.abs(ref.astype(int) - px.astype(int)).max()),
            }
        out["faces"] = faces
    model, meta = load_generator(FASHION, device=device)
    judge, _ = load_classifier(ROOT / "models/fashion-classifier")
    judge = judge.to(device).eval()
    labels = torch.arange(len(meta["labels"])).repeat_interleave(n // len(meta["labels"]) + 1)
    labels = labels[: max(n, len(meta["labels"]))].to(device)
    z = torch.randn(len(labels), int(meta["latent_dim"]), generator=g).to(device)
    fashion: dict[str, Any] = {"images": len(labels)}
    ref_images = model(z, labels)
    ref = _pixels(ref_images)
    fashion["float32_judged_as_requested"] = round(
        float((judge(ref_images.float()).argmax(1) == labels).float().mean()), 4
    )
    for dtype in REDUCED:
        images = copy.deepcopy(model).to(dtype)(z.to(dtype), labels).float()
        fashion[_name(dtype)] = {
            "psnr_db": _psnr(ref, _pixels(images)),
            "judged_as_requested": round(
                float((judge(images).argmax(1) == labels).float().mean()), 4
            ),
        }
    out["fashion"] = fashion

    from transformers import VitsModel

    path, layout = _vits(a, device, real_on_cpu=True)  # a few utterances: numerics, not speed
    vits = VitsModel.from_pretrained(path).to(device).eval()
    vits.noise_scale = vits.noise_scale_duration = 0.0  # deterministic: no sampling noise
    ids = torch.randint(1, vits.config.vocab_size, (4, 40), generator=g).to(device)
    ref_wave = vits(input_ids=ids).waveform.float()
    # as the engine runs it: float32 weights, reduced precision by autocast
    voice: dict[str, Any] = {"weights": layout, "utterances": 4, "how": "autocast"}
    for dtype in [torch.float32, *REDUCED]:  # float32 again: the control (same run twice)
        with torch.autocast(device.split(":")[0], dtype, enabled=dtype != torch.float32):
            wave = vits(input_ids=ids).waveform.float()
        m = min(wave.shape[-1], ref_wave.shape[-1])
        err = float(((wave[..., :m] - ref_wave[..., :m]) ** 2).sum())
        voice[_name(dtype)] = {
            "snr_db": round(
                10 * math.log10(float((ref_wave[..., :m] ** 2).sum()) / max(err, 1e-12)), 2
            ),
            "samples": [int(wave.shape[-1]), int(ref_wave.shape[-1])],
        }
    out["vits"] = voice
    return out


@torch.inference_mode()
def gan_raw(device: str, a: argparse.Namespace) -> dict[str, Any]:
    model, meta = _faces(device)
    out: dict[str, Any] = {"weights": "random dcgan64" if meta.get("random") else "faces"}
    for dtype in _dtypes(device):
        m = model.to(dtype)
        rows = {}
        for b in a.batches:
            z = torch.randn(b, int(meta["latent_dim"]), device=device, dtype=dtype)
            rows[b] = _throughput(lambda m=m, z=z: m(z, None), b, a.seconds, device)
        out[f"{_name(dtype)}_images_per_s"] = rows
    model.float()
    return out


@torch.inference_mode()
def gan_compile(device: str, a: argparse.Namespace) -> dict[str, Any]:
    cuda = device.startswith("cuda")
    model, meta = _faces(device)
    dtype = torch.float16 if cuda else torch.float32
    mode = "reduce-overhead" if cuda else "default"
    model = model.to(dtype)
    compiled = torch.compile(model, mode=mode, dynamic=False)
    out: dict[str, Any] = {"dtype": _name(dtype), "mode": mode}
    for b in [8] if a.quick else [64, 512]:
        z = torch.randn(b, int(meta["latent_dim"]), device=device, dtype=dtype)
        t0 = time.perf_counter()
        for _ in range(3):  # compile, then CUDA graph warm-up and recording
            compiled(z, None)
        _sync(device)
        compile_s = round(time.perf_counter() - t0, 1)
        eager = _throughput(lambda z=z: model(z, None), b, a.seconds, device)
        fast = _throughput(lambda z=z: compiled(z, None), b, a.seconds, device)
        out[b] = {"compile_s": compile_s, "eager_images_per_s": eager,
                  "compiled_images_per_s": fast, "speedup": round(fast / eager, 2)}  # fmt: skip
    return out


async def gan_engine(device: str, a: argparse.Namespace) -> dict[str, Any]:
    from core.config import ModelConfig
    from core.types import ImageRequest
    from scripts.tiny_models import make_image_model
    from services.image.gan_engine import GanImageEngine

    cuda = device.startswith("cuda")
    weights = FACES if _have_faces() else make_image_model(Path(tempfile.mkdtemp()) / "gan")
    threads = _encode_threads(device)
    eager_batches = sorted({*a.batches[:5], 8 if a.quick else 64})  # 64: the served concurrency
    biggest = max(eager_batches)
    variants: dict[str, dict[str, Any]] = {
        "eager": {"dtype": "float16" if cuda else "float32"},
        "compiled": {
            "dtype": "float16" if cuda else "float32",
            "compile": True,
            "buckets": [8] if a.quick else [64, 256],
        },
    }
    out: dict[str, Any] = {"encode_threads": threads}
    for name, options in variants.items():
        forward = max(256, biggest) if name == "eager" else max(options["buckets"])
        cfg = ModelConfig(
            name="g", modality="image", engine="gan", weights=str(weights), device=device,
            options={**options, "encode_threads": threads, "max_forward_batch": forward},
            batching={"max_batch_size": biggest}, limits={"max_images": biggest},
        )  # fmt: skip
        engine = GanImageEngine(cfg)
        batches = eager_batches if name == "eager" else options["buckets"]
        rows: dict[int, float] = {}
        try:  # each variant on its own: a compile failure keeps the eager figures
            await engine.start()
            for b in batches:
                reqs = [ImageRequest(f"r{i}", "g", count=1, seed=i) for i in range(b)]
                run = engine.generate_batch
                rows[b] = await _athroughput(lambda r=reqs, run=run: run(r), b, a.seconds)
            out[name] = {"load_s": round(engine.load_seconds, 1), "images_per_s": rows, **options}
        except Exception as exc:
            traceback.print_exc()
            out[name] = {"error": f"{type(exc).__name__}: {exc}", "images_per_s": rows, **options}
        finally:
            await engine.stop()
    return out


async def text_engine(device: str, a: argparse.Namespace) -> dict[str, Any]:
    from core.config import ModelConfig
    from core.types import TextRequest
    from services.text.transformers_engine import TransformersTextEngine

    models = {"fortune": FORTUNE}
    if not a.quick:
        models["smol135m_layout_random"] = _random_smol(Path(tempfile.mkdtemp()) / "smol")
    tokens = 16 if a.quick else 64
    out: dict[str, Any] = {"max_tokens": tokens}
    for name, path in models.items():
        rows = {}
        for c in [1, 4] if a.quick else [1, 16, 64]:
            cfg = ModelConfig(
                name="t", modality="text", engine="transformers", weights=str(path),
                device=device, options={"add_bos_token": True},
                batching={"max_batch_size": c, "batch_wait_timeout_s": 0.002},
            )  # fmt: skip
            engine = TransformersTextEngine(cfg)

            async def one(i: int, e: TransformersTextEngine = engine) -> int:
                # the request the served section sends (default sampling, stops at EOS), so
                # served_over_engine compares like with like
                request = TextRequest(f"r{i}", "t", prompt="A computer is", max_tokens=tokens,
                                      seed=i)  # fmt: skip
                return (await e.generate(request)).completion_tokens

            try:
                await engine.start()
                await asyncio.gather(*[one(-1 - i) for i in range(c)])  # warm-up
                t0 = time.perf_counter()
                done = sum(await asyncio.gather(*[one(i) for i in range(3 * c)]))
                rows[c] = round(done / (time.perf_counter() - t0), 1)
            finally:
                await engine.stop()
        out[f"{name}_tokens_per_s_by_concurrency"] = rows
    return out


async def vits_engine(device: str, a: argparse.Namespace) -> dict[str, Any]:
    from core.config import ModelConfig
    from core.types import AudioRequest
    from services.audio.vits_engine import VitsAudioEngine

    path, layout = _vits(a, device)
    text = SPEECH_TEXT
    batches = [1, 8] if a.quick else [1, 8, 32]
    out: dict[str, Any] = {"weights": layout, "text_chars": len(text)}
    for dtype in ["float32", "float16"] if device.startswith("cuda") else ["float32"]:
        cfg = ModelConfig(name="v", modality="audio", engine="vits", weights=str(path),
                          device=device, options={"max_forward_batch": max(batches),
                                                  "dtype": dtype})  # fmt: skip
        engine = VitsAudioEngine(cfg)
        rows = {}
        try:
            await engine.start()
            for b in batches:
                reqs = [AudioRequest(f"r{i}", "v", text=text, seed=i) for i in range(b)]
                run = engine.generate_pcm
                rows[b] = await _athroughput(lambda r=reqs, run=run: run(r), b, a.seconds)
        finally:
            await engine.stop()
        out[f"{dtype}_utterances_per_s"] = rows
    return out


# name -> (function, reserve: the least budget it starts with, cap: the most it may take)
SECTIONS: dict[str, tuple[Callable[..., Any], float, float]] = {
    "env": (env, 0, 60),
    "quality": (quality, 20, 180),
    "gan_raw": (gan_raw, 30, 150),
    "gan_compile": (gan_compile, 90, 240),
    "gan_engine": (gan_engine, 90, 240),
    "text_engine": (text_engine, 60, 200),
    "vits_engine": (vits_engine, 30, 150),
    "served": (served, 100, 330),
}


def _setup(a: argparse.Namespace) -> str:
    a.seconds = 0.3 if a.quick else 1.5
    a.batches = [1, 8, 32] if a.quick else [1, 8, 32, 128, 512, 2048]
    return str(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def worker(a: argparse.Namespace) -> None:
    """`--worker NAME`: one section in this process; its result (or error) to `--out`."""
    device = _setup(a)
    try:
        result = SECTIONS[a.worker][0](device, a)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(a.out).write_text(json.dumps(result))


def main(a: argparse.Namespace) -> dict[str, Any]:
    """Each section runs in a process of its own, with a time limit: a crash, a hang or a
    sticky CUDA error stays in its section, and no compiled graph, CUDA graph pool or Ray
    cluster outlives it."""
    device = _setup(a)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "sections": {}}
    t_start = time.monotonic()
    wanted = [s for s in SECTIONS if s in a.sections and not (s == "served" and a.no_served)]
    for name in wanted:
        _, reserve, cap = SECTIONS[name]
        left = a.budget_s - (time.monotonic() - t_start)
        if left < reserve:
            report[name] = {"skipped": f"budget: {left:.0f}s left, {reserve:.0f}s needed"}
            continue
        limit = max(reserve, min(cap, left))
        print(f"[gpu_check] {name} (at most {limit:.0f}s; {left:.0f}s of budget left)", flush=True)
        t0 = time.monotonic()
        part = Path(tempfile.mkdtemp()) / f"{name}.json"
        cmd = [sys.executable, __file__, "--worker", name, "--device", device, "--out", str(part),
               "--budget-s", str(limit), *(["--quick"] if a.quick else [])]  # fmt: skip
        try:
            code = subprocess.run(cmd, timeout=limit, check=False).returncode
            report[name] = (
                json.loads(part.read_text())
                if part.exists()
                else {"error": f"the section's process exited with {code} and no result"}
            )
        except subprocess.TimeoutExpired:
            report[name] = {"error": f"timed out after {limit:.0f}s"}
        report["sections"][name] = round(time.monotonic() - t0, 1)
        report["served_over_engine"] = _ratios(report)
        report["seconds"] = round(time.monotonic() - t_start, 1)
        out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if seen)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the code")
    p.add_argument("--no-served", action="store_true", help="skip the Ray + gateway part")
    p.add_argument("--sections", default=",".join(SECTIONS), type=lambda s: s.split(","))
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting sections after")
    p.add_argument("--out", default="bench-results/gpu_check.json")
    p.add_argument("--worker", choices=list(SECTIONS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
    else:
        print(json.dumps(main(args), indent=2))
