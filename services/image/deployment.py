"""Image replica: requests are batched by `@serve.batch` (`Replica.batcher`), counted in
images; with `max_concurrent_batches` > 1 one batch encodes PNGs while the next runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray import serve

from services.image.engine import ImageEngine
from services.replica import Replica
from services.types import ImageRequest, ImageResult

_Queued = tuple[ImageRequest, float]


def _images(items: list[_Queued]) -> int:
    return sum(request.count for request, _ in items)


@serve.deployment
class ImageReplica(Replica):
    engine: ImageEngine

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        await super().__init__(model)
        self._batched = self.batcher(self._run_batch, batch_size_fn=_images)

    async def generate(self, request: ImageRequest) -> ImageResult:
        self.check_deadline(request.deadline)
        self.engine.validate(request)  # a bad label fails alone, not its batch
        return await self._batched((request, time.perf_counter()))

    async def generate_many(self, requests: list[ImageRequest]) -> list[ImageResult | Exception]:
        """Several requests in one Ray call (the gateway coalesces them); they still join the
        replica's batches one by one, and each fails alone."""
        results = await asyncio.gather(
            *[self.generate(r) for r in requests], return_exceptions=True
        )
        # gather may hand back a BaseException (a cancelled item): send it as a plain error
        return [
            r if isinstance(r, ImageResult | Exception) else Exception(repr(r)) for r in results
        ]

    async def _run_batch(self, items: list[_Queued]) -> list[ImageResult]:
        started = time.perf_counter()
        for _, enqueued in items:
            self.engine.observer.queue_wait(started - enqueued)
        results = await self.engine.generate_batch([request for request, _ in items])
        self.engine.observer.batch(_images(items), time.perf_counter() - started)
        return results
