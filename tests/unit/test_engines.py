"""Text engines with tiny models, in-process (no Ray): batching, streaming, cancellation, seeds,
and every engine's typed options. Image and speech engines: test_media_engines.py."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from core.config import ConfigError, ModelConfig, parse_config
from core.errors import DeadlineExceeded, InvalidArgument
from core.options import EngineOptions, TransformersTextOptions
from core.registry import ENGINES, options_class
from core.types import (
    ChatMessage,
    FinishReason,
    TextChunk,
    TextRequest,
    TokenLogprob,
    ToolCallDelta,
)
from services.metrics import EngineObserver
from services.text.transformers_engine import TransformersTextEngine
from tests.conditions import until
from tests.tiny_models import make_text_model


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
        # the scheduler drops the closed request's rows at its next step (stats are what it
        # published, not the sequences' flags)
        freed = await until(lambda: engine.stats()["running_sequences"] == 0)
        at_close = engine.stats()
        # the engine keeps stepping for a later request; the closed one must not gain a token
        follow = await engine.generate(
            TextRequest("f", "tiny", prompt="hello", max_tokens=5, ignore_eos=True)
        )
        after = engine.stats()
        await engine.stop()
        return freed, at_close, follow, after

    freed, at_close, follow, after = asyncio.run(main())
    assert freed, at_close
    assert at_close["cancelled_requests_total"] == 1
    assert at_close["running_sequences"] == 0
    assert at_close["generated_tokens_total"] < 200  # stopped well before max_tokens x n
    assert follow.completions[0].completion_tokens == 5
    assert after["generated_tokens_total"] == at_close["generated_tokens_total"] + 5


def test_validate_refuses_bad_prompts_and_stream_reuses_its_tokens(tiny_dir):
    """The replica calls validate, then stream: the prompt is rendered and tokenized once."""

    async def main():
        engine = _text_engine(tiny_dir)
        await engine.start()
        with pytest.raises(InvalidArgument, match="tokens"):
            engine.validate(TextRequest("x", "tiny", prompt="fox " * 500))
        calls = []
        tokenize = engine._prompt_ids
        engine._prompt_ids = lambda r: calls.append(r) or tokenize(r)
        request = TextRequest("v", "tiny", prompt="the quick brown fox", max_tokens=3)
        engine.validate(request)
        validated = await engine.generate(request)
        alone = await engine.generate(TextRequest("w", "tiny", prompt="the quick brown fox",
                                                  max_tokens=3))  # fmt: skip
        await engine.stop()
        return calls, validated, alone

    calls, validated, alone = asyncio.run(main())
    assert [r.request_id for r in calls] == ["v", "w"]  # once each: validate's tokens reused
    assert validated.prompt_tokens == alone.prompt_tokens > 0


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


@pytest.mark.parametrize("temperature", [0.0, 4.2e-45, 1e-6])
def test_a_vanishing_temperature_samples_greedily(temperature: float) -> None:
    """Hypothesis found 4.2e-45 turning logits into inf (INTERNAL); below 1e-5 is greedy."""
    import torch

    from services.text.sampling import sample
    from services.text.sequences import Sampling

    class Row:
        sampling = Sampling(temperature=temperature, top_p=1.0, top_k=0, seed=0)
        generator = torch.Generator().manual_seed(0)
        shaper = None

    row = Row()
    logits = torch.tensor([[0.1, 3.0, -2.0, 2.9]])
    assert sample(logits, [row]).tolist() == [1]


def test_queued_deltas_join_with_their_logprobs_and_tool_call_pieces() -> None:
    """A slow client gets queued deltas as one chunk: every token's logprob stays with it (the
    playground shows one per token), and so does every tool call piece."""
    from services.text.engine import coalesce_deltas

    def lp(token: str) -> TokenLogprob:
        return TokenLogprob(token, -0.5, tuple(token.encode()))

    err = RuntimeError("x")
    joined = coalesce_deltas([
        TextChunk(0, "L", 1, logprobs=[lp("L")]),
        TextChunk(0, "'", 1, logprobs=[lp("'")]),
        TextChunk(1, "a", 1, logprobs=[lp("a")]),
        TextChunk(0, "", 0, tool_calls=[ToolCallDelta(0, "call_1", "f")]),
        TextChunk(0, "", 0, tool_calls=[ToolCallDelta(0, arguments="{}")]),
        TextChunk(0, "É", 2, FinishReason.LENGTH, 7, logprobs=[lp("É")]),
        TextChunk(0, "after the finish", 1),
        err,
    ])  # fmt: skip
    first, other, done, after, error = joined
    assert first == TextChunk(0, "L'", 2, logprobs=[lp("L"), lp("'")])
    assert other == TextChunk(1, "a", 1, logprobs=[lp("a")])
    assert done == TextChunk(
        0, "É", 2, FinishReason.LENGTH, 7, logprobs=[lp("É")],
        tool_calls=[ToolCallDelta(0, "call_1", "f"), ToolCallDelta(0, arguments="{}")],
    )  # fmt: skip
    assert after == TextChunk(0, "after the finish", 1) and error is err


def test_counters_have_the_meaning_every_text_engine_gives_them(tiny_dir):
    """A request's prompt counts once whatever its n (as usage reports it); a passed deadline
    is a failed request, not a cancelled one (services/text/sequences.TextCounters)."""

    async def main():
        engine = _text_engine(tiny_dir)
        await engine.start()
        before = engine.stats()
        result = await engine.generate(
            TextRequest("p", "tiny", prompt="hello there", max_tokens=3, n=3, ignore_eos=True)
        )
        after_ok = engine.stats()
        with pytest.raises(DeadlineExceeded):
            await engine.generate(
                TextRequest("d", "tiny", prompt="hi", max_tokens=5, deadline=time.time() - 1)
            )
        after_late = engine.stats()
        await engine.stop()
        return before, result, after_ok, after_late

    before, result, after_ok, after_late = asyncio.run(main())
    prompt = after_ok["prompt_tokens_total"] - before["prompt_tokens_total"]
    assert prompt == result.prompt_tokens
    assert after_ok["generated_tokens_total"] - before["generated_tokens_total"] == 9
    assert after_late["failed_requests_total"] == before["failed_requests_total"] + 1
    assert after_late["cancelled_requests_total"] == before["cancelled_requests_total"]


def test_an_ended_completion_stops_and_its_sibling_goes_on(tiny_dir):
    """`TextStream.end` (a completion that repeated a tool call, services/text/tools.py): the
    scheduler finishes that completion before its next step, its last chunk with the tokens it
    generated and the prompt's; the other completion runs to its end, and every token
    generated is reported."""

    async def main():
        engine = _text_engine(tiny_dir)
        await engine.start()
        before = engine.stats()
        stream = engine.stream(
            TextRequest("e", "tiny", prompt="hello", max_tokens=40, n=2, ignore_eos=True, seed=1)
        )
        chunks: list[TextChunk] = []
        async for chunk in stream:
            if not any(c.index == 0 for c in chunks) and chunk.index == 0:
                stream.end(0)
            chunks.append(chunk)
        freed = await until(lambda: engine.stats()["running_sequences"] == 0)
        after = engine.stats()
        await engine.stop()
        return chunks, before, after, freed

    chunks, before, after, freed = asyncio.run(main())
    ended = [c for c in chunks if c.index == 0]
    other = [c for c in chunks if c.index == 1]
    assert [c.finish_reason for c in ended[1:]] == [None] * (len(ended) - 2) + [FinishReason.STOP]
    assert ended[-1].prompt_tokens == other[-1].prompt_tokens > 0
    assert sum(c.token_count for c in ended) < 40
    assert other[-1].finish_reason == FinishReason.LENGTH
    assert sum(c.token_count for c in other) == 40
    generated = after["generated_tokens_total"] - before["generated_tokens_total"]
    assert generated == sum(c.token_count for c in chunks)
    assert after["cancelled_requests_total"] == before["cancelled_requests_total"] and freed
