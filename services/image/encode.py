"""PNG encoding with zlib alone (no imaging library): fast for the small images GANs make."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from services.types import ImageFormat

_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # grayscale, RGB, RGBA


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """uint8 array (H, W, C) with C in 1, 3, 4 -> PNG bytes."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPE:
        raise ValueError(f"expected uint8 (H, W, 1|3|4), got {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # filter byte 0 per row
    rows[:, 1:] = pixels.reshape(height, width * channels)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _chunk(b"IEND", b""),
        ]
    )


def encode_image(pixels: np.ndarray, fmt: ImageFormat, png_level: int = 6) -> tuple[bytes, str]:
    """One generated image in the format a request asked for: (bytes, MIME type)."""
    if fmt == ImageFormat.PNG:
        return encode_png(pixels, png_level), "image/png"
    return pixels.tobytes(), "application/octet-stream"


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of encode_png for its own output (8-bit, filter 0); used by the SDK and tests."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _, color, _, _, _ = struct.unpack(">IIBBBBB", body)
            channels = {v: k for k, v in _COLOR_TYPE.items()}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, -1)
    if rows[:, 0].any():
        raise ValueError("only filter type 0 is supported")
    return rows[:, 1:].reshape(height, width, channels).copy()
