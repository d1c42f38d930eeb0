"""What every Serve replica does around its engine: build, start with a timeout, health, info.

Deployments per modality (`services/<modality>/deployment.py`) stay thin: they only add the
request methods, batching included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ray import serve

from core.config import ModelConfig
from core.deployment import GRACEFUL_SHUTDOWN_TIMEOUT_S, GRACEFUL_SHUTDOWN_WAIT_LOOP_S
from core.registry import engine_class
from core.replica import ModelFacts
from services.direct import DirectServer, deregister, register
from services.engine import Engine, check_deadline

logger = logging.getLogger("aigc.replica")
STATS_PERIOD_S = 5.0
# What a draining replica gives the direct calls it has: the shutdown budget less Serve's
# own drain when it has nothing in flight (one wait loop) and a margin for closing.
DIRECT_DRAIN_S = GRACEFUL_SHUTDOWN_TIMEOUT_S - GRACEFUL_SHUTDOWN_WAIT_LOOP_S - 2.0
Req = TypeVar("Req")
Res = TypeVar("Res")


class ReplicaBase:
    """Base of the deployment classes; `async __init__` is supported by Ray actors."""

    engine: Engine
    direct: DirectServer | None = None  # the direct port (a model's transport), once open

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        self.config = ModelConfig.model_validate(model)
        self.batches_in_flight = 0  # batches of `batcher`, now and at most since start
        self.batches_in_flight_peak = 0
        cls = engine_class(self.config.modality.value, self.config.engine)
        self.engine = cls(self.config)
        self.metrics = None
        with contextlib.suppress(Exception):  # metrics need a Ray worker; tests may not have one
            from services.metrics import RayReplicaMetrics

            self.metrics = RayReplicaMetrics(self.config.name, self.config.modality.value)
            self.engine.observer = self.metrics
        await asyncio.wait_for(self.engine.start(), timeout=self.engine.options.start_timeout_s)
        logger.info("model %s loaded in %.2fs", self.config.name, self.engine.load_seconds)
        if self.metrics is not None:
            self.metrics.load_seconds = self.engine.load_seconds
            self._stats_task = asyncio.get_running_loop().create_task(
                self.metrics.publish_forever(self._stats, STATS_PERIOD_S)
            )
        if self.config.direct_calls:
            self.direct = await _open_direct(self)

    def __del__(self) -> Awaitable[None] | None:
        """Called by Serve when it stops the replica, after its own requests have drained (it
        awaits what this returns): the direct port leaves the registry, refuses new calls (the
        gateway sends them through Serve, which routes around a stopping replica) and finishes
        those it has. Once only; a replica without a direct port has nothing to do (and the
        garbage collector's call then makes no coroutine nobody awaits)."""
        direct, self.direct = self.direct, None
        if direct is None or direct.endpoint is None:
            return None
        return _close_direct(direct)

    def batcher(
        self,
        run: Callable[[list[Req]], Awaitable[list[Res | Exception]]],
        size: Callable[[list[Req]], int] = len,
    ) -> Callable[[Req], Awaitable[Res]]:
        """`@serve.batch` around `run` (e.g. the engine's `generate_batch`), sized by this
        model's `batching` config (built per replica: `max_concurrent_batches` has no setter on
        the decorator) and `size` (items per batch; images count one each). Observes each
        request's queue wait and each batch's size and compute time, and counts the batches in
        flight, which `_stats` exports. An item the batch returns as an exception is raised to
        its own caller only."""
        b = self.config.batching

        async def counted(items: list[tuple[Req, float]]) -> list[Res | Exception]:
            self.batches_in_flight += 1
            self.batches_in_flight_peak = max(self.batches_in_flight_peak, self.batches_in_flight)
            started = time.perf_counter()
            for _, enqueued in items:
                self.engine.observer.queue_wait(started - enqueued)
            requests = [request for request, _ in items]
            try:
                results = await run(requests)
            finally:
                self.batches_in_flight -= 1
            self.engine.observer.batch(size(requests), time.perf_counter() - started)
            return results

        decorate: Any = serve.batch(
            max_batch_size=b.max_batch_size,
            batch_wait_timeout_s=b.batch_wait_timeout_s,
            max_concurrent_batches=b.max_concurrent_batches,
            batch_size_fn=lambda items: size([request for request, _ in items]),
        )
        batched: Callable[[tuple[Req, float]], Awaitable[Res | Exception]] = decorate(counted)

        async def submit(request: Req) -> Res:
            result = await batched((request, time.perf_counter()))
            if isinstance(result, Exception):  # this item failed alone
                raise result
            return result

        return submit

    def _stats(self) -> dict[str, float]:
        """The engine's stats, this replica's batches in flight (now, and the peak) and the
        calls its direct port took (none without one)."""
        direct = self.direct
        return {
            **self.engine.stats(),
            "batches_in_flight": float(self.batches_in_flight),
            "batches_in_flight_peak": float(self.batches_in_flight_peak),
            "direct_calls_total": float(direct.calls if direct is not None else 0),
        }

    def admit(self, request: Any) -> None:
        """What every request method does first: refuse work whose client stopped waiting,
        then what only this model can refuse (`Engine.validate`)."""
        check_deadline(request.deadline)
        self.engine.validate(request)

    async def check_health(self) -> None:
        """Called by Serve periodically; raising marks the replica unhealthy (it is restarted)."""
        await self.engine.check_health()

    async def describe(self) -> ModelFacts:
        return self.engine.facts()

    async def stats(self) -> dict[str, float]:
        """What the replica exports as `aigc_replica_engine_stat`, on request (tests, tools)."""
        return self._stats()


async def _open_direct(replica: ReplicaBase) -> DirectServer | None:
    """The replica's direct port, open and registered; None outside a Serve replica (tests
    that build one in-process) or when it cannot open, in which case calls go through Serve."""
    try:
        import ray

        context = serve.get_replica_context()
    except Exception:
        return None
    server = DirectServer(replica, replica.config.name)
    try:
        endpoint = await server.start(
            ray.util.get_node_ip_address(),
            context.replica_id.unique_id,
            ray.get_runtime_context().get_actor_name() or "",
        )
        await register(endpoint)
    except Exception:
        logger.warning("direct calls are off for this replica; Serve carries them", exc_info=True)
        await server.drain(0)
        return None
    logger.info("direct calls on %s", endpoint.address)
    return server


async def _close_direct(direct: DirectServer) -> None:
    assert direct.endpoint is not None
    with contextlib.suppress(Exception):
        await deregister(direct.endpoint)
    await direct.drain(DIRECT_DRAIN_S)
