"""Structured outputs, tools, logprobs, penalties and logit bias through the real `openai`
client, written once for every text engine: tests/integration/test_structured.py runs them on
llama.cpp and transformers, tests/vllm/test_vllm_structured.py on vLLM. Each takes the client
and the model's name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

# Bounded values: even a model of random weights must close this object within a few tokens.
CHOICE_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["yes", "no"]},
        "digit": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["answer", "digit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def ask(content: str) -> list[Any]:
    return [{"role": "user", "content": content}]


class Person(BaseModel):
    name: str
    age: int
    city: str


def check_parse_fills_a_pydantic_model(oai: openai.OpenAI, model: str) -> None:
    done = oai.chat.completions.parse(
        model=model,
        messages=ask("Invent a person. Reply in JSON with name, age and city."),
        response_format=Person,
        max_tokens=120,
        temperature=0.7,
        seed=3,
        n=3,
    )
    stopped = [c for c in done.choices if c.finish_reason == "stop"]
    assert stopped, [c.message.content for c in done.choices]
    for choice in stopped:  # every answer that ended by itself parses and validates
        assert isinstance(choice.message.parsed, Person)
        assert choice.message.parsed == Person.model_validate_json(choice.message.content)


def check_json_schema_streamed_and_unary_with_n_and_seed(oai: openai.OpenAI, model: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "choice", "schema": CHOICE_SCHEMA}}
    kw: dict[str, Any] = dict(
        model=model, messages=ask("Is the sky blue? Answer and give a digit."),
        response_format=fmt, max_tokens=40, temperature=1.0, seed=11, n=2,
    )  # fmt: skip
    unary = oai.chat.completions.create(**kw)
    texts = {c.index: "" for c in unary.choices}
    for chunk in oai.chat.completions.create(**kw, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    for c in unary.choices:
        assert c.finish_reason == "stop"
        jsonschema.validate(json.loads(c.message.content), CHOICE_SCHEMA)
        assert texts[c.index] == c.message.content  # the same seed, the same answer


def check_json_object_and_a_max_tokens_cut(oai: openai.OpenAI, model: str) -> None:
    whole = oai.chat.completions.create(
        model=model, messages=ask("Describe a cat as JSON."), temperature=0, max_tokens=60,
        response_format={"type": "json_object"},
    )  # fmt: skip
    choice = whole.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    cut = oai.chat.completions.create(
        model=model, messages=ask("Describe a cat as JSON."), temperature=0, max_tokens=3,
        response_format={"type": "json_object"},
    )  # fmt: skip
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content.startswith("{")  # the partial text, as it is
    assert choice.message.content.startswith(cut.choices[0].message.content)


def check_tools_round_trip_call_result_answer(oai: openai.OpenAI, model: str) -> None:
    messages: list[Any] = ask("What is the weather in Paris?")
    first = oai.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], tool_choice="required",
        temperature=0, max_tokens=60, parallel_tool_calls=False,
    )  # fmt: skip
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees C"},
    ]
    answer = oai.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], tool_choice="none",
        temperature=0, max_tokens=40,
    )  # fmt: skip
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content.strip()


def check_a_named_tool_streams_in_openai_deltas(oai: openai.OpenAI, model: str) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    unary = oai.chat.completions.create(
        model=model, messages=ask("Weather in Oslo?"), tools=[WEATHER], tool_choice=choice,
        temperature=0, max_tokens=40,
    )  # fmt: skip
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in oai.chat.completions.create(
        model=model, messages=ask("Weather in Oslo?"), tools=[WEATHER], tool_choice=choice,
        temperature=0, max_tokens=40, stream=True,
    ):  # fmt: skip
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for d in c.delta.tool_calls or ():
                entry = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                if d.id:  # the first delta of a call names it
                    assert d.function.name and not entry["id"]
                    entry["id"], entry["name"] = d.id, d.function.name
                entry["arguments"] += d.function.arguments or ""
    (made,) = unary.choices[0].message.tool_calls
    assert unary.choices[0].finish_reason == finish
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        ("get_weather", made.function.arguments)
    ]
    if finish == "tool_calls":
        jsonschema.validate(json.loads(made.function.arguments), WEATHER["function"]["parameters"])


def check_a_repeated_call_ends_the_answer(oai: openai.OpenAI, model: str, seed: int) -> None:
    """`tool_choice: required` with parallel calls allowed: at `seed` (a seed at which this
    model writes the same call again and again until max_tokens, found for it), the answer
    ends at the repeat, with tool_calls, and the engine stops there; with n = 2 (completion 1
    at seed + 1) each completion's calls are distinct, streamed as unary."""
    kw: dict[str, Any] = dict(
        model=model, messages=ask("What is the weather in Paris?"), tools=[WEATHER],
        tool_choice="required", temperature=0.7, max_tokens=120,
    )  # fmt: skip

    def distinct(calls: list[tuple[str, str]]) -> bool:
        parsed = [(name, json.dumps(json.loads(args), sort_keys=True)) for name, args in calls]
        return len(set(parsed)) == len(parsed)

    alone = oai.chat.completions.create(**kw, seed=seed)
    assert alone.choices[0].finish_reason == "tool_calls", alone.choices[0]
    assert alone.usage.completion_tokens < 80  # stopped at the repeat, not at max_tokens (120)
    # n = 2: the two completions share the engine's batches, so their numerics (and, at
    # temperature 0.7, their samples) may differ from the request alone and from run to run:
    # what must hold is that no completion ever sends a repeat, each ends by itself or at
    # max_tokens, and where a streamed completion ended as its unary twin did, it wrote the
    # same calls. (A fresh-clone run saw one completion go to max_tokens here.)
    unary = oai.chat.completions.create(**kw, seed=seed, n=2)
    ends = {c.index: c.finish_reason for c in unary.choices}
    made = {
        c.index: [(t.function.name, t.function.arguments) for t in c.message.tool_calls or ()]
        for c in unary.choices
    }
    assert set(ends.values()) <= {"tool_calls", "length"}, ends
    assert all(calls and distinct(whole(calls, ends[i])) for i, calls in made.items()), made
    streamed: dict[int, dict[int, list[str]]] = {0: {}, 1: {}}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in oai.chat.completions.create(
        **kw, seed=seed, n=2, stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for c in chunk.choices:
            finishes[c.index] = c.finish_reason or finishes.get(c.index, "")
            for d in c.delta.tool_calls or ():
                entry = streamed[c.index].setdefault(d.index, ["", ""])
                if d.id:  # a call's first delta, once per call: a repeat never starts one
                    assert not entry[0]
                    entry[0] = d.function.name
                entry[1] += d.function.arguments or ""
    assert set(finishes.values()) <= {"tool_calls", "length"}, finishes
    for i, calls in streamed.items():
        got = [(name, args) for name, args in calls.values()]
        assert got and distinct(whole(got, finishes[i])), got
        if finishes[i] == ends[i] == "tool_calls":
            assert got == made[i]
    assert usage is not None and usage.prompt_tokens == unary.usage.prompt_tokens


def whole(calls: list[tuple[str, str]], finish: str) -> list[tuple[str, str]]:
    """The calls of a completion that are complete: a cut one (max_tokens) may end mid-call."""
    return calls[:-1] if finish == "length" else calls


def check_greedy_logprobs_pick_the_top_token(oai: openai.OpenAI, model: str) -> None:
    done = oai.chat.completions.create(
        model=model, messages=ask("What is the capital of France?"), temperature=0,
        max_tokens=8, logprobs=True, top_logprobs=3,
    )  # fmt: skip
    choice = done.choices[0]
    entries = choice.logprobs.content
    assert entries and len(entries) <= done.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        assert e.top_logprobs[0].token == e.token
        assert e.logprob == pytest.approx(max(t.logprob for t in e.top_logprobs), abs=1e-5)
        assert [t.logprob for t in e.top_logprobs] == sorted(
            (t.logprob for t in e.top_logprobs), reverse=True
        )
        assert bytes(e.bytes).decode(errors="replace") == e.token
    stream = oai.chat.completions.create(
        model=model, messages=ask("What is the capital of France?"), temperature=0,
        max_tokens=8, logprobs=True, top_logprobs=3, stream=True,
    )  # fmt: skip
    streamed = [
        lp for chunk in stream for c in chunk.choices if c.logprobs
        for lp in c.logprobs.content or []
    ]  # fmt: skip
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [
        (e.token, round(e.logprob, 4)) for e in entries
    ]


def check_completions_logprobs_in_the_legacy_shape(oai: openai.OpenAI, model: str) -> None:
    done = oai.completions.create(
        model=model, prompt="The capital of France is", max_tokens=5, temperature=0, logprobs=2
    )
    lp = done.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert "".join(lp.tokens) == done.choices[0].text
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 2 and max(top.values()) == pytest.approx(logprob, abs=1e-5)
        assert top[token] == pytest.approx(logprob, abs=1e-5)


def check_logit_bias_minus_100_bans_a_token(
    oai: openai.OpenAI, model: str, tokenize: Callable[[str], list[int]]
) -> None:
    kw: dict[str, Any] = dict(
        model=model, messages=ask("What is the capital of France?"), temperature=0,
        max_tokens=6, logprobs=True, top_logprobs=2,
    )  # fmt: skip
    free = oai.chat.completions.create(**kw).choices[0]
    first = free.logprobs.content[0]
    (banned,) = tokenize(first.token)  # the greedy answer's first token
    biased = oai.chat.completions.create(**kw, logit_bias={str(banned): -100}).choices[0]
    assert biased.logprobs.content[0].token != first.token
    # the raw distribution is reported, before the bias: the banned token is still top-1
    assert biased.logprobs.content[0].top_logprobs[0].token == first.token


def repeats(oai: openai.OpenAI, model: str, **kw: Any) -> int:
    """Tokens of the greedy answer that repeat an earlier token of it."""
    done = oai.chat.completions.create(
        model=model, messages=ask("Tell me about the sea, the sea, the sea."), temperature=0,
        max_tokens=48, logprobs=True, **kw,
    )  # fmt: skip
    tokens = [e.token for e in done.choices[0].logprobs.content]
    return len(tokens) - len(set(tokens))


def check_penalties_change_repetition(oai: openai.OpenAI, model: str) -> None:
    plain = repeats(oai, model)
    assert plain >= 5  # prose repeats its words and commas
    assert repeats(oai, model, frequency_penalty=2.0) < plain
    assert repeats(oai, model, presence_penalty=2.0) < plain
    assert repeats(oai, model, extra_body={"repetition_penalty": 1.8}) < plain
    assert repeats(oai, model, frequency_penalty=-2.0) > plain  # a negative one rewards repeating


BAD = [
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"999999999": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias[5]"),
    ({"tools": [{"type": "function", "function": {"description": "x"}}]}, "tools[0].function.name"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
        "tools[0].function.parameters",
    ),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"a": {"$ref": "#/x"}}},
                    },
                }
            ]
        },
        "tools[0].function.parameters",
    ),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "response_format.json_schema.schema",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "format": "nope"}},
            }
        },
        "response_format",
    ),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"functions": [{"name": "f"}]}, "functions"),
]


def check_bad_input_is_a_400_naming_the_field(
    oai: openai.OpenAI, model: str, extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model=model, messages=ask("hi"), max_tokens=4, **extra)
    assert err.value.status_code == 400
    assert err.value.body["param"] == field, err.value.body


def check_echo_with_logprobs_is_refused_by_name(
    oai: openai.OpenAI, model: str, engine: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.completions.create(model=model, prompt="hi", echo=True, logprobs=1, max_tokens=2)
    assert err.value.body["param"] == "echo"
    assert engine in err.value.body["message"]
