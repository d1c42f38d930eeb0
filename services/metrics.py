"""Replica-side metrics, exported through Ray's metrics port (`ray.util.metrics`).

Engines stay Ray-agnostic: they report to an `EngineObserver`; the replica installs one that
records into Ray histograms. Gauges are re-set periodically because Ray drops a gauge about
30 s after its last `.set()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

# Seconds: from sub-millisecond batching waits to multi-minute generations.
LATENCY_BUCKETS = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
]  # fmt: skip
BATCH_BUCKETS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]


class EngineObserver:
    """What an engine reports; the default records nothing (unit tests, in-process use)."""

    def batch(self, size: int, compute_s: float) -> None:
        """One batch (text: one model step) of `size` items took `compute_s` seconds."""

    def queue_wait(self, seconds: float) -> None:
        """One item waited this long between arrival and the start of its batch."""


class RayReplicaMetrics(EngineObserver):
    def __init__(self, model: str, modality: str) -> None:
        from ray.util import metrics

        tags = {"model": model, "modality": modality}
        keys = ("model", "modality")

        def histogram(name: str, description: str, boundaries: list[float]) -> Any:
            return metrics.Histogram(
                name, description=description, boundaries=boundaries, tag_keys=keys
            )

        self._batch_size = histogram(
            "aigc_replica_batch_size",
            "Items per batch (text: sequences per model step; image: images).",
            BATCH_BUCKETS,
        )
        self._compute = histogram(
            "aigc_replica_batch_compute_seconds",
            "Compute time of one batch (text: one model step).",
            LATENCY_BUCKETS,
        )
        self._queue = histogram(
            "aigc_replica_queue_wait_seconds",
            "Time an item waited in the replica before its batch started.",
            LATENCY_BUCKETS,
        )
        self._load = metrics.Gauge(
            "aigc_replica_model_load_seconds",
            description="Seconds the replica took to load its model.",
            tag_keys=keys,
        )
        self._stat = metrics.Gauge(
            "aigc_replica_engine_stat",
            description="Engine state (text: running/waiting sequences, token totals).",
            tag_keys=(*keys, "stat"),
        )
        for m in (self._batch_size, self._compute, self._queue, self._load, self._stat):
            m.set_default_tags(tags)
        self.load_seconds = 0.0

    def batch(self, size: int, compute_s: float) -> None:
        self._batch_size.observe(size)
        self._compute.observe(compute_s)

    def queue_wait(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def publish(self, stats: dict[str, float]) -> None:
        self._load.set(self.load_seconds)
        for name, value in stats.items():
            self._stat.set(value, tags={"stat": name})

    async def publish_forever(self, stats: Callable[[], dict[str, float]], period_s: float) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.publish(stats())
            await asyncio.sleep(period_s)
