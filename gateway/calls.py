"""One client call as the data plane sees it, and how Serve responses are relayed within it:
awaited or iterated inside the call's deadline, cancelled when the caller goes away (which
reaches the replica), merged when a request has several parts, retried when idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.clock import DEADLINE_TRANSIT_SLACK_S
from core.config import Modality
from core.errors import DeadlineExceeded, Unavailable
from gateway.errors import classify, replica_lost
from gateway.metrics import UNKNOWN_MODEL
from gateway.replicas import Pending, Streaming

T = TypeVar("T")


@dataclass
class Call:
    """One client call, as the data plane sees it: who, what, by when, and how it ended."""

    protocol: str  # "grpc" | "http": a metric label
    method: str  # a bounded operation name: a metric label
    modality: Modality | None  # None: a call about every modality (listing models)
    request_id: str
    deadline: float | None  # time.time() by which the client stops waiting
    model: str = UNKNOWN_MODEL  # metric label: a configured name, never a client's string
    start: float = field(default_factory=time.perf_counter)
    code: str | None = None  # set by a front end that reports a failure in-band (SSE error)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def out_of_time(self) -> bool:
        """Whether a cancellation now is the client's deadline firing (see the slack above)."""
        remaining = self.remaining()
        return remaining is not None and remaining <= DEADLINE_TRANSIT_SLACK_S


@contextlib.asynccontextmanager
async def within_deadline(call: Call) -> AsyncIterator[None]:
    """Ends the awaited work with DEADLINE_EXCEEDED once the call's deadline passes (the
    CancelledError that asyncio.timeout delivers cancels the Serve request on its way out)."""
    remaining = call.remaining()
    if remaining is None:
        yield
        return
    try:
        async with asyncio.timeout(max(0.0, remaining)):
            yield
    except TimeoutError:
        raise DeadlineExceeded("deadline exceeded while the model was working") from None


async def relay_unary(response: Pending[T]) -> T:
    """Awaits a Serve response; cancels it when the caller is cancelled."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


async def relay_stream(stream: Streaming[T], call: Call) -> AsyncIterator[T]:
    """Relays a Serve streaming response within the call's deadline; always cancels it at the
    end (harmless after a normal end; stops the replica after a disconnect or an error).

    A stream is not retried (its chunks are already with the client): when its replica dies or
    becomes unreachable (a lost node gives ActorUnavailableError first), it ends UNAVAILABLE
    saying the replica was lost and how far it got, so the client knows to start over."""
    sent = 0
    try:
        iterator = stream.__aiter__()
        while True:
            try:
                async with within_deadline(call):
                    item = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                if replica_lost(exc):
                    raise Unavailable(
                        f"model replica was lost during the stream ({sent} chunks sent); retry"
                    ) from exc
                raise
            sent += 1
            yield item
    finally:
        stream.cancel()


async def merge(iterators: list[AsyncIterator[T]]) -> AsyncGenerator[tuple[int, T], None]:
    """Items of several async iterators as they come, tagged with the iterator's index; the
    first error ends the merge, and closing it cancels every pump."""
    if len(iterators) == 1:
        async for item in iterators[0]:
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()
    done = object()

    async def pump(k: int, it: AsyncIterator[T]) -> None:
        try:
            async for item in it:
                await queue.put((k, item, None))
            await queue.put((k, done, None))
        except BaseException as exc:
            await queue.put((k, done, exc))

    tasks = [asyncio.ensure_future(pump(k, it)) for k, it in enumerate(iterators)]
    try:
        live = len(tasks)
        while live:
            k, item, exc = await queue.get()
            if exc is not None:
                raise exc
            if item is done:
                live -= 1
                continue
            yield k, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def all_or_none(work: Sequence[Awaitable[T]]) -> list[T]:
    """Every result, in order; the first error is raised as it is (not in an ExceptionGroup)
    and cancels the rest, which cancels their Serve calls (`relay_unary`)."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()


async def retrying(attempt: Callable[[], Awaitable[T]], retries: int) -> T:
    """Unary calls that are idempotent (seed fixed by the gateway) get `retries` more tries
    when the replica died or was unavailable; any other error returns at once."""
    for n in range(retries + 1):
        try:
            return await attempt()
        except Exception as exc:
            if n == retries or classify(exc).code != "UNAVAILABLE":
                raise
    raise AssertionError("unreachable")
