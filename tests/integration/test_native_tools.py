"""Tools in a chat template's own syntax, through the real `openai` client: `gguf-hermes` is
SmolLM2's GGUF on llama.cpp with configs/chat-templates/chatml-hermes-tools.jinja as its
`chat_template` (Hermes' <tools>, <tool_call> and <tool_response>, as Qwen2.5 writes them).
The generic format's checks (tests/structured_checks.py) hold here too; what is particular to
the native syntax: the prompt is the template's own rendering of the tools and the history,
and every call, however many, parses and validates. Parts without a model:
tests/unit/test_native_tools.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import openai
import pytest

from services.text.llamacpp_model import GgufChatTemplate, gguf_file
from tests import structured_checks as check
from tests.tiny_models import HERMES_TEMPLATE, SMOLLM2_GGUF

pytestmark = pytest.mark.integration

MODEL = "gguf-hermes"
WEATHER = check.WEATHER
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET", "EST"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, CLOCK)}


@pytest.fixture(scope="module")
def oai(stack: Any) -> openai.OpenAI:
    base = f"http://127.0.0.1:{stack.gateway.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenize() -> Callable[[str], list[int]]:
    """Text -> SmolLM2's token ids, special tokens parsed, as the engine tokenizes a prompt."""
    import llama_cpp

    vocab = llama_cpp.Llama(str(gguf_file(str(SMOLLM2_GGUF))), vocab_only=True, verbose=False)
    return lambda text: vocab.tokenize(text.encode(), add_bos=False, special=True)


def validates(call: Any) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


def test_required_calls_parse_and_validate(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(
        model=MODEL, messages=check.ask("What is the weather in Paris, and the time in CET?"),
        tools=[WEATHER, CLOCK], tool_choice="required", temperature=0.7, seed=4, n=3,
        max_tokens=80,
    )  # fmt: skip
    ended = [c for c in done.choices if c.finish_reason == "tool_calls"]
    assert ended, [(c.finish_reason, c.message) for c in done.choices]
    for choice in ended:  # every answer that ended by itself is calls, each one valid
        assert choice.message.tool_calls and not choice.message.content
        for call in choice.message.tool_calls:
            validates(call)
        assert len({c.id for c in choice.message.tool_calls}) == len(choice.message.tool_calls)


def test_a_named_function_among_several_is_the_one_called(oai: openai.OpenAI) -> None:
    for name in ("get_time", "get_weather"):
        done = oai.chat.completions.create(
            model=MODEL, messages=check.ask("What is the weather in Paris?"),
            tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": name}},
            temperature=0, max_tokens=60,
        )  # fmt: skip
        choice = done.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        assert call.function.name == name
        validates(call)


def test_tools_round_trip_call_result_answer(oai: openai.OpenAI) -> None:
    check.check_tools_round_trip_call_result_answer(oai, MODEL)


def test_the_prompt_is_the_templates_own_rendering(
    oai: openai.OpenAI, tokenize: Callable[[str], list[int]]
) -> None:
    """The history of a round trip as OpenAI sends it, and the same history in transformers'
    shape through the template itself: the model was given exactly that prompt (its token
    count), so the tools, the call and its result were in the template's own syntax."""
    messages: list[Any] = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees C"},
    ]  # fmt: skip
    done = oai.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER, CLOCK], tool_choice="auto",
        temperature=0, max_tokens=30,
    )  # fmt: skip
    template = GgufChatTemplate(HERMES_TEMPLATE.read_text(), bos="", eos="")
    expected = template.apply_chat_template(
        [
            messages[0],
            messages[1],
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            ]},
            {"role": "tool", "content": "Sunny, 21 degrees C"},
        ],
        add_generation_prompt=True,
        tokenize=False,
        tools=[WEATHER, CLOCK],
    )  # fmt: skip
    assert "<tools>" in expected and "<tool_response>\nSunny" in expected
    assert done.usage.prompt_tokens == len(tokenize(expected))
    choice = done.choices[0]  # auto: an answer, or calls that validate
    if choice.message.tool_calls:
        assert choice.finish_reason in ("tool_calls", "length")
        for call in choice.message.tool_calls if choice.finish_reason == "tool_calls" else ():
            validates(call)
    else:
        assert choice.message.content.strip() and "<tool_call>" not in choice.message.content


def test_a_named_tool_streams_in_openai_deltas(oai: openai.OpenAI) -> None:
    check.check_a_named_tool_streams_in_openai_deltas(oai, MODEL)


def test_a_repeated_call_ends_the_answer(oai: openai.OpenAI) -> None:
    check.check_a_repeated_call_ends_the_answer(oai, MODEL, seed=0)


def test_parallel_calls_stream_as_the_unary_answer_with_the_same_seed(oai: openai.OpenAI) -> None:
    kw: dict[str, Any] = dict(
        model=MODEL, messages=check.ask("Weather in Oslo and in Rome, and the time in UTC?"),
        tools=[WEATHER, CLOCK], tool_choice="required", temperature=0.8, seed=21, max_tokens=90,
    )  # fmt: skip
    unary = oai.chat.completions.create(**kw).choices[0]
    calls: dict[int, dict[str, str]] = {}
    finish, content, first_pieces = None, "", 0
    for chunk in oai.chat.completions.create(**kw, stream=True):
        for c in chunk.choices:
            finish = c.finish_reason or finish
            content += c.delta.content or ""
            for d in c.delta.tool_calls or ():
                entry = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                if d.id:  # a call's first delta: its id, type and name
                    assert d.type == "function" and d.function.name and not entry["id"]
                    entry["id"], entry["name"] = d.id, d.function.name
                    first_pieces += 1
                else:
                    assert entry["id"] and not (d.function.name or "")
                entry["arguments"] += d.function.arguments or ""
    assert finish == unary.finish_reason and content == (unary.message.content or "")
    assert first_pieces == len(calls) == len(unary.message.tool_calls or [])
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        (c.function.name, c.function.arguments) for c in unary.message.tool_calls or []
    ]
    if finish == "tool_calls":
        for call in unary.message.tool_calls:
            validates(call)


@pytest.mark.parametrize(
    ("extra", "field"), [(e, f) for e, f in check.BAD if "tools" in e or "tool_choice" in e]
)
def test_bad_tools_are_a_400_naming_the_field(
    oai: openai.OpenAI, extra: dict[str, Any], field: str
) -> None:
    check.check_bad_input_is_a_400_naming_the_field(oai, MODEL, extra, field)
