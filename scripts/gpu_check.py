"""Device check: raw vs served throughput per modality on CUDA, with batch-size sweeps.

Runs our engines in-process (the "raw" limit and the engine-level path) and, when Ray is
importable, the whole stack (gateway + Serve) with a GPU config, then writes one JSON report.
Sized to finish in under 8 minutes on one H200; `--quick` is a CPU smoke run of the same code.

    python scripts/gpu_check.py --out "$OUT/gpu_check.json"          # on the GPU machine
    .venv/bin/python scripts/gpu_check.py --device cpu --quick       # here, to check it runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_models builds the random-weight stand-in models


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gan_raw(device: str, batches: list[int], seconds: float) -> dict[str, Any]:
    """Generator forward only (fp32 and fp16), images/s per batch size."""
    from services.image.networks import build_generator, load_generator

    faces = ROOT / "models/faces"
    if (faces / "model.safetensors").exists():
        model, meta = load_generator(faces, device=device)
    else:  # same architecture, random weights: the FLOPs are what is measured
        meta = {"architecture": "dcgan64", "latent_dim": 100, "channels": 3, "labels": []}
        model = build_generator(meta).to(device).eval()
    out: dict[str, Any] = {"weights": "faces" if faces.exists() else "random dcgan64"}
    dtypes = [torch.float32] + ([torch.float16] if device.startswith("cuda") else [])
    for dtype in dtypes:
        m = model.to(dtype)
        rows = {}
        for b in batches:
            z = torch.randn(b, int(meta["latent_dim"]), device=device, dtype=dtype)
            with torch.inference_mode():
                m(z, None)
                _sync(device)
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    m(z, None)
                    n += b
                _sync(device)
            rows[b] = round(n / (time.perf_counter() - t0), 1)
        out[str(dtype).removeprefix("torch.")] = rows
    return out


async def _sweep(
    run: Callable[[int], Awaitable[Any]], batches: list[int], seconds: float
) -> dict[int, float]:
    """Items/s of `run(batch)` per batch size: one warm-up call, then `seconds` of calls."""
    rows = {}
    for b in batches:
        await run(b)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await run(b)
            n += b
        rows[b] = round(n / (time.perf_counter() - t0), 1)
    return rows


async def gan_engine(device: str, batches: list[int], seconds: float) -> dict[str, Any]:
    """Engine path (latents per seed, forward, uint8, PNG on a thread pool), images/s."""
    from aigc.config import ModelConfig
    from services.image.gan_engine import GanImageEngine
    from services.types import ImageRequest
    from tests.tiny_models import make_image_model

    faces = ROOT / "models/faces"
    weights = faces if faces.exists() else make_image_model(Path(tempfile.mkdtemp()) / "gan")
    cfg = ModelConfig(
        name="g", modality="image", engine="gan", weights=str(weights), device=device,
        options={"half": True, "encode_threads": 8}, batching={"max_batch_size": max(batches)},
        limits={"max_images": max(batches)},
    )  # fmt: skip
    engine = GanImageEngine(cfg)
    await engine.start()
    rows = await _sweep(
        lambda b: engine.generate_batch(
            [ImageRequest(f"r{i}", "g", count=1, seed=i) for i in range(b)]
        ),
        batches,
        seconds,
    )
    await engine.stop()
    return {"images_per_s_by_batch": rows}


async def text_engine(device: str, concurrency: list[int], tokens: int) -> dict[str, Any]:
    """Our transformers engine on the device: output tokens/s by concurrency (fortune model)."""
    from aigc.config import ModelConfig
    from services.text.transformers_engine import TransformersTextEngine
    from services.types import TextRequest

    rows = {}
    for c in concurrency:
        cfg = ModelConfig(
            name="t", modality="text", engine="transformers", weights=str(ROOT / "models/fortune"),
            device=device, options={"add_bos_token": True},
            batching={"max_batch_size": c, "batch_wait_timeout_s": 0.002},
        )  # fmt: skip
        engine = TransformersTextEngine(cfg)
        await engine.start()

        async def one(i: int, e: TransformersTextEngine = engine) -> int:
            r = await e.generate(
                TextRequest(
                    f"r{i}",
                    "t",
                    prompt=f"A computer is {i}",
                    max_tokens=tokens,
                    temperature=0,
                    ignore_eos=True,
                )
            )
            return r.completion_tokens

        await one(-1)
        t0 = time.perf_counter()
        done = sum(await asyncio.gather(*[one(i) for i in range(2 * c)]))
        rows[c] = round(done / (time.perf_counter() - t0), 1)
        await engine.stop()
    return {"output_tokens_per_s_by_concurrency": rows}


async def vits_engine(device: str, batches: list[int], seconds: float) -> dict[str, Any]:
    """VITS (random tiny config: no checkpoint offline), utterances/s by batch size."""
    from aigc.config import ModelConfig
    from services.audio.vits_engine import VitsAudioEngine
    from services.types import AudioRequest
    from tests.tiny_models import make_vits_model

    path = make_vits_model(Path(tempfile.mkdtemp()) / "vits")
    cfg = ModelConfig(name="v", modality="audio", engine="vits", weights=str(path), device=device,
                      options={"max_forward_batch": max(batches)})  # fmt: skip
    engine = VitsAudioEngine(cfg)
    await engine.start()
    text = "hello there, how are you today?"
    rows = await _sweep(
        lambda b: engine.synthesize_pcm([AudioRequest(f"r{i}", "v", text=text) for i in range(b)]),
        batches,
        seconds,
    )
    await engine.stop()
    return {"utterances_per_s_by_batch": rows, "weights": "random tiny VITS"}


async def served(device: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """The whole stack (Ray + gateway) with GPU models, closed loop per modality."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "ray is not installed on this machine"}
    from aigc import AsyncClient
    from aigc.config import parse_config
    from aigc.stack import LocalStack

    models: list[dict[str, Any]] = [
        {"name": "faces", "modality": "image", "engine": "gan", "device": device,
         "weights": str(ROOT / "models/faces"), "options": {"half": device != "cpu"},
         "batching": {"max_batch_size": 64}, "limits": {"max_images": 64},
         "resources": {"num_cpus": 1, "num_gpus": 0.3 if device != "cpu" else 0}},
        {"name": "fortune", "modality": "text", "engine": "transformers", "device": device,
         "weights": str(ROOT / "models/fortune"), "options": {"add_bos_token": True},
         "batching": {"max_batch_size": 64}, "scaling": {"max_ongoing_requests": 128},
         "resources": {"num_cpus": 1, "num_gpus": 0.3 if device != "cpu" else 0}},
    ]  # fmt: skip
    if not (ROOT / "models/faces/model.safetensors").exists():
        models = models[1:]
    cfg = parse_config({"gateway": {"port": 0, "metrics_port": 0}, "ray": {"num_cpus": 8},
                        "models": models})  # fmt: skip
    stack = LocalStack(cfg, port=0, metrics_port=0, ray_metrics_port=0)
    await stack.start(timeout_s=300)
    out: dict[str, Any] = {}
    try:
        target = f"127.0.0.1:{stack.gateway.port}"
        async with AsyncClient(target, timeout=60) as c:
            for name, call, unit in (
                ("text", lambda: c.generate_text("A computer is", max_tokens=64), "tokens"),
                ("image", lambda: c.generate_images(count=1), "images"),
            ):
                if name == "image" and len(models) == 1:
                    continue
                count, t0 = 0, time.perf_counter()

                async def loop(call: Any = call, unit: str = unit, t0: float = t0) -> None:
                    nonlocal count
                    while time.perf_counter() - t0 < seconds:
                        r = await call()
                        tokens = unit == "tokens"
                        count += r.usage.completion_tokens if tokens else len(r.images)

                await asyncio.gather(*[loop() for _ in range(concurrency)])
                out[f"{name}_{unit}_per_s"] = round(count / (time.perf_counter() - t0), 1)
    finally:
        await stack.stop(grace_s=1)
    return out


async def main(a: argparse.Namespace) -> dict[str, Any]:
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    secs = 0.5 if a.quick else 3.0
    batches = [1, 8, 32] if a.quick else [1, 8, 32, 128, 512, 2048]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else platform.processor(),
        "torch": torch.__version__,
    }
    t0 = time.perf_counter()
    report["gan_raw"] = gan_raw(device, batches, secs)
    report["gan_engine"] = await gan_engine(device, batches[:5], secs)
    report["text_engine"] = await text_engine(device, [1, 4] if a.quick else [1, 8, 32, 64], 32)
    report["vits_engine"] = await vits_engine(device, batches[:4], secs)
    if not a.no_served:
        report["served"] = await served(device, 8 if a.quick else 64, secs * 3)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the code")
    p.add_argument("--no-served", action="store_true", help="skip the Ray + gateway part")
    p.add_argument("--out", default="bench-results/gpu_check.json")
    args = p.parse_args()
    result = asyncio.run(main(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
