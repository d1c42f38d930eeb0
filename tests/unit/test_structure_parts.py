"""The engine-neutral parts of structured output and tools, without a model: the generic tool
format's stream parser, the schema a request is constrained to, a sequence's logit processing
(penalties, bias, grammar mask, logprobs) against OpenAI's and vLLM's formulas, and the tool
prompt. Through the engines and the real `openai` client: tests/structured_checks.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidArgument
from core.types import ChatMessage, OutputFormat, TextRequest, Tool, ToolCall, ToolChoice
from services.text.constraints import Shaper, check_schema, output_schema
from services.text.tools import ToolStream, tool_messages
from tests.tool_streams import json_values, streamed

WEATHER = Tool("get_weather", "Weather", json.dumps({"type": "object"}))


def feed_all(text: str, step: int) -> tuple[str, dict[int, dict[str, str]]]:
    return streamed(ToolStream(), text, step)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(), json_values, max_size=3), min_size=1, max_size=3),
    st.integers(1, 9),
    st.sampled_from([", ", ","]),
)
def test_tool_calls_stream_in_pieces_that_join_to_the_arguments(
    args: list[dict[str, Any]], step: int, sep: str
) -> None:
    calls = [{"name": f"f{i}", "arguments": a} for i, a in enumerate(args)]
    text = json.dumps({"tool_calls": calls}, separators=(sep, ": "))
    content, got = feed_all(text, step)
    assert content == ""
    assert [(c["name"], json.loads(c["arguments"])) for c in got.values()] == [
        (c["name"], c["arguments"]) for c in calls
    ]


@settings(max_examples=150, deadline=None)
@given(st.text(), st.integers(1, 7))
def test_the_response_string_streams_as_its_unescaped_text(answer: str, step: int) -> None:
    content, calls = feed_all(json.dumps({"response": answer}), step)
    assert content == answer and calls == {}


def test_text_that_is_not_the_format_passes_through() -> None:
    assert feed_all("Hello, world", 3) == ("Hello, world", {})


def request(**kw: Any) -> TextRequest:
    return TextRequest("r", "m", messages=(ChatMessage("user", "hi"),), **kw)


def test_the_schema_of_each_tool_choice() -> None:
    clock = Tool("get_time", "", json.dumps({"type": "object", "required": ["zone"]}))
    auto = output_schema(request(tools=(WEATHER, clock)))
    assert auto is not None and [set(b["properties"]) for b in auto["anyOf"]] == [
        {"tool_calls"},
        {"response"},
    ]
    named = output_schema(
        request(tools=(WEATHER, clock), tool_choice=ToolChoice.FUNCTION, tool_name="get_time")
    )
    assert named is not None
    calls = named["properties"]["tool_calls"]
    assert calls["maxItems"] == 1 and calls["minItems"] == 1
    assert calls["items"]["properties"]["name"] == {"const": "get_time"}
    assert calls["items"]["properties"]["arguments"]["required"] == ["zone"]
    required = output_schema(
        request(tools=(WEATHER,), tool_choice=ToolChoice.REQUIRED, parallel_tool_calls=False)
    )
    assert required is not None and required["properties"]["tool_calls"]["maxItems"] == 1
    assert output_schema(request(tools=(WEATHER,), tool_choice=ToolChoice.NONE)) is None
    assert output_schema(request(output_format=OutputFormat.JSON_OBJECT)) == {"type": "object"}


def test_a_schema_that_cannot_compile_names_its_field() -> None:
    bad = json.dumps({"type": "object", "properties": {"a": {"$ref": "#/nope"}}})
    with pytest.raises(InvalidArgument) as err:
        check_schema(request(output_format=OutputFormat.JSON_SCHEMA, json_schema=bad))
    assert err.value.field == "response_format" and "/nope" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        check_schema(request(tools=(Tool("f", "", bad),)))
    assert err.value.field == "tools[0].function.parameters"


def test_tool_history_renders_in_the_generic_format() -> None:
    messages = (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", "Sunny", tool_call_id="call_1"),
    )
    out = tool_messages(TextRequest("r", "m", messages=messages, tools=(WEATHER,)))
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.")
    assert '"name": "get_weather"' in out[0]["content"]
    assert json.loads(out[2]["content"]) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    }
    assert out[3] == {
        "role": "user",
        "content": json.dumps({"tool_response": {"name": "get_weather", "content": "Sunny"}}),
    }
    plain = tool_messages(TextRequest("r", "m", messages=messages, tool_choice=ToolChoice.NONE))
    assert plain[0] == {"role": "system", "content": "Be brief."}


def shaper(**kw: Any) -> Shaper:
    return Shaper(request(**kw), [0, 1], None, lambda t: f"<{t}>".encode())


def test_penalties_follow_openai_and_vllm() -> None:
    logits = torch.tensor([1.0, -1.0, 2.0, 0.5])
    s = shaper(presence_penalty=0.5, frequency_penalty=0.25)
    for token in (2, 2, 3):
        s.chose(token)
    s.shape(logits)  # token 2 twice, token 3 once: minus count * 0.25 + 0.5
    assert logits.tolist() == [1.0, -1.0, 2.0 - 1.0, 0.5 - 0.75]
    rep = torch.tensor([1.0, -1.0, 2.0, 0.5])
    r = shaper(repetition_penalty=2.0)  # prompt [0, 1]: divided if > 0, multiplied if not
    r.chose(3)
    r.shape(rep)
    assert rep.tolist() == [0.5, -2.0, 2.0, 0.25]


def test_bias_adds_and_minus_100_bans() -> None:
    logits = torch.tensor([5.0, 1.0, 0.0])
    shaper(logit_bias=((0, -100.0), (2, 3.0))).shape(logits)
    assert logits[0] == float("-inf") and logits[2] == 3.0


def test_logprobs_are_the_raw_distribution_with_the_top_k() -> None:
    logits = torch.tensor([3.0, 1.0, 2.0, 0.0])
    raw = torch.log_softmax(logits.clone(), -1)
    s = shaper(logprobs=2, logit_bias=((0, -100.0),))
    s.shape(logits)
    s.chose(2)
    (entry,) = s.take_logprobs()
    assert entry.token == "<2>" and entry.bytes == tuple(b"<2>")
    assert entry.logprob == pytest.approx(float(raw[2]))
    assert [(t.token, round(t.logprob, 5)) for t in entry.top] == [
        ("<0>", round(float(raw[0]), 5)),  # banned, but listed: the raw distribution
        ("<2>", round(float(raw[2]), 5)),
    ]
