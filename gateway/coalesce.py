"""Concurrent unary calls to one model ride one Serve call when they queue up.

Each request through a Serve handle costs a Ray actor call each way, which on small machines
bounds cheap items (a 28x28 GAN image) long before the model does. With at most
`max_outstanding` calls in flight per model, requests that arrive meanwhile wait and leave
together as one `generate_many` call; the replica still batches them with `@serve.batch`.
At low load nothing waits: a lone request goes out at once, alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[list[Any]], Any]  # returns a Serve response: awaitable, with .cancel()


class Coalescer:
    def __init__(self, send: Send, max_items: int, max_outstanding: int) -> None:
        self.send = send
        self.max_items = max_items
        self.max_outstanding = max_outstanding
        self.outstanding = 0
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Any) -> Any:
        """The item's result; its own error is raised here, not its neighbours'."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._flush()
        return await future

    def _flush(self) -> None:
        while self._queue and self.outstanding < self.max_outstanding:
            batch, self._queue = self._queue[: self.max_items], self._queue[self.max_items :]
            batch = [(i, f) for i, f in batch if not f.cancelled()]
            if not batch:
                continue
            self.outstanding += 1
            try:
                response = self.send([item for item, _ in batch])  # issued now, not next tick
            except Exception as exc:
                self.outstanding -= 1
                for _, future in batch:
                    future.set_exception(exc)
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch, response))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]], response: Any) -> None:
        watcher = asyncio.get_running_loop().create_task(_cancel_when_abandoned(batch, response))
        try:
            results = await response
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as exc:  # the whole call failed: every caller sees why
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            watcher.cancel()
            self.outstanding -= 1
            self._flush()


async def _cancel_when_abandoned(
    batch: list[tuple[Any, asyncio.Future[Any]]], response: Any
) -> None:
    """When every caller of a shared call has gone, the call itself is cancelled."""
    waits: list[Awaitable[Any]] = [asyncio.wait([f]) for _, f in batch]
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*waits)
        if all(f.cancelled() for _, f in batch):
            response.cancel()
