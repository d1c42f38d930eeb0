"""The video engine without Ray: the MP4 decoded with PyAV (frame count, rate, duration,
size, motion), the thumbnail and spritesheet, the prompt's labels, refusals naming fields."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest

from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import VideoChunk, VideoRequest
from core.video import read_labels
from services.image.encode import decode_png
from services.video.gan_engine import GanVideoEngine, plan_walk
from tests.tiny_models import make_image_model

av = pytest.importorskip("av")
FASHION = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag")


def _faces(path: Path) -> Path:
    """A random-weight unconditional 64x64 DCGAN (the faces model's architecture, narrower)."""
    import torch
    from safetensors.torch import save_file

    from services.image.networks import CONFIG_FILE, WEIGHTS_FILE, build_generator

    if not (path / CONFIG_FILE).exists():
        config = {
            "architecture": "dcgan64", "latent_dim": 8, "image_size": 64, "channels": 3,
            "labels": [], "kwargs": {"ngf": 4},
        }  # fmt: skip
        torch.manual_seed(0)
        path.mkdir(parents=True)
        save_file(build_generator(config).eval().state_dict(), str(path / WEIGHTS_FILE))
        (path / CONFIG_FILE).write_text(json.dumps(config))
    return path


def _engine(weights: Path, **options) -> GanVideoEngine:
    cfg = ModelConfig(
        name="clips", modality="video", engine="gan", weights=str(weights), device="cpu",
        options={"fps": 8, "max_forward_batch": 5, **options},
    )  # fmt: skip
    return GanVideoEngine(cfg)


def _run(engine: GanVideoEngine, request: VideoRequest) -> list[VideoChunk]:
    async def main() -> list[VideoChunk]:
        await engine.start()
        try:
            engine.validate(request)
            return [c async for c in engine.generate_stream(request)]
        finally:
            await engine.stop()

    return asyncio.run(main())


def _decode(data: bytes) -> tuple[list[np.ndarray], object, object]:
    container = av.open(io.BytesIO(data))
    stream = container.streams.video[0]
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return frames, stream, container


def test_conditional_clip_turns_one_label_into_another(tiny_dir):
    chunks = _run(
        _engine(make_image_model(tiny_dir / "tiny-gan")),
        VideoRequest("v", "clips", "a circle turning into a square", seconds=3, seed=7),
    )
    progress = [c.progress for c in chunks]
    assert progress == sorted(progress) and progress[-1] == 100 and len(progress) > 2
    result = chunks[-1].result
    assert result is not None and result.labels == ("circle", "square")
    frames, stream, container = _decode(result.video)
    assert len(frames) == result.frames == 24
    assert stream.average_rate == 8 and stream.codec_context.name == "h264"
    assert (stream.width, stream.height) == (28, 28) == (result.width, result.height)
    assert container.duration / 1e6 == pytest.approx(3.0, abs=0.01)
    moves = [np.abs(frames[k].astype(int) - frames[k - 1]).mean() for k in range(1, 24)]
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 2 and max(moves) > 0
    assert decode_png(result.thumbnail).shape == (28, 28, 1)
    assert decode_png(result.spritesheet).shape == (3 * 28, 8 * 28, 1)  # 24 frames, 8 a row


def test_unconditional_clip_is_a_seeded_walk(tiny_dir):
    engine = _engine(_faces(tiny_dir / "tiny-faces"), sprite_frames=4)
    first = _run(engine, VideoRequest("v", "clips", "a face", seconds=2, seed=3))[-1].result
    again = _run(engine, VideoRequest("v", "clips", "a face", seconds=2, seed=3))[-1].result
    assert first is not None and again is not None
    frames, stream, _ = _decode(first.video)
    assert len(frames) == 16 and (stream.width, stream.height) == (64, 64)
    assert frames[0].shape == (64, 64, 3)
    assert np.array_equal(np.stack(frames), np.stack(_decode(again.video)[0]))  # seed decides
    assert decode_png(first.spritesheet).shape == (64, 4 * 64, 3)


def test_refusals_name_their_field(tiny_dir):
    engine = _engine(make_image_model(tiny_dir / "tiny-gan"), max_seconds=4)

    async def main() -> None:
        await engine.start()
        with pytest.raises(InvalidArgument) as bad:
            engine.validate(VideoRequest("v", "clips", "a circle", seconds=5))
        assert bad.value.field == "seconds"
        with pytest.raises(InvalidArgument) as bad:
            engine.validate(VideoRequest("v", "clips", "a dragon turning into a square", 2))
        assert bad.value.field == "prompt" and "circle, square, triangle" in str(bad.value)
        await engine.stop()

    asyncio.run(main())


def test_prompt_labels_in_order():
    assert read_labels("a sneaker turning into a bag", FASHION) == ("sneaker", "bag")
    assert read_labels("Sneakers -> bags, then a T-shirt.", FASHION) == (
        "sneaker", "bag", "t-shirt",
    )  # fmt: skip
    assert read_labels("a shirt", FASHION) == ("shirt",)
    with pytest.raises(InvalidArgument, match="unknown label 'dragon'"):
        read_labels("a dragon into a bag", FASHION)


def test_walk_starts_and_ends_on_its_points():
    walk = plan_walk(9, 0, 4, [0, 2, 1], 3)
    assert walk.z.shape == (9, 4)
    assert walk.src.tolist()[0] == 0 and walk.dst.tolist()[-1] == 1
    assert walk.blend[0] == 0 and walk.blend[-1] == 1
