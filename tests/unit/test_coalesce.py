"""Coalescer: a lone call goes out alone at once; calls that queue up share one send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from core.errors import InvalidArgument
from gateway.coalesce import Coalescer


class FakeResponse:
    """What the Coalescer needs of a Serve response: awaitable and cancellable."""

    def __init__(self, items: list[int], gate: asyncio.Event) -> None:
        self.items, self.gate = items, gate
        self.cancelled = asyncio.Event()

    def __await__(self):
        return self._result().__await__()

    async def _result(self) -> list[object]:
        await self.gate.wait()
        return [InvalidArgument("odd", field="x") if i % 2 else i * 10 for i in self.items]

    def cancel(self) -> None:
        self.cancelled.set()


def recorder() -> tuple[asyncio.Event, list[FakeResponse], Callable[[list[int]], FakeResponse]]:
    """A send function whose responses all wait for one gate; `sent` keeps every call."""
    gate = asyncio.Event()
    sent: list[FakeResponse] = []

    def send(items: list[int]) -> FakeResponse:
        sent.append(FakeResponse(items, gate))
        return sent[-1]

    return gate, sent, send


async def queued(c: Coalescer, items: list[int]) -> list[asyncio.Task[object]]:
    """Tasks submitting `items`, returned once every item is in the coalescer. `submit`
    queues (or sends) its item before it first waits, so a task that has started has queued."""
    started: asyncio.Queue[int] = asyncio.Queue()

    async def one(item: int) -> object:
        started.put_nowait(item)
        return await c.submit(item)

    tasks = [asyncio.create_task(one(i)) for i in items]
    for _ in items:
        await asyncio.wait_for(started.get(), timeout=10)
    return tasks


def test_lone_call_is_sent_at_once_and_queued_calls_share_one_send():
    async def main():
        gate, sent, send = recorder()
        c = Coalescer(send, max_items=3, max_outstanding=1)
        [first] = await queued(c, [0])
        assert [r.items for r in sent] == [[0]]  # no waiting at low load
        rest = await queued(c, [2, 4, 6, 8])
        assert [r.items for r in sent] == [[0]]  # one call out (max_outstanding): they wait
        gate.set()
        results = await asyncio.gather(first, *rest)
        return results, [r.items for r in sent]

    results, batches = asyncio.run(main())
    assert results == [0, 20, 40, 60, 80]
    assert batches == [[0], [2, 4, 6], [8]]  # queued calls left together, max_items each


def test_each_item_gets_its_own_error_and_abandoned_calls_are_cancelled():
    async def main():
        gate, _, send = recorder()
        c = Coalescer(send, max_items=8, max_outstanding=1)
        [blocker] = await queued(c, [0])
        good, bad = await queued(c, [2, 3])
        gate.set()
        assert await good == 20
        with pytest.raises(InvalidArgument):
            await bad
        await blocker
        # a shared call whose callers all left is cancelled
        _, sent2, send2 = recorder()
        [lone] = await queued(Coalescer(send2, 8, 1), [4])
        assert [r.items for r in sent2] == [[4]]
        assert not sent2[0].cancelled.is_set()
        lone.cancel()
        await asyncio.wait_for(sent2[0].cancelled.wait(), timeout=10)

    asyncio.run(main())
