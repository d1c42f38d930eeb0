"""The SDK's and the CLI's structured output, tools, logprobs, penalties and bias: keyword
arguments and `aigc text` flags -> the aigc.v1 request -> the gateway's TextRequest, and a
stream's pieces joined into what the unary call returns. No server, no Ray."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from aigc import cli, client
from aigc.v1 import text_pb2
from core.config import ModelConfig
from core.types import (
    ChatMessage,
    Completion,
    FinishReason,
    OutputFormat,
    TextChunk,
    TextRequest,
    TextResult,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from gateway import convert

MODEL = ModelConfig(name="t", modality="text", engine="echo")
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
WEATHER_FN = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEATHER = {"type": "function", "function": WEATHER_FN}  # OpenAI's tool object
USER = [("user", "Weather in Paris?")]


def served(prompt: str | None = None, **kw: Any) -> TextRequest:
    """What the gateway makes of the SDK's request."""
    return convert.text_request(client.text_request(prompt, **kw), MODEL, "rid", None)


# ---- SDK keywords ------------------------------------------------------------------------
@pytest.mark.parametrize("schema", [SCHEMA, json.dumps(SCHEMA)])
def test_json_schema_as_a_dict_or_json_text(schema):
    out = served("A person:", json_schema=schema)
    assert out.output_format is OutputFormat.JSON_SCHEMA
    assert json.loads(out.json_schema or "") == SCHEMA


def test_json_object_and_the_default_text():
    assert served("A person:", json_object=True).output_format is OutputFormat.JSON_OBJECT
    req = client.text_request("A person:")
    assert not req.HasField("response_format")  # an older server sees the request it knew
    assert served("A person:").output_format is OutputFormat.TEXT


def test_json_schema_and_json_object_together_is_refused():
    with pytest.raises(ValueError, match="not both"):
        client.text_request("x", json_schema=SCHEMA, json_object=True)


@pytest.mark.parametrize(
    "spec",
    [
        WEATHER,
        WEATHER_FN,  # the inner function object
        ("get_weather", "The weather in a city", WEATHER_FN["parameters"]),
        ("get_weather", "The weather in a city", json.dumps(WEATHER_FN["parameters"])),
        text_pb2.Tool(
            name="get_weather",
            description="The weather in a city",
            parameters_json=json.dumps(WEATHER_FN["parameters"]),
        ),
    ],
)
def test_every_tool_shape_is_the_same_tool(spec):
    (tool,) = served(messages=USER, tools=[spec]).tools
    assert (tool.name, tool.description) == ("get_weather", "The weather in a city")
    assert json.loads(tool.parameters) == WEATHER_FN["parameters"]


def test_a_tool_without_parameters_takes_any_object():
    assert served(messages=USER, tools=[("now",)]).tools == (Tool("now", "", '{"type": "object"}'),)
    assert served(messages=USER, tools=[{"name": "now"}]).tools[0].parameters == Tool.parameters


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "retrieval"},
        {"type": "function", "function": {"description": "no name"}},
        ("a", "b", "{}", "extra"),
        (),
    ],
)
def test_a_tool_the_sdk_cannot_read_is_a_value_error(spec):
    with pytest.raises(ValueError):
        client.text_request(messages=USER, tools=[spec])


OPENAI_CHOICE = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, (ToolChoice.AUTO, None)),
        ("none", (ToolChoice.NONE, None)),
        ("auto", (ToolChoice.AUTO, None)),
        ("required", (ToolChoice.REQUIRED, None)),
        ("get_weather", (ToolChoice.FUNCTION, "get_weather")),
        (OPENAI_CHOICE, (ToolChoice.FUNCTION, "get_weather")),
    ],
)
def test_tool_choice_forms(choice, expected):
    out = served(messages=USER, tools=[WEATHER], tool_choice=choice)
    assert (out.tool_choice, out.tool_name) == expected


def test_sampling_shapes_reach_the_request():
    out = served(
        "hi",
        logprobs=3,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        repetition_penalty=1.5,
        logit_bias={"198": -100, 5: 2.5},  # OpenAI's JSON has string keys
        parallel_tool_calls=False,
    )
    assert out.logprobs == 3
    assert (out.presence_penalty, out.frequency_penalty, out.repetition_penalty) == (
        0.5,
        -0.25,
        1.5,
    )
    assert out.logit_bias == ((5, 2.5), (198, -100.0))
    assert out.parallel_tool_calls is False


