"""Llama 3.1/3.2's JSON tool syntax (services/text/llama3.py): read from a template's text, the
prompt rendered through the template (transformers' renderer and llama.cpp's alike), the
answer's grammar compiled by llguidance against a real vocabulary, the answer parsed as it
streams, and the transformers engine serving it from a configured `chat_template` file. The
duplicate-call rule for this format: tests/unit/test_tools_repeat.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.types import ChatMessage, FinishReason, TextChunk, ToolCall, ToolChoice
from services.text.constraints import Grammars, constraint
from services.text.engine import collect, prompt_text
from services.text.llama3 import PYTHON_TAG, Llama3Stream
from services.text.tools import ToolFormat, tool_format, with_tool_calls
from tests.tool_streams import json_values, sent
from tests.unit.test_native_tools import (
    CITY,
    HERMES,
    HISTORY,
    SET_UNIT,
    SMOLLM2,
    WEATHER,
    follows,
    renderers,
    request,
    tiny_engine,
)

REPO = Path(__file__).resolve().parents[2]
LLAMA3_FILE = REPO / "configs" / "chat-templates" / "llama3.1-json-tools.jinja"
LLAMA3 = LLAMA3_FILE.read_text()


def call(name: str, arguments: Any, ensure_ascii: bool = True) -> str:
    return json.dumps({"name": name, "parameters": arguments}, ensure_ascii=ensure_ascii)


# ---- which syntax a template has -------------------------------------------------------------
def test_meta_s_marks_in_a_template_that_takes_tools_are_the_llama3_syntax() -> None:
    assert tool_format(LLAMA3) == ToolFormat.LLAMA3
    for mark in ("<|python_tag|>", "Environment: ipython", "Given the following functions"):
        assert tool_format(f"{{% if tools %}}{mark}{{% endif %}}") == ToolFormat.LLAMA3
        assert tool_format(f"{{% if custom_tools %}}{mark}{{% endif %}}") == ToolFormat.GENERIC
    # Llama 3.0's template: no tools
    llama30 = (
        "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{{ m.content }}<|eot_id|>{% endfor %}"
    )
    assert tool_format(llama30) == ToolFormat.GENERIC
    assert tool_format(HERMES) == ToolFormat.HERMES and tool_format(SMOLLM2) == ToolFormat.GENERIC


# ---- the prompt ---------------------------------------------------------------------------------
def test_tools_calls_and_results_render_in_the_templates_own_syntax(tiny_tokenizer: Any) -> None:
    two = (*HISTORY[1].tool_calls, ToolCall("call_2", "set_unit", '{"unit": "c"}'))
    history = (
        ChatMessage("system", "Be brief."),
        HISTORY[0],
        ChatMessage("assistant", "", two),
        HISTORY[2],
        ChatMessage("tool", "Done", tool_call_id="call_2"),
    )
    req = request(messages=history, tools=(WEATHER, SET_UNIT))
    texts = [
        prompt_text(req, r, "raw", "m", ToolFormat.LLAMA3)
        for r in renderers(tiny_tokenizer, LLAMA3)
    ]
    assert texts[0] == texts[1]
    text = texts[0]
    assert text is not None
    assert "Environment: ipython\n" in text and "Be brief.<|eot_id|>" in text
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "description": "The weather in a city",
                     "parameters": CITY},
    }  # fmt: skip
    assert json.dumps(tool, indent=4) in text  # the template's own tools, in the user turn
    assert "Given the following functions" in text
    # Meta's template takes one call per assistant message: two calls are two messages
    assert (
        "\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        f"{call('get_weather', {'city': 'Paris'})}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        f"{call('set_unit', {'unit': 'c'})}<|eot_id|>"
        "<|start_header_id|>ipython<|end_header_id|>\n\nSunny<|eot_id|>"
        "<|start_header_id|>ipython<|end_header_id|>\n\nDone<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ) in text
    assert '"tool_calls"' not in text and "tool_response" not in text  # not the generic JSON
    # tool_choice none: the tools are not offered, the history keeps its syntax
    unoffered = prompt_text(
        request(messages=history, tools=(WEATHER,), tool_choice=ToolChoice.NONE),
        tiny_tokenizer, "raw", "m", ToolFormat.LLAMA3,
    )  # fmt: skip
    assert unoffered is not None and "Environment: ipython" not in unoffered
    assert call("get_weather", {"city": "Paris"}) in unoffered


def test_a_template_that_writes_no_calls_or_results_gets_them_as_text(
    tiny_tokenizer: Any,
) -> None:
    bare = (
        "{% if tools %}Environment: ipython\n{% for t in tools %}{{ t.function.name }} "
        "{% endfor %}{{ '\\n' }}{% endif %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    assert tool_format(bare) == ToolFormat.LLAMA3
    two = (*HISTORY[1].tool_calls, ToolCall("call_2", "set_unit", '{"unit": "c"}'))
    history = (HISTORY[0], ChatMessage("assistant", "", two), HISTORY[2])
    for renderer in renderers(tiny_tokenizer, bare):
        text = prompt_text(
            request(messages=history, tools=(WEATHER,)), renderer, "raw", "m", ToolFormat.LLAMA3
        )
        assert text == (
            "Environment: ipython\nget_weather \n"
            "user: Weather in Paris?\n"
            f"assistant: {call('get_weather', {'city': 'Paris'})}; "
            f"{call('set_unit', {'unit': 'c'})}\n"
            "ipython: Sunny\n"
            "assistant:"
        )


# ---- the answer, parsed as it streams -------------------------------------------------------
def feed_all(text: str, step: int) -> tuple[str, list[tuple[str, str]]]:
    """`text` fed to a Llama3Stream in pieces of `step` characters: its content, and its calls
    (name, arguments) joined from their deltas."""
    return sent(Llama3Stream(), text, step)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["", " ", "\n", PYTHON_TAG, f" {PYTHON_TAG}"]),
    st.lists(st.dictionaries(st.text(), json_values, max_size=3), min_size=1, max_size=3),
    st.integers(1, 9),
    st.booleans(),
    st.booleans(),
)
def test_calls_stream_in_pieces_that_join_to_the_arguments(
    lead: str, args: list[dict[str, Any]], step: int, ensure_ascii: bool, tags: bool
) -> None:
    sep = f"; {PYTHON_TAG}" if tags else "; "
    text = lead + sep.join(call(f"f{i}", a, ensure_ascii) for i, a in enumerate(args))
    streamed = feed_all(text, step)
    assert feed_all(text, len(text)) == streamed  # unary: the whole answer in one piece
    content, calls = streamed
    assert content == ""
    assert [(name, json.loads(arguments)) for name, arguments in calls] == [
        (f"f{i}", a) for i, a in enumerate(args)
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.text().filter(lambda t: not t.lstrip().startswith(("{", PYTHON_TAG[:1]))),
    st.integers(1, 7),
)
def test_text_that_does_not_open_with_a_call_is_the_content_as_it_is(
    answer: str, step: int
) -> None:
    assert feed_all(answer, step) == (answer, [])


def test_the_syntax_has_no_text_before_a_call_a_tag_beginning_waits_and_a_cut() -> None:
    later = f"Let me look. {call('f', {'a': 1})}"
    for step in (1, 4, len(later)):
        assert feed_all(later, step) == (later, [])  # a call after text is text
        assert feed_all("<|pyth", step) == ("<|pyth", [])  # the tag's beginning, then the end
        assert feed_all("<|pi", step) == ("<|pi", [])
    tricky = {"note": 'a }; {"name": 1'}  # the separator and a brace inside a string
    text = f"{call('f', tricky)}; {call('g', {})}\n"
    for step in (1, 2, 5, len(text)):
        content, calls = feed_all(text, step)
        assert content == "" and [(n, json.loads(a)) for n, a in calls] == [
            ("f", tricky),
            ("g", {}),
        ]
    cut = text[: text.index('"note": "a') + 10]  # max_tokens ended inside the arguments
    assert feed_all(cut, 3) == ("", [("f", '{"note": "a')])
    assert feed_all(call("n", {"x": 12}).removesuffix("}}") + "}", 2) == ("", [("n", '{"x": 12}')])
    # not the syntax (never under the grammar): text after the calls is content
    assert feed_all(f"{call('f', {})} and more", 3) == ("and more", [("f", "{}")])


def test_a_stream_that_called_tools_finishes_with_tool_calls_in_each_completion() -> None:
    """n=2: each completion's calls are its own, split across deltas, and each finishes with
    tool_calls; a completion that answers in text finishes as it did."""
    texts = [
        f"{call('get_weather', {'city': 'Oslo'})}; {call('get_weather', {'city': 'Rome'})}",
        f"{PYTHON_TAG}{call('set_unit', {'unit': 'f'})}",
    ]
    pieces = [[t[i : i + 5] for i in range(0, len(t), 5)] for t in texts]

    async def chunks() -> AsyncIterator[TextChunk]:
        for k in range(max(map(len, pieces))):
            for index, mine in enumerate(pieces):
                if k < len(mine):
                    last = k == len(mine) - 1
                    yield TextChunk(index, mine[k], 1, FinishReason.STOP if last else None)

    async def main() -> Any:
        req = request(tools=(WEATHER, SET_UNIT), n=2)
        return await collect(req, with_tool_calls(req, chunks(), Llama3Stream))

    first, second = asyncio.run(main()).completions
    for done, mine in ((first, pieces[0]), (second, pieces[1])):
        assert done.finish_reason == FinishReason.TOOL_CALLS and done.text == ""
        assert done.completion_tokens == len(mine)  # the tokens of chunks that sent nothing
    assert [(c.name, json.loads(c.arguments)) for c in first.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert [(c.name, c.arguments) for c in second.tool_calls] == [("set_unit", '{"unit": "f"}')]
    assert len({c.id for c in first.tool_calls + second.tool_calls}) == 3


# ---- the grammar, compiled against a real vocabulary -------------------------------------------
def test_the_grammar_of_each_tool_choice(tiny_tokenizer: Any) -> None:
    from llguidance.hf import from_tokenizer

    grammars = Grammars(
        from_tokenizer(tiny_tokenizer, eos_token=tiny_tokenizer.eos_token_id), ToolFormat.LLAMA3
    )

    def tokenize(text: str) -> list[int]:
        return list(tiny_tokenizer(text, add_special_tokens=False).input_ids)

    paris, oslo = call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Oslo"})
    tools = (WEATHER, SET_UNIT)
    required = follows(grammars, tokenize, request(tools=tools, tool_choice=ToolChoice.REQUIRED))
    assert required("Sure.") == "refused"  # calls only
    assert required(paris) == required(f"{paris}; {oslo}") == "complete"
    assert required(f"{paris}\n{oslo}") == "refused"  # `; ` between calls
    assert required(call("set_unit", {"unit": "c"})) == "complete"
    assert required(call("get_weather", {"town": "Paris"})) == "refused"  # not its parameters
    assert required(json.dumps({"name": "get_weather", "arguments": {}})) == "refused"
    assert required(call("get_time", {})) == "refused"  # not a tool
    assert required(paris[:30]) == "partial"
    single = follows(
        grammars, tokenize,
        request(tools=tools, tool_choice=ToolChoice.REQUIRED, parallel_tool_calls=False),
    )  # fmt: skip
    assert single(paris) == "complete" and single(f"{paris}; ") == "refused"
    named = follows(
        grammars, tokenize,
        request(tools=tools, tool_choice=ToolChoice.FUNCTION, tool_name="set_unit"),
    )  # fmt: skip
    assert named(call("set_unit", {"unit": "f"})) == "complete"
    assert named(paris) == "refused"
    auto = follows(grammars, tokenize, request(tools=tools))
    assert auto("It is sunny, {no call} needed.\nBye.") == "complete"  # free text
    assert auto(f"{paris}; {oslo}") == "complete"
    assert auto(f"Let me look. {paris}") == "complete"  # text: the call in it is no call
    assert auto('{"name": "nope"') == "refused"  # a `{` first opens a call
    assert auto(' \n{"name": "get_weather"') == "refused"  # after whitespace too
    assert grammars.compiled == 4
    none = request(tools=tools, tool_choice=ToolChoice.NONE)
    assert constraint(none, ToolFormat.LLAMA3) is None and grammars.matcher(none) is None


# ---- the configured template, served ---------------------------------------------------------
def test_the_transformers_engine_serves_the_configured_templates_tool_syntax(
    tiny_dir: Path,
) -> None:
    """Random weights: a named tool whose argument is an enum leaves one choice of two; the
    call must still parse and validate."""
    ask = request(
        messages=(ChatMessage("user", "Use Celsius."),),
        tools=(WEATHER, SET_UNIT),
        tool_choice=ToolChoice.FUNCTION,
        tool_name="set_unit",
        max_tokens=200,
        temperature=1.0,
        seed=5,
    )

    async def main() -> Any:
        engine = tiny_engine(tiny_dir, str(LLAMA3_FILE))
        await engine.start()
        try:
            prompt = engine.tokenizer.decode(engine.prompt_of(ask))
            result = await collect(ask, engine.respond(ask))
            return engine.facts(), prompt, result
        finally:
            await engine.stop()

    facts, prompt, result = asyncio.run(main())
    assert facts.details["tool_format"] == "llama3_json"
    assert "Environment: ipython" in prompt and '"name": "set_unit"' in prompt
    (done,) = result.completions
    assert done.finish_reason == FinishReason.TOOL_CALLS, done
    ((name, arguments),) = [(c.name, json.loads(c.arguments)) for c in done.tool_calls]
    assert name == "set_unit" and arguments in ({"unit": "c"}, {"unit": "f"})
    assert done.text == ""
