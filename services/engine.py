"""What every engine shares: config and options, device choice, lifecycle, threads, health, stats.

One small protocol per modality builds on this (`services/<modality>/engine.py`). Engines know
nothing of gRPC or Ray; a deployment injects one chosen by name from `core.registry`.

Every modality names the same roles the same way: `start` (load), `validate` (what only this
model can refuse, checked by the replica before a request joins a batch or a stream starts),
`generate` / `generate_batch` (unary: one request, or a batch of them where the replica
batches; a batch returns one result or one exception per request, so an item fails alone),
`stream` (an async iterator), `check_health` (raises), `facts` (for ListModels), `stats` (live
counters). Deadlines are checked with `past` / `check_deadline`, here.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.config import ModelConfig
from core.errors import DeadlineExceeded
from core.options import EngineOptions
from core.registry import options_class
from core.replica import ModelFacts
from services.metrics import EngineObserver

T = TypeVar("T")


def resolve_device(requested: str) -> str:
    """'auto' means CUDA when a GPU is visible, else CPU."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str) -> Any:
    """The torch dtype an engine's `dtype` option names (the options class checked the name);
    `auto` is bfloat16 on CUDA, float32 elsewhere. float16 needs CUDA: on CPU it is slower than
    float32 and some kernels are missing (use bfloat16 there)."""
    import torch

    if name == "auto":
        name = "bfloat16" if device.startswith("cuda") else "float32"
    if name == "float16" and not device.startswith("cuda"):
        raise ValueError("option dtype float16 needs a CUDA device; use bfloat16 on CPU")
    return getattr(torch, name)


def past(deadline: float | None, now: float | None = None) -> bool:
    """Whether a request's deadline (absolute `time.time()` seconds; None: none) has passed."""
    return deadline is not None and (time.time() if now is None else now) > deadline


def check_deadline(
    deadline: float | None, when: str = "before the request reached the model"
) -> None:
    """Work whose client has stopped waiting is refused, not done."""
    if past(deadline):
        raise DeadlineExceeded(f"deadline passed {when}")


def weights_source(weights: str | None) -> dict[str, str]:
    """`source` and `license` from `<weights>/source.json`, when the folder has one."""
    if not weights:
        return {}
    path = Path(weights) / "source.json"
    if not path.is_file():
        return {}
    facts = json.loads(path.read_text())
    return {k: str(facts[k]) for k in ("source", "license") if k in facts}


class Engine(abc.ABC):
    """Lifecycle every engine follows: construct (cheap) -> start() (loads) -> serve -> stop()."""

    options: EngineOptions  # each engine narrows this to its class in core.options

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.options = options_class(config.modality.value, config.engine).model_validate(
            config.options
        )
        self.device = "cpu"
        self.load_seconds = 0.0
        self.started = False
        self.parameters = 0
        self.observer = EngineObserver()  # the replica installs one that exports metrics
        self._pools: list[concurrent.futures.ThreadPoolExecutor] = []

    async def start(self) -> None:
        """Loads weights. Timed so the replica can export model load seconds."""
        t0 = time.perf_counter()
        await self._start()
        self.load_seconds = time.perf_counter() - t0
        self.started = True

    @abc.abstractmethod
    async def _start(self) -> None: ...

    def validate(self, request: Any) -> None:
        """Raises InvalidArgument for what only this model can refuse (a label it does not
        draw, a voice it lacks, a prompt longer than its context). Cheap; the replica calls it
        before the request joins a batch or its stream starts, so a bad request fails alone.
        The base accepts every request."""
        del request

    async def check_health(self) -> None:
        """Raises when the engine cannot serve; Serve then restarts the replica."""
        if not self.started:
            raise RuntimeError(f"engine for {self.config.name} is not started")

    async def stop(self) -> None:
        """Releases the engine's threads; queued work on them is dropped."""
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)

    def facts(self) -> ModelFacts:
        """What ListModels shows; engines add their own (labels, voices, sizes). Where the
        weights folder has a `source.json` (written by `make assets`), its source and licence."""
        source = weights_source(self.config.weights)
        return ModelFacts(
            parameters=self.parameters,
            device=self.device,
            load_seconds=round(self.load_seconds, 3),
            source=source.get("source", ""),
            license=source.get("license", ""),
        )

    def stats(self) -> dict[str, float]:
        """Live counters for metrics and tests; engines add their own."""
        return {}

    # ---- helpers for engines ---------------------------------------------------------------
    def thread_pool(self, name: str, workers: int = 1) -> concurrent.futures.ThreadPoolExecutor:
        """Worker threads that `stop()` releases."""
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._pools.append(pool)
        return pool

    @staticmethod
    async def run_in(pool: concurrent.futures.Executor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def require_weights(self) -> str:
        if not self.config.weights:
            raise ValueError(f"model {self.config.name}: 'weights' is required")
        return self.config.weights

    async def load_torch_model(self, load: Callable[[str], Any], thread_name: str) -> Any:
        """The load every torch engine does: the device chosen, weights required, one thread
        that runs the model from now on (`run_model`), torch's thread count set, the model's
        parameters counted. `load(weights)` runs on that thread and returns the model."""
        self.device = resolve_device(self.config.device)
        weights = self.require_weights()
        self._model_thread = self.thread_pool(thread_name)

        def run() -> Any:
            import torch

            torch.set_num_threads(self.config.resources.torch_threads)
            model = load(weights)
            self.parameters = sum(p.numel() for p in model.parameters())
            return model

        return await self.run_model(run)

    async def run_model(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn` on the model's thread (after `load_torch_model`): torch work stays off the
        event loop, one step at a time."""
        return await self.run_in(self._model_thread, fn, *args)
