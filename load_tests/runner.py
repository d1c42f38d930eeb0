"""Closed loop (N workers, each sends when its last reply is done) and open loop (requests
leave on a Poisson/gamma schedule, whatever the replies do).

In the open loop every record keeps its intended and actual send time: when the client falls
behind (a busy event loop, a full --max-concurrency) the lag shows, and latency counted from
the schedule exposes coordinated omission instead of hiding it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import numpy as np

from aigc.client import AsyncClient
from load_tests.calls import issue
from load_tests.records import RequestRecord, shift
from load_tests.workload import Workload


@dataclass
class RunConfig:
    target: str
    concurrency: int | None = None  # closed loop
    rate: float | None = None  # open loop, requests/s
    burstiness: float = 1.0  # gamma shape; 1 = Poisson
    max_concurrency: int | None = None  # open loop: cap on requests in flight
    duration: float | None = None  # seconds of sending
    num_requests: int | None = None
    warmup: int = 0
    timeout: float | None = 60.0
    api_key: str | None = None
    channels: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("choose exactly one of concurrency (closed loop) or rate (open loop)")
        if self.duration is None and self.num_requests is None:
            raise ValueError("give a duration or a number of requests")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0")
        if self.burstiness <= 0:
            raise ValueError("burstiness must be > 0")


@dataclass
class Progress:
    """Live counters the progress display reads."""

    started: float = field(default_factory=time.perf_counter)
    sent: int = 0
    done: int = 0
    errors: int = 0
    phase: str = "warm-up"

    @property
    def in_flight(self) -> int:
        return self.sent - self.done


def arrival_offsets(rate: float, burstiness: float, n: int, seed: int) -> np.ndarray:
    """Intended send times (s from start): gamma inter-arrivals with mean 1/rate, as vLLM's
    benchmark draws them (shape = burstiness; 1 is a Poisson process, < 1 burstier)."""
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    return np.cumsum(gaps) - gaps[0]  # the first request leaves at once


class Runner:
    def __init__(
        self, config: RunConfig, workload: Workload, progress: Progress | None = None
    ) -> None:
        self.config = config
        self.workload = workload
        self.progress = progress or Progress()
        self.records: list[RequestRecord] = []
        self.t0 = 0.0
        self.wall_start = 0.0
        self._next = 0

    async def run(self) -> list[RequestRecord]:
        cfg = self.config
        clients = [AsyncClient(cfg.target, api_key=cfg.api_key) for _ in range(cfg.channels)]
        self._stubs = [c.stubs for c in clients]
        self._metadata = clients[0].metadata
        try:
            if cfg.concurrency is not None:
                await self._closed(cfg.concurrency, cfg.warmup, cfg.num_requests, cfg.duration)
            else:
                if cfg.warmup:  # closed-loop warm-up; then the schedule starts from idle
                    await self._closed(min(8, cfg.warmup), cfg.warmup, 0, None)
                self._measuring()
                await self._open()
        finally:
            for c in clients:
                await c.close()
        return self.records

    def _take(self) -> int:
        index, self._next = self._next, self._next + 1
        return index

    def _on_done(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.progress.done += 1
        self.progress.errors += not record.ok

    def _measuring(self) -> None:
        """Starts the measured phase's clock: its records' times count from here."""
        self.t0 = time.perf_counter()
        self.wall_start = time.time()
        self.progress.phase = "measuring"
        self.progress.started = self.t0

    async def _closed(
        self, workers: int, warmup: int, limit: int | None, duration: float | None
    ) -> None:
        """Warm-up requests flow straight into measured ones, without draining in between,
        so the measured phase starts with every worker busy (a steady state)."""
        cfg = self.config
        base = time.perf_counter()
        self._measuring()
        measured_start: float | None = None
        stop_at = math.inf

        async def worker(k: int) -> None:
            nonlocal measured_start, stop_at
            stubs = self._stubs[k % len(self._stubs)]
            while time.perf_counter() < stop_at:
                index = self._take()
                is_warmup = index < warmup
                if limit is not None and index >= warmup + limit:
                    return
                if not is_warmup and measured_start is None:
                    measured_start = time.perf_counter()
                    self.progress.phase, self.progress.started = "measuring", measured_start
                    if duration is not None:
                        stop_at = measured_start + duration
                planned = self.workload.request(index)
                self.progress.sent += 1
                record = await issue(
                    stubs,
                    planned,
                    base,
                    timeout=cfg.timeout,
                    metadata=self._metadata,
                    warmup=is_warmup,
                )
                self._on_done(record)

        if warmup:
            self.progress.phase = "warm-up"
        await asyncio.gather(*(worker(k) for k in range(workers)))
        start = measured_start if measured_start is not None else base
        for r in self.records:  # times from the first measured send
            shift(r, base - start)
        self.t0 = start
        self.wall_start += start - base

    async def _open(self) -> None:
        cfg = self.config
        assert cfg.rate is not None
        n = cfg.num_requests
        if n is None:  # enough arrivals to cover the duration, with margin
            assert cfg.duration is not None
            n = int(cfg.rate * cfg.duration * 1.5 + 10 * math.sqrt(cfg.rate * cfg.duration) + 10)
        offsets = arrival_offsets(cfg.rate, cfg.burstiness, n, cfg.seed)
        gate = asyncio.Semaphore(cfg.max_concurrency) if cfg.max_concurrency else None
        tasks: list[asyncio.Task[None]] = []
        self.t0 = time.perf_counter()
        self.wall_start = time.time()

        async def one(index: int, intended: float) -> None:
            if gate is not None:
                async with gate:
                    await send(index, intended)
            else:
                await send(index, intended)

        async def send(index: int, intended: float) -> None:
            planned = self.workload.request(index)
            self.progress.sent += 1
            stubs = self._stubs[index % len(self._stubs)]
            record = await issue(
                stubs,
                planned,
                self.t0,
                timeout=cfg.timeout,
                metadata=self._metadata,
                intended_send=intended,
            )
            self._on_done(record)

        for offset in offsets:
            offset = float(offset)
            if cfg.duration is not None and offset >= cfg.duration:
                break
            delay = self.t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(self._take(), offset)))
        await asyncio.gather(*tasks)
