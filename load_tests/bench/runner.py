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

from aigc.client import AsyncClient, auth_metadata
from load_tests.bench.grpc_calls import issue
from load_tests.bench.records import RequestRecord, shift
from load_tests.bench.workload import PlannedRequest, Workload


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
    protocol: str = "grpc"  # grpc: aigc.v1 at target; http: the OpenAI API at http://target

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ValueError("protocol must be grpc or http")
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
        grpc_channels = cfg.channels if cfg.protocol == "grpc" else 0
        clients = [AsyncClient(cfg.target, api_key=cfg.api_key) for _ in range(grpc_channels)]
        self._stubs = [c.stubs for c in clients]
        self._metadata = auth_metadata(cfg.api_key)
        self._session = None
        self._labels: dict[str, list[str]] = {}
        if cfg.protocol == "http":
            import aiohttp

            from load_tests.bench.http_calls import served_labels

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
            )
        try:
            if self._session is not None:
                self._labels = await served_labels(self._session, f"http://{cfg.target}")
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
            if self._session is not None:
                await self._session.close()
        return self.records

    async def _issue(
        self,
        planned: PlannedRequest,
        t0: float,
        k: int,
        intended_send: float | None = None,
        warmup: bool = False,
    ) -> RequestRecord:
        """One request over the configured front end (gRPC stubs, or the OpenAI HTTP API)."""
        cfg = self.config
        if self._session is not None:
            from load_tests.bench.http_calls import issue_http

            headers = dict(self._metadata)
            return await issue_http(
                self._session, f"http://{cfg.target}", planned, t0, timeout=cfg.timeout,
                headers=headers, intended_send=intended_send, warmup=warmup, labels=self._labels,
            )  # fmt: skip
        stubs = self._stubs[k % len(self._stubs)]
        return await issue(
            stubs, planned, t0, timeout=cfg.timeout, metadata=self._metadata,
            intended_send=intended_send, warmup=warmup,
        )  # fmt: skip

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
        base = time.perf_counter()
        self._measuring()
        measured_start: float | None = None
        stop_at = math.inf

        async def worker(k: int) -> None:
            nonlocal measured_start, stop_at
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
                record = await self._issue(planned, base, k, warmup=is_warmup)
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
            record = await self._issue(planned, self.t0, index, intended_send=intended)
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
