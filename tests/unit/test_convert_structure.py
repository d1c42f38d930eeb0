"""Structured output, tools, logprobs, penalties and logit bias through aigc.v1 without Ray:
proto -> domain for every new field (bad input is InvalidArgument naming the field in aigc.v1's
own terms), and domain results and chunks -> proto."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from aigc.v1 import text_pb2
from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import (
    ChatMessage,
    Completion,
    FinishReason,
    OutputFormat,
    TextChunk,
    TextResult,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from gateway import convert

MODEL = ModelConfig(name="t", modality="text", engine="echo")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = text_pb2.Tool(
    name="get_weather", description="The weather in a city", parameters_json=json.dumps(SCHEMA)
)
USER = text_pb2.ChatMessage(role="user", content="Weather in Paris?")


def convert_text(**fields: Any) -> Any:
    return convert.text_request(text_pb2.GenerateTextRequest(**fields), MODEL, "rid", None)


def chat(*messages: text_pb2.ChatMessage, **fields: Any) -> Any:
    return convert_text(chat=text_pb2.Chat(messages=messages or [USER]), **fields)


def invalid(fn: Callable[[], Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        fn()
    return err.value


# ---- proto -> domain ---------------------------------------------------------------------
def test_unset_fields_are_the_domain_defaults():
    out = chat()
    assert out.output_format is OutputFormat.TEXT and out.json_schema is None
    assert out.tools == () and out.tool_choice is ToolChoice.AUTO and out.tool_name is None
    assert out.parallel_tool_calls is True
    assert out.logprobs is None
    assert (out.presence_penalty, out.frequency_penalty, out.repetition_penalty) == (0, 0, 1)
    assert out.logit_bias == () and not out.shapes_logits
    assert out.messages == (ChatMessage("user", "Weather in Paris?"),)


def test_every_new_field_converts():
    out = chat(
        tools=[WEATHER, text_pb2.Tool(name="now")],
        tool_choice=text_pb2.ToolChoice(function="get_weather"),
        parallel_tool_calls=False,
        logprobs=5,
        presence_penalty=0.5,
        frequency_penalty=-1.5,
        repetition_penalty=1.25,
        logit_bias={50256: -100.0, 13: 2.5},
    )
    assert out.tools == (
        Tool("get_weather", "The weather in a city", json.dumps(SCHEMA)),
        Tool("now", "", '{"type": "object"}'),  # no parameters: any object
    )
    assert (out.tool_choice, out.tool_name, out.parallel_tool_calls) == (
        ToolChoice.FUNCTION,
        "get_weather",
        False,
    )
    assert out.logprobs == 5
    assert (out.presence_penalty, out.frequency_penalty, out.repetition_penalty) == (
        0.5,
        -1.5,
        1.25,
    )
    assert out.logit_bias == ((13, 2.5), (50256, -100.0))  # in token order, whatever the map's
    assert out.shapes_logits


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (text_pb2.ResponseFormat(), (OutputFormat.TEXT, None)),
        (text_pb2.ResponseFormat(text=text_pb2.TextFormat()), (OutputFormat.TEXT, None)),
        (
            text_pb2.ResponseFormat(json_object=text_pb2.JsonObjectFormat()),
            (OutputFormat.JSON_OBJECT, None),
        ),
        (
            text_pb2.ResponseFormat(
                json_schema=text_pb2.JsonSchemaFormat(
                    name="city", schema_json=json.dumps(SCHEMA), strict=True
                )
            ),
            (OutputFormat.JSON_SCHEMA, json.dumps(SCHEMA)),
        ),
    ],
)
def test_response_formats(fmt, expected):
    out = convert_text(prompt="A city:", response_format=fmt)
    assert (out.output_format, out.json_schema) == expected


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (text_pb2.TOOL_CHOICE_MODE_UNSPECIFIED, ToolChoice.AUTO),
        (text_pb2.TOOL_CHOICE_MODE_NONE, ToolChoice.NONE),
        (text_pb2.TOOL_CHOICE_MODE_AUTO, ToolChoice.AUTO),
        (text_pb2.TOOL_CHOICE_MODE_REQUIRED, ToolChoice.REQUIRED),
    ],
)
def test_tool_choice_modes(mode, expected):
    out = chat(tools=[WEATHER], tool_choice=text_pb2.ToolChoice(mode=mode))
    assert (out.tool_choice, out.tool_name) == (expected, None)


def test_a_conversation_with_a_tool_call_and_its_result():
    call = text_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    out = chat(
        USER,
        text_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        text_pb2.ChatMessage(role="tool", content="18 C", tool_call_id="call_1", name="w"),
        tools=[WEATHER],
    )
    assert out.messages == (
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", "18 C", tool_call_id="call_1", name="w"),
    )


def test_a_tool_call_without_arguments_has_an_empty_object():
    call = text_pb2.ToolCall(id="c", name="now")
    out = chat(USER, text_pb2.ChatMessage(role="assistant", tool_calls=[call]))
    assert out.messages[1].tool_calls == (ToolCall("c", "now", "{}"),)


@pytest.mark.parametrize(
    "fields",
    [
        {"logprobs": 0},  # the sampled token's logprob, no alternatives
        {"logprobs": 20},
        {"presence_penalty": -2.0, "frequency_penalty": 2.0},
        {"repetition_penalty": 2.0},
        {"repetition_penalty": 1e-3},
        {"logit_bias": {0: -100.0, 7: 100.0}},
        # tools not offered: a response format may be asked for
        {
            "tools": [WEATHER],
            "tool_choice": text_pb2.ToolChoice(mode=text_pb2.TOOL_CHOICE_MODE_NONE),
            "response_format": text_pb2.ResponseFormat(json_object=text_pb2.JsonObjectFormat()),
        },
    ],
)
def test_bounds_are_inclusive(fields):
    assert chat(**fields).model == "t"


# ---- proto -> domain: bad input names the field ------------------------------------------
def schema_format(schema_json: str) -> text_pb2.ResponseFormat:
    return text_pb2.ResponseFormat(json_schema=text_pb2.JsonSchemaFormat(schema_json=schema_json))


def function(name: str) -> text_pb2.ToolChoice:
    return text_pb2.ToolChoice(function=name)


def tool(name: str = "f", parameters_json: str = "") -> text_pb2.Tool:
    return text_pb2.Tool(name=name, parameters_json=parameters_json)


def called(role: str = "assistant", **call: str) -> Any:
    """A chat whose second message (of `role`) carries one tool call."""
    msg = text_pb2.ChatMessage(role=role, content="x", tool_calls=[text_pb2.ToolCall(**call)])
    return chat(USER, msg)


REQUIRED = text_pb2.ToolChoice(mode=text_pb2.TOOL_CHOICE_MODE_REQUIRED)
JSON_OBJECT = text_pb2.ResponseFormat(json_object=text_pb2.JsonObjectFormat())
SCHEMA_JSON = "response_format.json_schema.schema_json"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: chat(response_format=schema_format("")), SCHEMA_JSON),
        (lambda: chat(response_format=schema_format("{")), SCHEMA_JSON),
        (lambda: chat(response_format=schema_format("[]")), SCHEMA_JSON),
        (lambda: chat(tools=[tool("get weather")]), "tools[0].name"),
        (lambda: chat(tools=[tool("")]), "tools[0].name"),
        (lambda: chat(tools=[WEATHER, tool("x" * 65)]), "tools[1].name"),
        (lambda: chat(tools=[WEATHER, WEATHER]), "tools[1].name"),  # given twice
        (lambda: chat(tools=[tool(parameters_json="{")]), "tools[0].parameters_json"),
        (lambda: chat(tools=[tool(parameters_json='"x"')]), "tools[0].parameters_json"),
        (lambda: chat(tools=[tool(f"f{i}") for i in range(129)]), "tools"),
        (lambda: chat(tools=[WEATHER], tool_choice=function("get_time")), "tool_choice.function"),
        (lambda: chat(tools=[WEATHER], tool_choice=function("")), "tool_choice.function"),
        (lambda: chat(tool_choice=function("get_weather")), "tool_choice.function"),  # no tools
        (lambda: chat(tool_choice=REQUIRED), "tool_choice.mode"),  # required, no tools
        (
            lambda: chat(tools=[WEATHER], tool_choice=text_pb2.ToolChoice(mode=9)),
            "tool_choice.mode",
        ),  # an enum value aigc.v1 does not have
        (lambda: chat(tools=[WEATHER], response_format=JSON_OBJECT), "response_format"),
        (lambda: convert_text(prompt="hi", tools=[WEATHER]), "tools"),  # tools need a chat
        (lambda: chat(logprobs=-1), "logprobs"),
        (lambda: chat(logprobs=21), "logprobs"),
        (lambda: chat(presence_penalty=2.01), "presence_penalty"),
        (lambda: chat(presence_penalty=math.nan), "presence_penalty"),
        (lambda: chat(frequency_penalty=-2.01), "frequency_penalty"),
        (lambda: chat(repetition_penalty=0.0), "repetition_penalty"),  # (0, 2]
        (lambda: chat(repetition_penalty=2.01), "repetition_penalty"),
        (lambda: chat(logit_bias={-1: 1.0}), "logit_bias"),
        (lambda: chat(logit_bias={5: 100.5}), "logit_bias[5]"),
        (lambda: chat(logit_bias={5: math.inf}), "logit_bias[5]"),
        (lambda: chat(logit_bias={i: 1.0 for i in range(301)}), "logit_bias"),
        # only an assistant message calls tools
        (lambda: called("user", name="f"), "chat.messages[1].tool_calls"),
        (lambda: called(name=""), "chat.messages[1].tool_calls[0].name"),
        (lambda: called(name="f", arguments="{"), "chat.messages[1].tool_calls[0].arguments"),
        (lambda: called(name="f", arguments="[1]"), "chat.messages[1].tool_calls[0].arguments"),
    ],
)
def test_bad_input_names_the_field_in_aigc_terms(build, field):
    err = invalid(build)
    assert err.field == field
    assert "function." not in err.message and ".schema " not in err.message  # OpenAI's names


@pytest.mark.parametrize(
    ("build", "start"),
    [
        (lambda: chat(tools=[tool("a b")]), "tools[0].name must be 1 to 64"),
        (lambda: chat(response_format=schema_format("")), f"{SCHEMA_JSON} is required"),
        (lambda: chat(tools=[tool(parameters_json="[]")]), "tools[0].parameters_json must be"),
        (lambda: chat(tools=[WEATHER], tool_choice=function("no")), "tool_choice names function"),
    ],
)
def test_the_message_says_what_to_fix_in_the_same_terms(build, start):
    assert invalid(build).message.startswith(start)


# ---- domain -> proto ---------------------------------------------------------------------
PARIS = TokenLogprob(
    " Paris",
    -0.25,
    tuple(b" Paris"),
    top=(TokenLogprob(" Paris", -0.25, tuple(b" Paris")), TokenLogprob(" Lyon", -2.0, (32, 76))),
)
HALF_CHAR = TokenLogprob("\ufffd", -1.0, (0xE2, 0x82))  # part of a UTF-8 character


def as_tuple(t: text_pb2.TokenLogprob) -> tuple[Any, ...]:
    return (t.token, t.logprob, t.bytes, [as_tuple(a) for a in t.top])


def test_text_response_carries_logprobs_tool_calls_and_the_tool_calls_reason():
    calls = [
        ToolCall("call_0", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_1", "now", "{}"),
    ]
    result = TextResult(
        "r",
        "t",
        [
            Completion(0, " Paris", FinishReason.STOP, 2, logprobs=[PARIS, HALF_CHAR]),
            Completion(1, "", FinishReason.TOOL_CALLS, 9, tool_calls=calls),
        ],
        prompt_tokens=4,
    )
    first, second = convert.text_response(result).completions
    assert [as_tuple(t) for t in first.logprobs] == [
        (
            " Paris",
            -0.25,
            b" Paris",
            [(" Paris", -0.25, b" Paris", []), (" Lyon", -2.0, b" L", [])],
        ),
        ("\ufffd", -1.0, b"\xe2\x82", []),
    ]
    assert not first.tool_calls
    assert second.finish_reason == text_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments) for c in second.tool_calls] == [
        ("call_0", "get_weather", '{"city": "Paris"}'),
        ("call_1", "now", "{}"),
    ]
    assert not second.logprobs  # not asked for


def test_text_chunk_carries_logprobs_and_tool_call_pieces():
    chunk = TextChunk(0, " Paris", 1, logprobs=[PARIS])
    pb = convert.text_chunk(chunk, "r", "t")
    assert [as_tuple(t) for t in pb.logprobs] == [as_tuple(convert.token_logprob(PARIS))]
    assert pb.logprobs[0].top[1].token == " Lyon"
    pieces = [ToolCallDelta(0, "call_0", "get_weather"), ToolCallDelta(0, arguments='{"ci')]
    done = TextChunk(0, "", 2, FinishReason.TOOL_CALLS, 4, tool_calls=pieces)
    pb = convert.text_chunk(done, "r", "t")
    assert pb.finish_reason == text_pb2.FINISH_REASON_TOOL_CALLS
    assert [(d.index, d.id, d.name, d.arguments) for d in pb.tool_calls] == [
        (0, "call_0", "get_weather", ""),
        (0, "", "", '{"ci'),  # later pieces: the arguments only
    ]
    assert not pb.logprobs


def test_every_finish_reason_has_an_aigc_value():
    values = {convert.finish_reason(r) for r in FinishReason}
    assert len(values) == len(FinishReason)
    assert text_pb2.FINISH_REASON_UNSPECIFIED not in values
