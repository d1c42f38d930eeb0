"""The llamacpp engine in-process (no Ray) on SmolLM2's real Q4_1 GGUF: the text engine
contract (chat template, seeds, n, stop strings, streaming, cancel frees the sequence's KV
cells, deadline, bad prompts, a KV cache smaller than the load)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.config import ModelConfig
from core.errors import DeadlineExceeded, InvalidArgument
from core.types import ChatMessage, FinishReason, TextChunk, TextRequest
from tests.assets import require_asset
from tests.conditions import until, wait_until
from tests.conftest import LoopThread
from tests.tiny_models import SMOLLM2_GGUF, gguf_model_config


@pytest.fixture(autouse=True, scope="module")
def _gguf_fetched() -> None:
    """The default engine's weights come with `make assets` (run by `make unit` and `make test`):
    missing, every test here fails with that name, none is skipped."""
    require_asset(SMOLLM2_GGUF)


def make_engine(runner: LoopThread, **options: Any) -> Any:
    from services.text.llamacpp_engine import LlamaCppTextEngine

    spec = gguf_model_config("smollm2")
    spec["options"] = {**spec["options"], **options}
    engine = LlamaCppTextEngine(ModelConfig.model_validate(spec))
    runner.run(engine.start())
    return engine


@pytest.fixture(scope="module")
def runner() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def engine(runner: LoopThread) -> Iterator[Any]:
    engine = make_engine(runner)
    yield engine
    runner.run(engine.stop())


def ask(prompt: str | None = None, **kw: Any) -> TextRequest:
    return TextRequest("r", "smollm2", prompt=prompt, **kw)


async def collect(engine: Any, request: TextRequest) -> list[TextChunk]:
    return [chunk async for chunk in engine.stream(request)]


def test_loads_the_gguf_with_its_chat_template(engine: Any) -> None:
    facts = engine.facts()
    assert facts.details["chat_template"] is True
    assert facts.parameters > 100_000_000
    assert "Q4_1" in str(facts.details["gguf"])
    assert int(facts.details["kv_cells"]) >= 4096 and facts.max_context == 512


def test_answers_through_the_chat_template_and_counts_tokens(engine, runner) -> None:
    result = runner.run(engine.generate(ask("What is 2 + 2?", max_tokens=24, temperature=0)))
    done = result.completions[0]
    assert done.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert 1 <= done.completion_tokens <= 24
    assert done.text.strip()
    # The template wraps the question in its system and role tokens.
    raw = engine._tokenize("What is 2 + 2?", add_special=False)
    assert result.prompt_tokens > len(raw) + 5
    messages = (ChatMessage("system", "Answer in one word."), ChatMessage("user", "Hi"))
    chat = runner.run(engine.generate(ask(messages=messages, max_tokens=4, temperature=0)))
    assert chat.prompt_tokens > 5


def test_greedy_stream_equals_unary_and_seeds_reproduce(engine, runner) -> None:
    greedy = ask("Name three colours.", max_tokens=20, temperature=0)
    unary = runner.run(engine.generate(greedy))
    chunks = runner.run(collect(engine, greedy))
    assert "".join(c.delta for c in chunks) == unary.completions[0].text
    assert chunks[-1].finish_reason == unary.completions[0].finish_reason
    assert chunks[-1].prompt_tokens == unary.prompt_tokens
    assert sum(c.token_count for c in chunks) == unary.completions[0].completion_tokens

    sampled = ask("Tell me a story.", max_tokens=24, temperature=1.0, seed=7, n=2)
    a = runner.run(engine.generate(sampled))
    b = runner.run(engine.generate(sampled))
    assert [c.text for c in a.completions] == [c.text for c in b.completions]
    assert a.completions[0].text != a.completions[1].text  # seed + index per completion
    other = runner.run(engine.generate(ask("Tell me a story.", max_tokens=24, temperature=1.0,
                                           seed=8)))  # fmt: skip
    assert other.completions[0].text != a.completions[0].text


def test_stop_string_ends_the_completion_before_it(engine, runner) -> None:
    full = runner.run(engine.generate(ask("Count from 1 to 20.", max_tokens=48, temperature=0)))
    text = full.completions[0].text
    assert len(text) >= 6
    stop = text[3:6]
    cut = runner.run(
        engine.generate(ask("Count from 1 to 20.", max_tokens=48, temperature=0, stop=(stop,)))
    )
    assert cut.completions[0].finish_reason == FinishReason.STOP
    assert cut.completions[0].text == text[: text.index(stop)]


def test_cancelled_stream_frees_its_sequence_and_cells(engine, runner) -> None:
    before = engine.stats()["cancelled_requests_total"]

    async def read_two() -> None:
        stream = engine.stream(ask("Write a long story.", max_tokens=200, ignore_eos=True))
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 2:
                assert engine.stats()["running_sequences"] == 1
                assert engine.stats()["kv_cells_used"] > 0
                break
        await stream.aclose()

    runner.run(read_two())

    def freed() -> bool:
        s = engine.stats()
        return s["running_sequences"] == 0 and s["kv_cells_used"] == 0

    assert wait_until(freed, timeout_s=30)  # the scheduler frees them at its next step
    assert engine.stats()["cancelled_requests_total"] == before + 1


def test_expired_deadline_and_bad_prompts_fail_clearly(engine, runner) -> None:
    with pytest.raises(DeadlineExceeded):
        runner.run(engine.generate(ask("Hello", max_tokens=8, deadline=time.time() - 1)))
    with pytest.raises(InvalidArgument) as err:
        runner.run(engine.generate(ask("word " * 600, max_tokens=8)))
    assert err.value.field == "prompt" and "512" in err.value.message
    assert engine.stats()["running_sequences"] == 0


def test_concurrent_requests_beyond_the_kv_cache_wait_and_all_finish(runner) -> None:
    """A cache of 512 cells holds at most two of these 200-cell sequences at once: the rest
    wait for cells instead of failing a decode, and every answer equals its greedy answer
    alone."""
    small = make_engine(runner, kv_cells=512, context_per_sequence=256)
    try:
        requests = [ask(f"Say the number {i}.", max_tokens=180, temperature=0) for i in range(5)]
        alone = [runner.run(small.generate(r)).completions[0] for r in requests[:2]]

        async def together() -> list[Any]:
            return list(await asyncio.gather(*(small.generate(r) for r in requests)))

        results = runner.run(together())
        assert all(r.completions[0].finish_reason is not None for r in results)
        assert all(r.completions[0].completion_tokens > 0 for r in results)
        # the scheduler retires finished sequences at its next step, and says so in its stats
        assert wait_until(lambda: small.stats()["running_sequences"] == 0), small.stats()
        assert small.stats()["kv_cells_used"] == 0
        # Greedy answers do not depend on the company they ran in (allowing the rounding of
        # batched kernels to move a late token: the first words must agree).
        for a, b in zip(alone, results, strict=False):
            assert b.completions[0].text[:20] == a.text[:20]
    finally:
        runner.run(small.stop())


def test_a_repeated_prefix_is_reused_and_answers_do_not_change(engine, runner) -> None:
    """The chat template's system prompt is the same for every request: a second request
    starts from the cells the first left (counted as prefix-cache hits), and its greedy answer
    equals the answer of an engine with the cache off."""
    hits = engine.stats()["prefix_cache_hit_tokens_total"]
    first = runner.run(engine.generate(ask("Name a fruit.", max_tokens=16, temperature=0)))
    second = runner.run(engine.generate(ask("Name a fruit.", max_tokens=16, temperature=0)))
    reused = engine.stats()["prefix_cache_hit_tokens_total"] - hits
    assert reused >= first.prompt_tokens - 1  # the whole prompt but the token it recomputes
    assert second.completions[0].text == first.completions[0].text
    assert engine.stats()["kv_cells_cached"] > 0
    plain = make_engine(runner, prefix_cache=False)
    try:
        cold = runner.run(plain.generate(ask("Name a fruit.", max_tokens=16, temperature=0)))
        assert plain.stats()["prefix_cache_hit_tokens_total"] == 0
        assert plain.stats()["kv_cells_cached"] == 0
    finally:
        runner.run(plain.stop())
    assert cold.completions[0].text == first.completions[0].text


def test_n_completions_share_one_prefill(engine, runner) -> None:
    prefilled = engine.stats()["prefill_tokens_total"]
    hits = engine.stats()["prefix_cache_hit_tokens_total"]
    ship = ask("Invent a name for a ship.", max_tokens=12, temperature=1.0, seed=3, n=3)
    result = runner.run(engine.generate(ship))
    computed = engine.stats()["prefill_tokens_total"] - prefilled
    reused = engine.stats()["prefix_cache_hit_tokens_total"] - hits
    assert computed + reused == result.prompt_tokens  # once, not three times
    assert [c.index for c in result.completions] == [0, 1, 2]
    assert len({c.text for c in result.completions}) == 3
    assert all(c.completion_tokens > 0 for c in result.completions)


def test_counters_have_the_meaning_every_text_engine_gives_them(engine, runner) -> None:
    """As tests/unit/test_engines.py asks of transformers: the prompt counts once whatever n,
    a passed deadline is a failed request, not a cancelled one."""
    before = engine.stats()
    result = runner.run(engine.generate(ask("Hello there", max_tokens=3, n=3, ignore_eos=True)))
    after_ok = engine.stats()
    assert after_ok["prompt_tokens_total"] - before["prompt_tokens_total"] == result.prompt_tokens
    assert after_ok["generated_tokens_total"] - before["generated_tokens_total"] == 9
    with pytest.raises(DeadlineExceeded):
        runner.run(engine.generate(ask("Hi", max_tokens=5, deadline=time.time() - 1)))
    after_late = engine.stats()
    assert after_late["failed_requests_total"] == before["failed_requests_total"] + 1
    assert after_late["cancelled_requests_total"] == before["cancelled_requests_total"]


def test_batch_tier_work_makes_way_for_an_interactive_request(engine, runner) -> None:
    """16 batch-tier streams on 16 sequence ids: a quarter of the ids stay free, so the
    interactive request starts at once, and while it runs the batch's sequences sit out: every
    step then decodes one row (the scheduler's own counters, read well inside its run)."""
    from core.types import Priority

    flex = [
        ask(f"Write a long story about {k}.", max_tokens=48, ignore_eos=True,
            priority=Priority.BATCH, temperature=0)
        for k in range(16)
    ]  # fmt: skip
    interactive = ask("Write a long story.", max_tokens=200, ignore_eos=True, temperature=0)
    flex_tokens = {"n": 0}

    async def run_flex(request: TextRequest) -> None:
        async for chunk in engine.stream(request):
            flex_tokens["n"] += chunk.token_count

    async def scenario() -> tuple[int, dict[str, float], dict[str, float]]:
        tasks = [asyncio.ensure_future(run_flex(r)) for r in flex]
        assert await until(lambda: flex_tokens["n"] >= 12, 120)  # the batch is decoding
        running = int(engine.stats()["running_sequences"])
        seen = 0
        marks: list[dict[str, float]] = []
        async for chunk in engine.stream(interactive):
            seen += chunk.token_count
            if (not marks and seen >= 4) or (len(marks) == 1 and seen >= 24):
                marks.append(engine.stats())
        await asyncio.gather(*tasks)
        return running, marks[0], marks[1]

    running, a, b = runner.run(scenario())
    assert running == 16 - engine.flex_reserve  # the batch left ids free
    steps = b["steps_total"] - a["steps_total"]
    assert steps >= 10
    assert b["batch_occupancy_sum"] - a["batch_occupancy_sum"] == steps  # one row a step


def test_an_ended_completion_stops_and_its_sibling_goes_on(engine, runner) -> None:
    """`TextStream.end` (a completion that repeated a tool call, services/text/tools.py): the
    scheduler finishes that completion at its next step, its last chunk with the tokens it
    generated and the prompt's; the request's other completion runs to its end, and every token
    generated is reported."""
    before = engine.stats()

    async def read() -> list[TextChunk]:
        request = ask("Write a long story.", max_tokens=64, n=2, seed=5, ignore_eos=True)
        stream = engine.stream(request)
        chunks: list[TextChunk] = []
        async for chunk in stream:
            if not any(c.index == 0 for c in chunks) and chunk.index == 0:
                stream.end(0)
            chunks.append(chunk)
        return chunks

    chunks = runner.run(read())
    ended = [c for c in chunks if c.index == 0]
    other = [c for c in chunks if c.index == 1]
    assert [c.finish_reason for c in ended[1:]] == [None] * (len(ended) - 2) + [FinishReason.STOP]
    assert ended[-1].prompt_tokens == other[-1].prompt_tokens > 0
    assert sum(c.token_count for c in ended) < 64
    assert other[-1].finish_reason == FinishReason.LENGTH
    assert sum(c.token_count for c in other) == 64
    after = engine.stats()
    generated = after["generated_tokens_total"] - before["generated_tokens_total"]
    assert generated == sum(c.token_count for c in chunks)
    assert after["cancelled_requests_total"] == before["cancelled_requests_total"]
    assert wait_until(lambda: engine.stats()["running_sequences"] == 0, timeout_s=30)