def test_logprobs_zero_is_not_off():
    assert served("hi", logprobs=0).logprobs == 0
    assert served("hi").logprobs is None


def test_a_tool_call_answered_in_the_history():
    """A completion's ToolCall goes back as it came, or as OpenAI's message dicts."""
    made = text_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    expected = (
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", "18 C", tool_call_id="call_1", name="get_weather"),
    )
    as_protos = [
        *USER,
        text_pb2.ChatMessage(role="assistant", tool_calls=[made]),
        {"role": "tool", "content": "18 C", "tool_call_id": "call_1", "name": "get_weather"},
    ]
    openai_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    as_openai = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [openai_call]},
        as_protos[2],
    ]
    flat = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    as_flat = [*as_openai[:1], {"role": "assistant", "tool_calls": [flat]}, as_protos[2]]
    assert served(messages=as_protos, tools=[WEATHER]).messages == expected
    assert served(messages=as_openai, tools=[WEATHER]).messages == expected
    (call,) = served(messages=as_flat, tools=[WEATHER]).messages[1].tool_calls
    assert json.loads(call.arguments) == {"city": "Paris"}


# ---- results -----------------------------------------------------------------------------
def logprob(token: str, lp: float, *top: TokenLogprob) -> TokenLogprob:
    return TokenLogprob(token, lp, tuple(token.encode()), top)


A, B = logprob("Hi", -0.1), logprob("Hello", -2.5)
CALLS = [
    ToolCall("call_0", "get_weather", '{"city": "Paris"}'),
    ToolCall("call_1", "get_weather", '{"city": "Rome"}'),
]
RESULT = TextResult(
    "r",
    "t",
    [
        Completion(0, "Hi!", FinishReason.STOP, 2, [logprob("Hi", -0.1, A, B), logprob("!", -0.5)]),
        Completion(1, "", FinishReason.TOOL_CALLS, 12, tool_calls=CALLS),
    ],
    prompt_tokens=7,
)
CHUNKS = [
    TextChunk(0, "Hi", 1, logprobs=[logprob("Hi", -0.1, A, B)]),
    TextChunk(1, "", 4, tool_calls=[ToolCallDelta(0, "call_0", "get_weather", '{"ci')]),
    TextChunk(1, "", 3, tool_calls=[ToolCallDelta(0, arguments='ty": "Paris"}')]),
    TextChunk(0, "!", 1, FinishReason.STOP, 7, logprobs=[logprob("!", -0.5)]),
    TextChunk(
        1,
        "",
        5,
        FinishReason.TOOL_CALLS,
        7,
        tool_calls=[ToolCallDelta(1, "call_1", "get_weather", '{"city": "Rome"}')],
    ),
]


def test_a_stream_collected_is_the_unary_response():
    collector = client.StreamCollector()
    for i, chunk in enumerate(CHUNKS):
        message = convert.text_chunk(chunk, "r", "t")
        if i == len(CHUNKS) - 1:
            message.usage.CopyFrom(convert.usage(7, 14))  # as the servicer does
        collector.add(message)
    got = collector.result()
    unary = convert.text_response(RESULT)
    for c in unary.completions:
        c.completion_tokens = 0  # a stream has only the total (usage)
    assert got == unary


def test_collect_a_whole_stream():
    messages = [convert.text_chunk(c, "r", "t") for c in CHUNKS]
    got = client.collect(messages)
    assert [c.text for c in got.completions] == ["Hi!", ""]
    assert [json.loads(c.arguments)["city"] for c in got.completions[1].tool_calls] == [
        "Paris",
        "Rome",
    ]
    assert got.completions[0].logprobs[0].top[1].token == "Hello"


# ---- CLI ---------------------------------------------------------------------------------
def cli_request(*argv: str) -> text_pb2.GenerateTextRequest:
    """`aigc text ARGV` parsed into the SDK call it makes, as the request it sends."""
    args = cli.build_parser().parse_args(["text", *argv])
    prompt, kw = cli.text_call(args)
    return client.text_request(prompt, **kw)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    out = {
        "schema": tmp_path / "person.json",
        "tools": tmp_path / "tools.json",
        "bad": tmp_path / "bad.json",
    }
    out["schema"].write_text(json.dumps(SCHEMA))
    out["tools"].write_text(json.dumps([WEATHER]))
    out["bad"].write_text("{")
    return {k: str(v) for k, v in out.items()}


