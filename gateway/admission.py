"""Admission control: per model, a bound on in-flight work and on queued work, in cost units.

A request that fits runs at once; one that does not waits in FIFO order while the queue has
room; beyond that it is refused at once with RESOURCE_EXHAUSTED (and RetryInfo). Waiting
stops at the client's deadline. Serve's `max_queued_requests` stays as the second line.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator

from aigc.config import Modality, ModelConfig
from services.errors import DeadlineExceeded, Overloaded
from services.types import AudioRequest, ImageRequest, Priority, TextRequest

TYPICAL_TEXT_TOKENS = 64


def cost_of(request: TextRequest | ImageRequest | AudioRequest) -> float:
    if isinstance(request, TextRequest):
        chars = len(request.prompt or "") + sum(len(m.content) for m in request.messages)
        return request.n * (request.max_tokens or TYPICAL_TEXT_TOKENS) + chars / 4
    if isinstance(request, ImageRequest):
        return float(request.count)
    return float(max(1, math.ceil(len(request.text) / 100)))


def default_capacity(model: ModelConfig) -> float:
    unit = TYPICAL_TEXT_TOKENS if model.modality == Modality.TEXT else 1
    return 4.0 * model.batching.max_batch_size * model.scaling.max_replicas * unit


class _Ticket:
    def completed(self) -> None:
        """The admitted request finished OK."""


class CostGate:
    def __init__(self, capacity: float, queue_capacity: float) -> None:
        self.capacity = capacity
        self.queue_capacity = queue_capacity
        self.inflight = 0.0
        self.queued = 0.0
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()

    @classmethod
    def for_model(cls, model: ModelConfig) -> CostGate:
        a = model.admission
        capacity = a.max_inflight_cost or default_capacity(model)
        return cls(capacity, capacity if a.max_queued_cost is None else a.max_queued_cost)

    def _fits(self, cost: float) -> bool:
        # A request larger than the whole capacity may still run, alone.
        return self.inflight + cost <= self.capacity or self.inflight == 0

    def set_replicas(self, n: int) -> None:
        """Serve's running replica count (the measured-capacity gate uses it)."""

    @contextlib.asynccontextmanager
    async def admit(
        self, cost: float, deadline: float | None, priority: Priority = Priority.INTERACTIVE
    ) -> AsyncIterator[_Ticket]:
        if not self._waiters and self._fits(cost):
            self.inflight += cost
        else:
            if self.queued + cost > self.queue_capacity:
                raise Overloaded(
                    "model is at capacity and its admission queue is full; retry later",
                    retry_after_s=1.0,
                )
            await self._wait(cost, deadline)
        try:
            yield _Ticket()
        finally:
            self.inflight -= cost
            self._wake()

    async def _wait(self, cost: float, deadline: float | None) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost, future)
        self._waiters.append(entry)
        self.queued += cost
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if future.done():  # admitted just as the deadline passed: give it back
                self.inflight -= cost
                self._wake()
            raise DeadlineExceeded("deadline passed while waiting for admission") from None
        except asyncio.CancelledError:
            if future.done():
                self.inflight -= cost
                self._wake()
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self.queued -= cost

    def _wake(self) -> None:
        while self._waiters:
            cost, future = self._waiters[0]
            if future.done():  # cancelled waiter
                self._waiters.popleft()
                self.queued -= cost
                continue
            if not self._fits(cost):
                return
            self._waiters.popleft()
            self.queued -= cost
            self.inflight += cost
            future.set_result(None)
