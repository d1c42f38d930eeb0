"""What every engine shares: config, device choice, lifecycle, health and stats.

One small protocol per modality builds on this (`services/<modality>/engine.py`). Engines know
nothing of gRPC or Ray; a deployment injects one chosen by name from `aigc.registry`.
"""

from __future__ import annotations

import abc
import time
from typing import Any

from aigc.config import ModelConfig
from services.metrics import EngineObserver


def resolve_device(requested: str) -> str:
    """'auto' means CUDA when a GPU is visible, else CPU."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = ("float32", "float16", "bfloat16")


def resolve_dtype(name: str, device: str) -> Any:
    """The torch dtype an engine's `dtype` option names; float16 needs CUDA (on CPU it is
    slower than float32 and some kernels are missing: use bfloat16 there)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"option dtype must be one of {list(DTYPES)}, not {name!r}")
    if name == "float16" and not device.startswith("cuda"):
        raise ValueError("option dtype float16 needs a CUDA device; use bfloat16 on CPU")
    return getattr(torch, name)


class Engine(abc.ABC):
    """Lifecycle every engine follows: construct (cheap) -> start() (loads) -> serve -> stop()."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.device = "cpu"
        self.load_seconds = 0.0
        self.started = False
        self.parameters = 0
        self.observer = EngineObserver()  # the replica installs one that exports metrics

    async def start(self) -> None:
        """Loads weights. Timed so the replica can export model load seconds."""
        t0 = time.perf_counter()
        await self._start()
        self.load_seconds = time.perf_counter() - t0
        self.started = True

    @abc.abstractmethod
    async def _start(self) -> None: ...

    async def check_health(self) -> None:
        """Raises when the engine cannot serve; Serve then restarts the replica."""
        if not self.started:
            raise RuntimeError(f"engine for {self.config.name} is not started")

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Releases resources; the default has nothing to release."""

    def info(self) -> dict[str, Any]:
        """Facts for ListModels; engines add their own keys (labels, voices)."""
        return {
            "parameters": self.parameters,
            "device": self.device,
            "load_seconds": round(self.load_seconds, 3),
        }

    def stats(self) -> dict[str, float]:
        """Live counters for metrics and tests; engines add their own."""
        return {}