def test_cli_plain_text_request_is_unchanged():
    req = cli_request("hello", "--max-tokens", "8")
    assert req == client.text_request("hello", max_tokens=8)


def test_cli_json_schema_and_json_object(files):
    req = cli_request("A person:", "--json-schema", files["schema"])
    assert json.loads(req.response_format.json_schema.schema_json) == SCHEMA
    req = cli_request("A person:", "--json-object")
    assert req.response_format.WhichOneof("format") == "json_object"


def test_cli_tools_are_offered_in_a_chat(files):
    req = cli_request("Weather in Paris?", "--tools", files["tools"], "--tool-choice", "required")
    assert req.WhichOneof("input") == "chat"
    assert [(m.role, m.content) for m in req.chat.messages] == [("user", "Weather in Paris?")]
    assert [t.name for t in req.tools] == ["get_weather"]
    assert req.tool_choice.mode == text_pb2.TOOL_CHOICE_MODE_REQUIRED
    named = cli_request("x", "--tools", files["tools"], "--tool-choice", "get_weather")
    assert named.tool_choice.function == "get_weather"
    out = convert.text_request(req, MODEL, "rid", None)
    assert out.tools[0].name == "get_weather" and out.tool_choice is ToolChoice.REQUIRED


def test_cli_logprobs_penalties_and_bias():
    req = cli_request(
        "hi",
        "--logprobs", "3",
        "--presence-penalty", "0.5",
        "--frequency-penalty", "-1",
        "--repetition-penalty", "1.25",
        "--logit-bias", "198=-100",
        "--logit-bias", "5=2.5",
    )  # fmt: skip
    assert req.logprobs == 3
    assert (req.presence_penalty, req.frequency_penalty, req.repetition_penalty) == (0.5, -1, 1.25)
    assert dict(req.logit_bias) == {198: -100.0, 5: 2.5}
    assert req.HasField("logprobs") and not cli_request("hi").HasField("logprobs")


@pytest.mark.parametrize(
    "argv",
    [
        ["--logit-bias", "198"],
        ["--logit-bias", "x=1"],
        ["--logit-bias", "5=much"],
        ["--json-object", "--json-schema", "{schema}"],  # one format or the other
        ["--json-schema", "{bad}"],
        ["--json-schema", "{tools}"],  # a list, not a schema
        ["--json-schema", "/nonexistent/schema.json"],
        ["--tools", "{schema}"],  # an object, not a list
        ["--logprobs", "many"],
    ],
)
def test_cli_bad_flags_are_usage_errors(argv, files, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["text", "hi", *(a.format(**files) for a in argv)])
    assert exit_.value.code == 2
    assert "aigc text: error: argument --" in capsys.readouterr().err


def test_cli_a_tools_file_with_a_nameless_tool_says_which(tmp_path, capsys):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([WEATHER, {"type": "function", "function": {}}]))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["text", "hi", "--tools", str(path)])
    assert "tool 1: a tool needs a function name" in capsys.readouterr().err


def test_cli_prints_tool_calls_and_logprobs(capsys):
    first, second = convert.text_response(RESULT).completions
    cli.print_extras(second, "", logprobs=False)
    assert capsys.readouterr().out.splitlines() == [
        'get_weather({"city": "Paris"})',
        'get_weather({"city": "Rome"})',
    ]
    cli.print_extras(first, "[0] ", logprobs=True)
    header, hi, bang = capsys.readouterr().out.splitlines()
    assert header.startswith("-- [0] logprobs")
    alternatives = ['"Hi"', "-0.100", '"Hello"', "-2.500"]
    assert hi.split() == ['"Hi"', "-0.100", f"{math.exp(-0.1):.2%}", "|", *alternatives]
    assert bang.split() == ['"!"', "-0.500", f"{math.exp(-0.5):.2%}"]


def test_cli_logprob_lines_show_spaces_and_newlines():
    tokens = [text_pb2.TokenLogprob(token=" a", logprob=-1.0), text_pb2.TokenLogprob(token="\n")]
    lines = cli.logprob_lines(tokens)
    assert lines[0].startswith('  " a"') and lines[1].startswith('  "\\n"')
    assert "100.00%" in lines[1]  # logprob 0
