"""A model-free image engine: a flat image whose colour comes from the seed. Measures overhead."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from services.image.encode import encode_png
from services.image.engine import ImageEngine
from services.types import GeneratedImage, ImageFormat, ImageRequest, ImageResult


class EchoImageEngine(ImageEngine):
    """Options: `size` (default 8), `labels` (list, to exercise label validation), `delay_s`
    (a batch takes at least this long, as a model would; default 0)."""

    async def _start(self) -> None:
        self.size = int(self.config.options.get("size", 8))
        self.labels = list(self.config.options.get("labels", []))
        self.delay_s = float(self.config.options.get("delay_s", 0.0))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "image_size": self.size, "channels": 3}

    async def generate_batch(self, requests: list[ImageRequest]) -> list[ImageResult]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        results = []
        for r in requests:
            images = []
            for i in range(r.count):
                seed = (r.seed + i) % 2**64
                color = np.frombuffer(seed.to_bytes(8, "little")[:3], dtype=np.uint8)
                pixels = np.broadcast_to(color, (self.size, self.size, 3)).copy()
                png = r.format == ImageFormat.PNG
                data = encode_png(pixels) if png else pixels.tobytes()
                mime = "image/png" if png else "application/octet-stream"
                images.append(GeneratedImage(data, mime, self.size, self.size, 3, seed, r.label))
            results.append(ImageResult(r.request_id, r.model, images))
        return results
