"""A completion that repeats a tool call (the same name, arguments equal as parsed JSON) ends
there, in every tool format (services/text/tools.py `Calls`, `with_tool_calls`): the repeat
is held back while it may still turn out one and never sent, a call that differs is released
as soon as it does, the engine is told to end that completion only (`TextStream.end`), and
the completion finishes with tool_calls and its usage. The engines' side of `end`:
test_llamacpp_engine.py, test_engines.py (transformers), test_vllm_engine.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.types import ChatMessage, FinishReason, TextChunk, TextRequest, Tool, ToolCallDelta
from services.text.engine import collect
from services.text.hermes import CLOSE, OPEN, HermesStream
from services.text.llama3 import Llama3Stream
from services.text.stream import TextStream
from services.text.tools import CallParser, ToolStream, with_tool_calls

Calls = list[tuple[str, Any]]  # (name, arguments) as the model writes them


def generic(calls: Calls) -> str:
    """The generic format's answer."""
    return json.dumps({"tool_calls": [{"name": n, "arguments": a} for n, a in calls]})


def hermes(calls: Calls) -> str:
    """Hermes' blocks."""
    blocks = [json.dumps({"name": n, "arguments": a}) for n, a in calls]
    return "\n".join(f"{OPEN}\n{b}\n{CLOSE}" for b in blocks)


def llama3(calls: Calls) -> str:
    """Llama 3's JSON calls."""
    return "; ".join(json.dumps({"name": n, "parameters": a}) for n, a in calls)


FORMATS: list[tuple[Callable[[], CallParser], Callable[[Calls], str]]] = [
    (ToolStream, generic),
    (HermesStream, hermes),
    (Llama3Stream, llama3),
]
formats = pytest.mark.parametrize(
    ("parser", "render"), FORMATS, ids=["generic", "hermes", "llama3"]
)


def feed(parser: CallParser, text: str, step: int) -> list[list[ToolCallDelta]]:
    """`text` fed in pieces of `step` characters, then finished: each piece's deltas."""
    pieces = [text[i : i + step] for i in range(0, len(text), step)]
    return [parser.feed(p)[1] for p in pieces] + [parser.finish()[1]]


def joined(deltas: list[list[ToolCallDelta]]) -> list[tuple[str, str]]:
    """The calls the deltas make: (name, arguments text), each named once, in its first delta."""
    calls: dict[int, list[str]] = {}
    for d in (d for piece in deltas for d in piece):
        if d.id is not None:
            assert d.index not in calls and d.name, "a call is named once, in its first delta"
            calls[d.index] = [d.name, ""]
        calls[d.index][1] += d.arguments
    assert sorted(calls) == list(range(len(calls)))
    return [(name, args) for name, args in calls.values()]


# ---- the parsers ------------------------------------------------------------------------------
@formats
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_a_repeated_call_is_never_sent_and_ends_the_answer(parser, render, step) -> None:
    paris = {"city": "Paris"}
    text = render([("get_weather", paris), ("get_weather", paris), ("get_time", {})])
    stream = parser()
    deltas = feed(stream, text, step)
    assert joined(deltas) == [("get_weather", '{"city": "Paris"}')]
    assert all(d.index == 0 for piece in deltas for d in piece)  # not a piece of the repeat
    assert stream.repeated
    assert [(c.name, c.arguments) for c in stream.tool_calls()] == [
        ("get_weather", '{"city": "Paris"}')
    ]
    assert stream.feed(text) == ("", [])  # nothing after the repeat is read


@formats
def test_a_call_of_the_same_name_is_released_as_soon_as_its_arguments_differ(
    parser, render
) -> None:
    text = render([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})])
    stream = parser()
    released_at, first = -1, None
    for at in range(len(text)):  # one character at a time
        for d in stream.feed(text[at])[1]:
            if d.index == 1 and first is None:
                released_at, first = at, d
    assert not stream.repeated
    # held while `{"city": "` could still become Paris; released when "Rome" is complete,
    # with all of it so far in its first delta
    assert text[: released_at + 1].endswith('"Rome"')
    assert first is not None and first.name == "get_weather"
    assert first.arguments == '{"city": "Rome"'
    stream.finish()
    assert [(c.name, json.loads(c.arguments)) for c in stream.tool_calls()] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]


@formats
def test_a_call_with_the_arguments_of_a_call_of_another_name_is_no_repeat(parser, render) -> None:
    text = render([("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Oslo"})])
    stream = parser()
    assert [n for n, _ in joined(feed(stream, text, 2))] == ["get_weather", "get_time"]
    assert not stream.repeated


@pytest.mark.parametrize(
    "again",
    [
        '{"unit": "c", "city": "Paris"}',  # the members in another order
        '{"city":"Par\\u0069s","unit":"c"}',  # other whitespace and escapes
    ],
)
def test_arguments_are_compared_as_parsed_json(again: str) -> None:
    text = (
        '{"tool_calls": [{"name": "w", "arguments": {"city": "Paris", "unit": "c"}}, '
        f'{{"name": "w", "arguments": {again}}}, {{"name": "w", "arguments": {{}}}}]}}'
    )
    stream = ToolStream()
    assert joined(feed(stream, text, 1)) == [("w", '{"city": "Paris", "unit": "c"}')]
    assert stream.repeated


