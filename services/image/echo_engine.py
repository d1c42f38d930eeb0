"""A model-free image engine: a flat image whose colour comes from the seed. Measures overhead."""

from __future__ import annotations

import numpy as np

from services.image.encode import encode_png
from services.image.engine import ImageEngine
from services.types import GeneratedImage, ImageFormat, ImageRequest, ImageResult


class EchoImageEngine(ImageEngine):
    """Options: `size` (default 8), `labels` (list, to exercise label validation)."""

    async def _start(self) -> None:
        self.size = int(self.config.options.get("size", 8))
        self.labels = list(self.config.options.get("labels", []))

    async def generate_batch(self, requests: list[ImageRequest]) -> list[ImageResult]:
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
