"""Generated images as the API returns them: numpy pixels through the one PNG writer
(`aigc.png`, zlib alone), or the raw bytes."""

from __future__ import annotations

import numpy as np

from aigc import png
from core.types import ImageFormat


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """uint8 array (H, W, C) with C in 1, 3, 4 -> PNG bytes."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(f"expected uint8 (H, W, 1|3|4), got {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    data = np.ascontiguousarray(pixels).tobytes()
    return png.encode_png(png.Pixels(width, height, channels, data), level)


def encode_image(pixels: np.ndarray, fmt: ImageFormat, png_level: int = 6) -> tuple[bytes, str]:
    """One generated image in the format a request asked for: (bytes, MIME type)."""
    if fmt == ImageFormat.PNG:
        return encode_png(pixels, png_level), "image/png"
    return pixels.tobytes(), "application/octet-stream"


def decode_png(data: bytes) -> np.ndarray:
    """A PNG `encode_png` wrote, back to its (H, W, C) uint8 array."""
    image = png.decode_png(data)
    shape = (image.height, image.width, image.channels)
    return np.frombuffer(image.data, dtype=np.uint8).reshape(shape).copy()