@formats
def test_a_held_call_cut_short_is_sent_as_it_is(parser, render) -> None:
    """max_tokens ended the answer while the call could still have been a repeat: it is not
    one, and goes out cut, as any cut call does."""
    text = render([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Paris"})])
    cut = text[: text.rindex('"Paris"') + 3]
    stream = parser()
    assert joined(feed(stream, cut, 4)) == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_weather", '{"city": "Pa'),
    ]
    assert not stream.repeated


ARGUMENTS = [{}, {"city": "Oslo"}, {"city": "Rome"}, {"city": "Oslo", "unit": "c"}, {"n": [1]}]


@formats
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["f", "g"]), st.sampled_from(ARGUMENTS)), max_size=5),
    st.integers(1, 9),
)
def test_the_calls_sent_are_those_before_the_first_repeat(parser, render, calls, step) -> None:
    firsts: Calls = []
    for call in calls:
        if call in firsts:
            break
        firsts.append(call)
    stream = parser()
    deltas = feed(stream, render(calls), step)
    assert [(n, json.loads(a)) for n, a in joined(deltas)] == firsts
    assert all(d.index < len(firsts) for piece in deltas for d in piece)
    assert stream.repeated == (len(firsts) < len(calls))


# ---- the stream: the engine is told, usage stays whole ------------------------------------------
class FakeEngine:
    """What an engine's `stream` does, scripted: each completion's text in pieces of one token,
    interleaved, the last one finishing it (stop; length for the completions in `cut`, which
    ran to max_tokens); after `end(index)` one more piece of it is already on its way, then its
    last chunk, as an engine sends it (no text, the tokens since its previous chunk, the
    prompt's)."""

    PROMPT = 7

    def __init__(self, texts: list[str], step: int, cut: tuple[int, ...] = ()) -> None:
        self.pieces = [[t[i : i + step] for i in range(0, len(t), step)] for t in texts]
        self.cut = cut
        self.ended: list[int] = []
        self.sent = [0] * len(texts)  # tokens each completion's chunks reported

    def stream(self) -> TextStream:
        return TextStream(self._chunks(), self.ended.append)

    async def _chunks(self) -> AsyncGenerator[TextChunk, None]:
        left = [list(p) for p in self.pieces]
        late = [1] * len(left)  # pieces still on their way after an end
        while any(left):
            for i, pieces in enumerate(left):
                if not pieces:
                    continue
                if i in self.ended and not late[i]:
                    left[i] = []
                    yield self._chunk(i, "", FinishReason.STOP)
                    continue
                if i in self.ended:
                    late[i] -= 1
                piece = pieces.pop(0)
                last = FinishReason.LENGTH if i in self.cut else FinishReason.STOP
                yield self._chunk(i, piece, None if pieces else last)

    def _chunk(self, i: int, text: str, finish: FinishReason | None) -> TextChunk:
        tokens = 1 if text else 0
        self.sent[i] += tokens
        return TextChunk(i, text, tokens, finish, self.PROMPT if finish else 0)


WEATHER = Tool("get_weather", "", json.dumps({"type": "object"}))


def ask(n: int) -> TextRequest:
    messages = (ChatMessage("user", "Weather in Paris and Rome?"),)
    return TextRequest("r", "m", messages=messages, tools=(WEATHER,), n=n)


@formats
def test_n_2_where_one_completion_repeats_only_that_one_ends(parser, render) -> None:
    paris, rome = ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})
    oslo = ("get_weather", {"city": "Oslo"})
    repeats = render([paris, paris, paris, paris])  # the model would go on to max_tokens
    differs = render([paris, rome, oslo])
    engine = FakeEngine([repeats, differs], step=3, cut=(0,))

    async def main() -> tuple[list[TextChunk], Any]:
        req = ask(2)
        streamed = [c async for c in with_tool_calls(req, engine.stream(), parser)]
        unary = await collect(
            req, with_tool_calls(req, FakeEngine([repeats, differs], 3, (0,)).stream(), parser)
        )
        return streamed, unary

    streamed, unary = asyncio.run(main())
    assert engine.ended == [0]  # told once, about the completion that repeated
    first = [d for c in streamed if c.index == 0 for d in c.tool_calls or ()]
    assert {d.index for d in first} == {0}  # no delta of a repeat, in any chunk
    finishes = [(c.index, c.finish_reason) for c in streamed if c.finish_reason]
    assert finishes == [(0, FinishReason.TOOL_CALLS), (1, FinishReason.TOOL_CALLS)]
    assert streamed[-1].index == 1  # the other completion went on after the end
    # every token the engine reported is counted, and the prompt, from the engine's last chunk
    assert [sum(c.token_count for c in streamed if c.index == i) for i in (0, 1)] == engine.sent
    assert engine.sent[0] < len(FakeEngine([repeats], 3).pieces[0])  # it stopped early
    assert unary.prompt_tokens == FakeEngine.PROMPT
    by_index = {c.index: c for c in unary.completions}
    assert [(c.name, json.loads(c.arguments)) for c in by_index[0].tool_calls] == [paris]
    assert [(c.name, json.loads(c.arguments)) for c in by_index[1].tool_calls] == [
        paris,
        rome,
        oslo,
    ]
    assert by_index[0].finish_reason == by_index[1].finish_reason == FinishReason.TOOL_CALLS


def test_a_repeat_in_the_last_chunk_finishes_with_tool_calls_and_ends_nothing() -> None:
    """The engine finished the completion in the chunk that held the repeat (max_tokens right
    after it): nothing to end, and the answer is its calls, not a cut."""
    paris = ("get_weather", {"city": "Paris"})
    text = generic([paris, paris])
    engine = FakeEngine([text], step=len(text), cut=(0,))

    async def main() -> Any:
        return await collect(ask(1), with_tool_calls(ask(1), engine.stream()))

    (done,) = asyncio.run(main()).completions
    assert engine.ended == []
    assert done.finish_reason == FinishReason.TOOL_CALLS
    assert [c.name for c in done.tool_calls] == ["get_weather"]
    assert done.completion_tokens == 1
