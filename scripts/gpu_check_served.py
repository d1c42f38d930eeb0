"""The device check's served section (scripts/gpu_check.py): the whole stack per modality,
measured by `aigc bench`, and its ratio to the engine sections."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from scripts.gpu_check_models import (
    FACES,
    FORTUNE,
    SPEECH_TEXT,
    _encode_threads,
    _have_faces,
    _vits,
)


async def served(device: str, a: argparse.Namespace) -> dict[str, Any]:
    """The whole stack per modality, measured by `aigc bench` (closed loop, steady-state rate
    over the sending window), the same harness users size capacity with."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "ray is not installed on this machine"}
    from control.stack import Stack
    from core.config import parse_config
    from load_tests.procs import bench

    cuda = device.startswith("cuda")
    gpu = 0.25 if cuda else 0
    threads = _encode_threads(device)
    vits, _ = _vits(a, device)
    models: list[dict[str, Any]] = [
        {"name": "fortune", "modality": "text", "engine": "transformers", "device": device,
         "weights": str(FORTUNE), "options": {"add_bos_token": True},
         "batching": {"max_batch_size": 64}, "scaling": {"max_ongoing_requests": 128},
         "resources": {"num_cpus": 1, "num_gpus": gpu}},
        {"name": "voice", "modality": "audio", "engine": "vits", "device": device,
         "weights": str(vits), "options": {"max_forward_batch": 32},
         "batching": {"max_batch_size": 32, "max_concurrent_batches": 2},
         "resources": {"num_cpus": 1, "num_gpus": gpu}},
    ]  # fmt: skip
    # the face GAN twice: one batch at a time, and two (PNG encoding overlapping the forward)
    faces = {"faces": 1, "faces-overlap": 2} if _have_faces() else {}
    for name, batches in faces.items():
        models.append(
            {"name": name, "modality": "image", "engine": "gan", "device": device,
             "weights": str(FACES),
             "options": {"dtype": "float16" if cuda else "float32", "encode_threads": threads},
             "batching": {"max_batch_size": 64, "max_concurrent_batches": batches},
             "limits": {"max_images": 64}, "resources": {"num_cpus": threads, "num_gpus": gpu}}
        )  # fmt: skip
    cpus = max(8, (os.cpu_count() or 2))
    gpus = torch.cuda.device_count() if cuda else 0  # told to Ray, not left to its detection
    cfg = parse_config({"gateway": {"port": 0, "metrics_port": 0},
                        "ray": {"num_cpus": cpus, "num_gpus": gpus}, "models": models})  # fmt: skip
    stack = Stack(cfg, port=0, metrics_port=0, ray_metrics_port=0)
    conc = {
        "text": 8 if a.quick else 64,
        "image": 8 if a.quick else 64,
        "image_overlap": 8 if a.quick else 64,
        "audio": 8 if a.quick else 32,
    }
    # name -> (aigc bench --workload, the summary's rate in the engine sections' unit)
    runs: dict[str, tuple[str, str]] = {
        # prompts of the engine sections' length: 3 words ("A computer is"), SPEECH_TEXT's
        "text": (
            "text:fortune,stream=false,max_tokens=64,prompt_words=3",
            "steady_output_throughput",
        ),
        "audio": (
            f"audio:voice,stream=false,prompt_words={len(SPEECH_TEXT.split())}",
            "steady_request_throughput",
        ),
    }
    for name in faces:
        key = "image" if name == "faces" else "image_overlap"
        runs[key] = (f"image:{name},count=1", "steady_images_per_second")
    out: dict[str, Any] = {"concurrency": conc, "harness": "aigc bench (closed loop)"}
    try:
        # leave time to measure and to stop within this section's share of the budget
        await stack.start(timeout_s=min(300.0, max(60.0, a.budget_s - 90)))
        assert stack.gateway is not None
        target = f"127.0.0.1:{stack.gateway.port}"
        with tempfile.TemporaryDirectory() as tmp:
            for name, (workload, rate) in runs.items():
                args = ["--concurrency", str(conc[name]), "--warmup", str(conc[name]),
                        "--duration", str(a.seconds * 3), "--workload", workload,
                        "--timeout", "120"]  # fmt: skip
                summary = await bench(target, Path(tmp) / name, args)
                if summary["exit_code"] != 0 or summary.get("failed"):
                    out[name] = {"error": f"aigc bench: exit {summary['exit_code']}, "
                                          f"failed {summary.get('errors_by_code')}"}  # fmt: skip
                    continue
                out[name] = {"per_s": round(float(summary[rate]), 1)}
    finally:
        await stack.stop(grace_s=1)
    return out


def _ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Served throughput as a share of the engine at the nearest measured batch size."""
    served, out = report.get("served") or {}, {}

    def nearest(rows: dict[Any, float], size: int) -> float | None:
        if not rows:
            return None
        key = min(rows, key=lambda k: abs(int(k) - size))
        return rows[key]

    image = (report.get("gan_engine") or {}).get("eager", {}).get("images_per_s", {})
    text = (report.get("text_engine") or {}).get("fortune_tokens_per_s_by_concurrency", {})
    audio = (report.get("vits_engine") or {}).get("float32_utterances_per_s", {})
    pairs = {"image": (image, "image"), "image_overlap": (image, "image_overlap"),
             "text": (text, "text"), "audio": (audio, "audio")}  # fmt: skip
    for name, (rows, key) in pairs.items():
        got = served.get(key, {}).get("per_s") if isinstance(served.get(key), dict) else None
        base = nearest(rows, served.get("concurrency", {}).get(key, 0))
        if got and base:
            out[name] = round(got / base, 3)
    return out
