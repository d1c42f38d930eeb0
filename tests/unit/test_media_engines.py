"""Image and speech engines with tiny models, in-process (no Ray): GAN buckets, dtypes and
batch independence, PNG encoding, speech determinism, VITS batching and precision, and a speech
item that fails alone in its batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import AudioFormat, AudioRequest, ImageFormat, ImageRequest
from services.audio.hibari_engine import HibariAudioEngine
from services.image.encode import decode_png, encode_png
from services.image.gan_engine import GanImageEngine
from tests.tiny_models import make_image_model


def _gan_engine(tiny_dir: Path, **options) -> GanImageEngine:
    cfg = ModelConfig(
        name="shapes",
        modality="image",
        engine="gan",
        weights=str(make_image_model(tiny_dir / "tiny-gan")),
        device="cpu",
        options=options,
        batching={"max_batch_size": 16},
    )
    return GanImageEngine(cfg)


def _gan_pixels(engine: GanImageEngine) -> list[np.ndarray]:
    """Six images from two requests (both labels paths), as int arrays, via the engine."""
    reqs = [
        ImageRequest("a", "shapes", count=3, seed=5, format=ImageFormat.RAW),
        ImageRequest("b", "shapes", count=3, seed=9, label="square", format=ImageFormat.RAW),
    ]

    async def main():
        await engine.start()
        try:
            return await engine.generate_batch(reqs)
        finally:
            await engine.stop()

    results = asyncio.run(main())
    return [np.frombuffer(i.data, np.uint8).astype(int) for r in results for i in r.images]


def test_gan_compiled_buckets_and_bfloat16_match_float32(tiny_dir):
    """torch.compile (static shapes, batches padded to a bucket) gives the eager pixels; a
    bfloat16 generator stays within rounding of float32 (PSNR well above 40 dB)."""
    reference = _gan_pixels(_gan_engine(tiny_dir))
    compiled = _gan_engine(tiny_dir, compile=True, max_forward_batch=4)
    # 6 images -> a pass of 4 and a pass of 2; buckets 1, 2, 4 were compiled at load
    pixels = _gan_pixels(compiled)
    assert [np.abs(a - b).max() for a, b in zip(reference, pixels, strict=True)] == [0] * 6
    assert compiled.buckets == [1, 2, 4] and compiled.facts().details["compile"] == "default"
    bf16 = _gan_engine(tiny_dir, dtype="bfloat16")
    for ref, img in zip(reference, _gan_pixels(bf16), strict=True):
        mse = float(((ref - img) ** 2).mean())
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 40
    assert bf16.facts().details["dtype"] == "bfloat16"


def test_gan_float16_needs_cuda(tiny_dir):
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        asyncio.run(_gan_engine(tiny_dir, dtype="float16").start())


def test_gan_batches_are_independent_of_their_neighbours(tiny_dir):
    async def main():
        engine = _gan_engine(tiny_dir)
        await engine.start()
        reqs = [
            ImageRequest("a", "shapes", count=3, seed=10, label="square"),
            ImageRequest("b", "shapes", count=1, seed=11, format=ImageFormat.RAW),
        ]
        together = await engine.generate_batch(reqs)
        alone = await engine.generate_batch([reqs[1]])
        return engine, together, alone

    engine, together, alone = asyncio.run(main())
    assert [len(r.images) for r in together] == [3, 1]
    assert [i.seed for i in together[0].images] == [10, 11, 12]
    assert {i.label for i in together[0].images} == {"square"}
    assert together[1].images[0].data == alone[0].images[0].data
    assert decode_png(together[0].images[0].data).shape == (28, 28, 1)
    with pytest.raises(InvalidArgument, match="circle, square, triangle"):
        engine.validate(ImageRequest("c", "shapes", label="hexagon"))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_roundtrip(channels):
    pixels = np.random.default_rng(0).integers(0, 256, (7, 5, channels), dtype=np.uint8)
    data = encode_png(pixels)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(decode_png(data), pixels)


def test_speech_engine_is_deterministic_and_scales_with_text():
    async def main():
        cfg = ModelConfig(name="speech", modality="audio", engine="hibari")
        engine = HibariAudioEngine(cfg)
        await engine.start()
        short = AudioRequest("a", "speech", text="Hello there.", seed=1, format=AudioFormat.PCM16)
        long = AudioRequest(
            "b",
            "speech",
            text="Hello there. How are you today, my friend?",
            seed=1,
            format=AudioFormat.PCM16,
        )
        results = await engine.generate_batch([short, long, short])
        chunks = [c async for c in engine.stream(long)]
        return engine, results, chunks

    engine, (a, b, again), chunks = asyncio.run(main())
    assert engine.sample_rate == 24000 and "heart" in engine.voices
    assert a.audio == again.audio  # same seed, same audio
    assert b.duration_s > a.duration_s > 0.3
    samples = np.frombuffer(a.audio, dtype="<i2")
    assert np.abs(samples).max() > 1000  # not silence
    assert [c.last for c in chunks] == [False, True]
    assert sum(len(c.pcm16) for c in chunks) == len(b.audio)


def _vits_engine(tiny_dir: Path, **options):
    """A tiny random VITS with its sampling noise off: the same text gives the same audio."""
    from services.audio.vits_engine import VitsAudioEngine
    from tests.tiny_models import make_vits_model

    cfg = ModelConfig(
        name="vits",
        modality="audio",
        engine="vits",
        weights=str(make_vits_model(tiny_dir / "tiny-vits")),
        device="cpu",
        options={"noise_scale": 0.0, "noise_scale_duration": 0.0, **options},
    )
    return VitsAudioEngine(cfg)


def test_vits_engine_pads_a_batch_and_trims_each_waveform(tiny_dir):
    async def main():
        engine = _vits_engine(tiny_dir)
        await engine.start()
        short = AudioRequest("a", "vits", text="hi there.", seed=1)
        long = AudioRequest("b", "vits", text="a much longer sentence, with more words.", seed=1)
        batched = await engine.generate_pcm([short, long])
        alone = await engine.generate_pcm([short])
        again = await engine.generate_pcm([AudioRequest("e", "vits", text="hi there.", seed=7)])
        slow = await engine.generate_pcm([AudioRequest("c", "vits", text="hi there.", speed=0.5)])
        chunks = [c async for c in engine.stream(AudioRequest("d", "vits", text="One. Two!"))]
        return engine, batched, alone, again, slow, chunks

    engine, (short, long), (alone,), (again,), (slow,), chunks = asyncio.run(main())
    assert engine.sample_rate == 16000 and engine.voices == ("default",)
    assert len(long) > len(short) > 0  # trimmed to each text's own length
    assert alone == again  # noise scales 0: the same text gives the same audio, any seed
    # speed 0.5 speaks at half the rate (the tiny model's durations are a frame per token,
    # the floor, so speaking faster cannot shorten them)
    assert len(slow) == 2 * len(alone)
    assert [c.last for c in chunks] == [False, True]
    assert engine.facts().details["dtype"] == "float32"


def test_vits_reduced_precision_keeps_the_durations_of_long_text(tiny_dir):
    """bfloat16 runs under autocast over float32 weights: past 256 frames a model cast to
    bfloat16 miscounts its own durations, so the audio's length and alignment drift."""
    text = "the quick brown fox jumps over the lazy dog, again and again. " * 6  # 378 chars

    def synthesize(dtype: str) -> np.ndarray:
        async def main():
            engine = _vits_engine(tiny_dir, dtype=dtype)
            await engine.start()
            try:
                (pcm,) = await engine.generate_pcm([AudioRequest("a", "vits", text=text)])
                return pcm
            finally:
                await engine.stop()

        return np.frombuffer(asyncio.run(main()), dtype="<i2").astype(np.float64)

    reference, reduced = synthesize("float32"), synthesize("bfloat16")
    assert len(reduced) == len(reference) > 256 * 16  # past 256 frames of 16 samples
    snr = 10 * np.log10((reference**2).sum() / max(((reference - reduced) ** 2).sum(), 1e-9))
    assert snr > 20


def test_unreadable_text_fails_alone_in_its_batch():
    async def main():
        engine = HibariAudioEngine(ModelConfig(name="speech", modality="audio", engine="hibari"))
        await engine.start()
        bad = AudioRequest("a", "speech", text="\x1b\u00b9", seed=1)  # found by fuzzing
        good = AudioRequest("b", "speech", text="Hello.", seed=1)
        return await engine.generate_batch([bad, good])

    bad, good = asyncio.run(main())
    assert isinstance(bad, InvalidArgument) and bad.field == "text"
    assert not isinstance(good, Exception) and good.duration_s > 0
