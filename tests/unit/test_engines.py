"""Engines with tiny models, in-process (no Ray): batching, streaming, cancellation, seeds."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from transformers import AutoTokenizer

from core.config import ConfigError, ModelConfig, parse_config
from core.errors import DeadlineExceeded, InvalidArgument
from core.options import EngineOptions, TransformersTextOptions
from core.registry import ENGINES, options_class
from core.types import (
    AudioFormat,
    AudioRequest,
    ChatMessage,
    FinishReason,
    ImageFormat,
    ImageRequest,
    TextRequest,
)
from services.audio.hibari_engine import HibariAudioEngine
from services.image.encode import decode_png, encode_png
from services.image.gan_engine import GanImageEngine
from services.metrics import EngineObserver
from services.text.transformers_engine import TransformersTextEngine
from tests.tiny_models import make_image_model, make_text_model


def _text_engine(tiny_dir: Path, **options) -> TransformersTextEngine:
    cfg = ModelConfig(
        name="tiny",
        modality="text",
        engine="transformers",
        weights=str(make_text_model(tiny_dir / "tiny-text")),
        options={"add_bos_token": True, "default_max_tokens": 16, **options},
        batching={"max_batch_size": 8, "batch_wait_timeout_s": 0.0},
    )
    return TransformersTextEngine(cfg)


class _StepWatch(EngineObserver):
    """Counts the engine's model steps (`batch` is called after each, on the event loop) so a
    test can wait for the next one instead of sleeping."""

    def __init__(self) -> None:
        self.steps = 0
        self._stepped = asyncio.Event()

    def batch(self, size: int, compute_s: float) -> None:
        self.steps += 1
        self._stepped.set()

    async def step_after(self, seen: int) -> None:
        async def wait() -> None:
            while self.steps <= seen:
                self._stepped.clear()
                await self._stepped.wait()

        await asyncio.wait_for(wait(), timeout=60)


def test_continuous_batching_gives_each_request_its_solo_output(tiny_dir):
    async def main():
        engine = _text_engine(tiny_dir)
        engine.observer = watch = _StepWatch()
        await engine.start()
        reqs = [
            TextRequest(
                f"r{i}",
                "tiny",
                prompt="the quick " * (i % 3 + 1),
                max_tokens=10 + 3 * i,
                seed=i,
                n=2 if i % 3 == 0 else 1,
            )
            for i in range(10)
        ]
        tasks = []
        for r in reqs:  # each joins after the engine stepped again: others are mid-generation
            seen = watch.steps
            tasks.append(asyncio.create_task(engine.generate(r)))
            await watch.step_after(seen)
        together = await asyncio.gather(*tasks)
        stats = engine.stats()
        alone = [await engine.generate(r) for r in reqs]
        await engine.stop()
        return together, alone, stats

    together, alone, stats = asyncio.run(main())
    for t, a in zip(together, alone, strict=True):
        assert [c.text for c in t.completions] == [c.text for c in a.completions]
        assert [c.completion_tokens for c in t.completions] == [
            c.completion_tokens for c in a.completions
        ]
    # sequences really shared model steps: more tokens than steps
    assert stats["batch_occupancy_sum"] > stats["steps_total"]


def test_closing_a_stream_aborts_its_sequences(tiny_dir):
    async def main():
        engine = _text_engine(tiny_dir)
        await engine.start()
        stream = engine.stream(
            TextRequest(
                "c", "tiny", prompt="hello", max_tokens=100, n=2, temperature=1.0, ignore_eos=True
            )
        )
        got = 0
        async for _ in stream:
            got += 1
            if got == 3:
                break
        await stream.aclose()
        at_close = engine.stats()
        # the engine keeps stepping for a later request; the closed one must not gain a token
        follow = await engine.generate(
            TextRequest("f", "tiny", prompt="hello", max_tokens=5, ignore_eos=True)
        )
        after = engine.stats()
        await engine.stop()
        return at_close, follow, after

    at_close, follow, after = asyncio.run(main())
    assert at_close["cancelled_requests_total"] == 1
    assert at_close["running_sequences"] == 0
    assert at_close["generated_tokens_total"] < 200  # stopped well before max_tokens x n
    assert follow.completions[0].completion_tokens == 5
    assert after["generated_tokens_total"] == at_close["generated_tokens_total"] + 5


def test_context_limit_deadline_and_chat_template(tiny_dir):
    async def main():
        engine = _text_engine(tiny_dir)
        await engine.start()
        with pytest.raises(InvalidArgument) as err:
            await engine.generate(TextRequest("x", "tiny", prompt="fox " * 500))
        assert err.value.field == "prompt"
        near = await engine.generate(
            TextRequest("y", "tiny", prompt="fox " * 60, max_tokens=500, ignore_eos=True)
        )
        with pytest.raises(DeadlineExceeded):
            await engine.generate(
                TextRequest("z", "tiny", prompt="hi", max_tokens=100, deadline=time.time() - 1)
            )
        chat = await engine.generate(
            TextRequest("c", "tiny", messages=(ChatMessage("user", "hello"),), max_tokens=3)
        )
        await engine.stop()
        return near, chat

    near, chat = asyncio.run(main())
    # max_tokens 500 does not fit: generation stops at the model's context (128 tokens)
    assert near.completions[0].finish_reason == FinishReason.LENGTH
    assert near.prompt_tokens + near.completion_tokens == 128
    assert chat.prompt_tokens > 3


def test_prompt_format_chat_sends_a_plain_prompt_through_the_chat_template(tiny_dir):
    async def prompt_ids(prompt_format: str) -> list[int]:
        engine = _text_engine(tiny_dir, prompt_format=prompt_format)
        await engine.start()
        try:
            ids = engine._prompt_ids(TextRequest("p", "tiny", prompt="hello there"))
            result = await engine.generate(TextRequest("g", "tiny", prompt="hello", max_tokens=2))
            assert result.completions[0].completion_tokens >= 1
            return ids
        finally:
            await engine.stop()

    raw, chat = asyncio.run(prompt_ids("raw")), asyncio.run(prompt_ids("chat"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir / "tiny-text")
    # the tiny model's template: "{role}: {content}\n" per message, then "assistant:"
    templated = tokenizer("user: hello there\nassistant:", add_special_tokens=False).input_ids
    assert chat == list(templated)
    assert raw == [tokenizer.bos_token_id, *tokenizer("hello there").input_ids]  # add_bos_token
    assert raw != chat


def test_a_misspelt_engine_option_fails_at_config_load_naming_the_field():
    data = {
        "models": [
            {"name": "fast", "modality": "text", "engine": "echo"},
            {"name": "faces", "modality": "image", "engine": "gan", "options": {"dtyp": "float16"}},
        ]
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="configs/x.yaml")
    assert str(err.value) == (
        "configs/x.yaml: models[1](faces).options.dtyp: Extra inputs are not permitted"
    )


@pytest.mark.parametrize(
    ("engine", "options", "needle"),
    [
        ("gan", {"half": True}, "options.half: Extra inputs are not permitted"),  # now dtype
        ("gan", {"dtype": "half"}, "options.dtype: Input should be 'float32'"),
        ("gan", {"compile": "fast"}, "options.compile: Input should be False, True, 'default'"),
        ("gan", {"compile": True, "buckets": [1, 2], "max_forward_batch": 8}, "reach max_forward"),
        ("gan", {"png_level": 10}, "options.png_level: Input should be less than or equal to 9"),
        ("echo", {"size": "big"}, "options.size: Input should be a valid integer"),
    ],
)
def test_bad_engine_options_fail_at_config_load(engine, options, needle):
    model = {"name": "img", "modality": "image", "engine": engine, "options": options}
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_config({"models": [model]}, source="x.yaml")


def test_good_engine_options_parse_into_the_engines_typed_options(tiny_dir):
    engine = _text_engine(tiny_dir, prompt_format="chat", max_context=64, start_timeout_s=5)
    assert isinstance(engine.options, TransformersTextOptions)
    assert (engine.options.prompt_format, engine.options.max_context) == ("chat", 64)
    assert engine.options.start_timeout_s == 5  # the base's option, read by the replica
    assert engine.options.dtype == "auto"  # a default
    assert engine.config.options == {  # the config keeps what was written, no defaults
        "add_bos_token": True,
        "default_max_tokens": 16,
        "prompt_format": "chat",
        "max_context": 64,
        "start_timeout_s": 5,
    }


@pytest.mark.parametrize(
    ("modality", "engine"), [(m, e) for m, engines in ENGINES.items() for e in engines]
)
def test_every_engine_option_is_typed_and_documented(modality, engine):
    options = options_class(modality, engine)
    assert issubclass(options, EngineOptions) and options.model_config["extra"] == "forbid"
    options()  # the defaults are valid: `options` may be left out
    for name, field in options.model_fields.items():
        assert field.description, f"{options.__name__}.{name} has no description"
        assert field.annotation is not Any, f"{options.__name__}.{name} is untyped"


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
