"""The client's zlib-only PNG grid, read back with the server's decoder."""

from __future__ import annotations

import numpy as np
import pytest

from aigc.png import Pixels, encode_png, grid
from services.image.encode import decode_png


def solid(value: int, w: int = 3, h: int = 2, c: int = 3) -> Pixels:
    return Pixels(w, h, c, bytes([value]) * (w * h * c))


def test_encode_round_trips_through_the_server_decoder() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    image = Pixels(7, 5, 3, pixels.tobytes())
    assert np.array_equal(decode_png(encode_png(image)), pixels)


def test_grid_places_images_row_by_row_on_white() -> None:
    images = [solid(10), solid(20), solid(30)]  # 3 images -> 2 columns, 2 rows
    out = decode_png(encode_png(grid(images, pad=1)))
    assert out.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1, 3)
    assert (out[1:3, 1:4] == 10).all() and (out[1:3, 5:8] == 20).all()
    assert (out[4:6, 1:4] == 30).all()
    assert (out[4:6, 5:8] == 255).all() and (out[0] == 255).all()  # empty cell, padding


def test_grid_refuses_mixed_sizes_and_short_data() -> None:
    with pytest.raises(ValueError, match="one size"):
        grid([solid(1), solid(1, w=4)])
    with pytest.raises(ValueError, match="bytes for"):
        Pixels(2, 2, 3, b"\x00" * 11)
