"""Structured output, tool calls and logprobs end to end: the SDK and the CLI through the real
gRPC gateway and Serve to SmolLM2 on llama.cpp (`gguf`, the default model's engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from aigc import cli
from aigc.client import collect
from aigc.v1 import text_pb2

pytestmark = pytest.mark.integration

# Three fields, each bounded, so any text the grammar allows ends well within max_tokens.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "minLength": 1, "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
ASK_PERSON = [("user", "Invent a person. Give their name, age and city as JSON.")]
WEATHER_ARGS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 32},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": WEATHER_ARGS,
    },
}
ASK_WEATHER = [("user", "What is the weather like in Paris today?")]


@pytest.fixture()
def gguf_model(stack: Any) -> str:
    from tests.assets import require_asset
    from tests.tiny_models import SMOLLM2_GGUF

    require_asset(SMOLLM2_GGUF)  # `make integration` fetches it first: fail, never skip
    return "gguf"


def test_json_schema_output_parses_and_validates(client, gguf_model):
    resp = client.generate_text(
        messages=ASK_PERSON, model=gguf_model, json_schema=PERSON, max_tokens=128, temperature=0
    )
    (c,) = resp.completions
    assert c.finish_reason == text_pb2.FINISH_REASON_STOP, c.text  # the object closed
    jsonschema.validate(json.loads(c.text), PERSON)
    streamed = collect(
        client.stream_text(
            messages=ASK_PERSON,
            model=gguf_model,
            json_schema=json.dumps(PERSON),
            max_tokens=128,
            temperature=0,
        )
    )
    jsonschema.validate(json.loads(streamed.completions[0].text), PERSON)


def test_json_object_output_is_an_object(client, gguf_model):
    resp = client.generate_text(
        messages=ASK_PERSON, model=gguf_model, json_object=True, max_tokens=200, temperature=0
    )
    (c,) = resp.completions
    if c.finish_reason == text_pb2.FINISH_REASON_STOP:  # an unbounded object may run long
        assert isinstance(json.loads(c.text), dict)
    else:
        assert c.text.lstrip().startswith("{")


def test_required_tool_choice_makes_a_tool_call_whose_arguments_parse(client, gguf_model):
    kw = {
        "messages": ASK_WEATHER,
        "model": gguf_model,
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 128,
        "temperature": 0,
    }
    (c,) = client.generate_text(**kw).completions
    assert c.finish_reason == text_pb2.FINISH_REASON_TOOL_CALLS, c
    assert c.tool_calls
    for call in c.tool_calls:
        assert call.id and call.name == "get_weather"
        jsonschema.validate(json.loads(call.arguments), WEATHER_ARGS)
    # streamed: the pieces join into the same calls (greedy)
    (s,) = collect(client.stream_text(**kw)).completions
    assert s.finish_reason == text_pb2.FINISH_REASON_TOOL_CALLS
    assert [(t.name, json.loads(t.arguments)) for t in s.tool_calls] == [
        (t.name, json.loads(t.arguments)) for t in c.tool_calls
    ]
    # and the call answered in the history: the model goes on in text
    answered = client.generate_text(
        messages=[
            *ASK_WEATHER,
            {"role": "assistant", "tool_calls": [c.tool_calls[0]]},
            {"role": "tool", "tool_call_id": c.tool_calls[0].id, "content": '{"temp_c": 18}'},
        ],
        model=gguf_model,
        tools=[WEATHER],
        max_tokens=32,
        temperature=0,
    )
    assert answered.completions[0].completion_tokens > 0


def test_greedy_logprobs_top_alternative_is_the_token(client, gguf_model):
    resp = client.generate_text(
        "Write a short story about a cat.",
        model=gguf_model,
        logprobs=3,
        temperature=0,
        max_tokens=8,
    )
    (c,) = resp.completions
    assert c.finish_reason == text_pb2.FINISH_REASON_LENGTH
    assert len(c.logprobs) == c.completion_tokens == 8
    assert b"".join(t.bytes for t in c.logprobs) == c.text.encode()
    for t in c.logprobs:
        assert len(t.top) == 3
        assert t.logprob <= 0
        # greedy: the sampled token is the most likely one of the raw distribution
        assert t.logprob == t.top[0].logprob and t.token == t.top[0].token, t
        assert [a.logprob for a in t.top] == sorted((a.logprob for a in t.top), reverse=True)
    streamed = collect(
        client.stream_text(
            "Write a short story about a cat.",
            model=gguf_model,
            logprobs=3,
            temperature=0,
            max_tokens=8,
        )
    )
    assert [t.token for t in streamed.completions[0].logprobs] == [t.token for t in c.logprobs]


def test_cli_json_schema_tools_and_logprobs(target, gguf_model, tmp_path: Path, capsys):
    t = ["--target", target, "--model", gguf_model, "--temperature", "0"]
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON))
    prompt = ASK_PERSON[0][1]
    assert cli.main(["text", prompt, "--chat", "--json-schema", str(schema), *t]) == 0
    jsonschema.validate(json.loads(capsys.readouterr().out), PERSON)

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER]))
    ask = ASK_WEATHER[0][1]
    assert cli.main(["text", ask, "--tools", str(tools), "--tool-choice", "required", *t]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("get_weather({") for line in lines), lines
    for line in lines:
        args = line.removeprefix("get_weather(").removesuffix(")")
        jsonschema.validate(json.loads(args), WEATHER_ARGS)

    argv = ["text", "The capital of France is", "--logprobs", "2", "--max-tokens", "4", *t]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("-- logprobs"))
    assert len(out[header + 1 :]) == 4  # one line per token, its two alternatives after "|"
    assert all(line.count('"') >= 6 and "|" in line for line in out[header + 1 :])
