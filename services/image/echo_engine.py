"""A model-free image engine: a flat image whose colour comes from the seed. Measures overhead."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np

from core.options import EchoImageOptions
from core.replica import ModelFacts
from core.types import GeneratedImage, ImageRequest, ImageResult
from services.image.encode import encode_image
from services.image.engine import ImageEngine


class EchoImageEngine(ImageEngine):
    """Options: `core.options.EchoImageOptions` (`size`, `labels`, `delay_s`)."""

    options: EchoImageOptions

    async def _start(self) -> None:
        self.labels = tuple(self.options.labels)

    def facts(self) -> ModelFacts:
        return replace(super().facts(), image_size=self.options.size, channels=3)

    async def generate_batch(self, requests: list[ImageRequest]) -> list[ImageResult | Exception]:
        if self.options.delay_s:
            await asyncio.sleep(self.options.delay_s)
        size = self.options.size
        results: list[ImageResult | Exception] = []
        for r in requests:
            images = []
            for i in range(r.count):
                seed = ((r.seed or 0) + i) % 2**64
                color = np.frombuffer(seed.to_bytes(8, "little")[:3], dtype=np.uint8)
                data, mime = encode_image(np.broadcast_to(color, (size, size, 3)).copy(), r.format)
                images.append(GeneratedImage(data, mime, size, size, 3, seed, r.label))
            results.append(ImageResult(r.request_id, r.model, images))
        return results
