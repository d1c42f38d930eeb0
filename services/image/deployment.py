"""Image replica: requests are batched by `@serve.batch` (`Replica.batcher`), counted in
images; with `max_concurrent_batches` > 1 one batch encodes PNGs while the next runs."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from core.types import ImageRequest, ImageResult
from services.image.engine import ImageEngine
from services.replica import ReplicaBase


def _images(requests: list[ImageRequest]) -> int:
    return sum(request.count for request in requests)


@serve.deployment
class ImageDeployment(ReplicaBase):
    engine: ImageEngine

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        await super().__init__(model)
        self._batched = self.batcher(self.engine.generate_batch, size=_images)

    async def generate(self, request: ImageRequest) -> ImageResult:
        self.admit(request)  # a bad label fails alone, not its batch
        return await self._batched(request)

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
