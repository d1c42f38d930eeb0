"""PNG writing with zlib alone, so the client needs no numpy or imaging library."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # grayscale, RGB, RGBA


@dataclass(frozen=True)
class Pixels:
    """uint8 pixels, row-major, height x width x channels (the API's RAW image format)."""

    width: int
    height: int
    channels: int
    data: bytes

    def __post_init__(self) -> None:
        if self.channels not in _COLOR_TYPE:
            raise ValueError(f"channels must be 1, 3 or 4, got {self.channels}")
        if len(self.data) != self.width * self.height * self.channels:
            raise ValueError(
                f"{len(self.data)} bytes for {self.width}x{self.height}x{self.channels} pixels"
            )

    def row(self, y: int) -> bytes:
        stride = self.width * self.channels
        return self.data[y * stride : (y + 1) * stride]


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def encode_png(image: Pixels, level: int = 6) -> bytes:
    header = struct.pack(
        ">IIBBBBB", image.width, image.height, 8, _COLOR_TYPE[image.channels], 0, 0, 0
    )
    rows = b"".join(b"\x00" + image.row(y) for y in range(image.height))  # filter 0 per row
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows, level)),
            _chunk(b"IEND", b""),
        ]
    )


def decode_png(data: bytes) -> Pixels:
    """Inverse of encode_png for its own output (8-bit, no interlace, filter 0 on every row)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    colors = {v: k for k, v in _COLOR_TYPE.items()}
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in colors or interlace:
                raise ValueError("only 8-bit, non-interlaced gray, RGB or RGBA PNGs")
            channels = colors[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    if len(raw) != stride * height or any(raw[y * stride] for y in range(height)):
        raise ValueError("only filter type 0 is supported")
    rows = b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))
    return Pixels(width, height, channels, rows)


def grid(images: list[Pixels], pad: int = 2) -> Pixels:
    """Images of one size side by side in a near-square grid on white, `pad` pixels apart."""
    first = images[0]
    w, h, c = first.width, first.height, first.channels
    if any((i.width, i.height, i.channels) != (w, h, c) for i in images):
        raise ValueError("grid images must share one size and channel count")
    cols = 1
    while cols * cols < len(images):
        cols += 1
    rows = -(-len(images) // cols)
    width, height = cols * (w + pad) + pad, rows * (h + pad) + pad
    out = bytearray(b"\xff" * (width * height * c))
    for k, img in enumerate(images):
        r, col = divmod(k, cols)
        x0, y0 = pad + col * (w + pad), pad + r * (h + pad)
        for y in range(h):
            start = ((y0 + y) * width + x0) * c
            out[start : start + w * c] = img.row(y)
    return Pixels(width, height, c, bytes(out))
