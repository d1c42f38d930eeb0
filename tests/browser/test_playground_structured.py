"""The Chat panel's JSON schema, tools and token probabilities in a real browser.

Without Ray (the HTTP front end over echo models): a schema or tools box that is not valid JSON
is an error in the page and nothing is sent; the API's 400 (echo refuses response_format) is
shown with its message and param, the box it names marked invalid. On the real stack, SmolLM2
on llama.cpp (`gguf`, greedy, so the page's stream and a unary API call agree): a schema's
answer as the API gives it, valid JSON; a tool call shown as a call (its name, its arguments
pretty-printed) and not as text; each token a span whose probability and 5 alternatives show
on hover and on keyboard focus (in completion mode too, from the legacy logprobs shape); a
schema llguidance cannot compile, the API's message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tests.standin import HttpFront
from tests.structured_checks import CHOICE_SCHEMA, WEATHER

pytestmark = pytest.mark.browser

SCHEMA = CHOICE_SCHEMA  # the bounded schema every engine passes (tests/structured_checks.py)


def pct(logprob: float) -> str:
    """The page's percentage of a logprob (answer.js `pct`)."""
    p = math.exp(logprob) * 100
    return f"{p:.{1 if p >= 10 else 2}f}%" if p >= 0.01 else "<0.01%"


def quoted(token: str) -> str:
    """A token as the page shows it (JSON.stringify)."""
    return json.dumps(token, ensure_ascii=False)


def chat_requests(page: Any) -> list[str]:
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data or "") if r.url.endswith("/chat/completions") else None,
    )
    return sent


def ask(page: Any, model: str, prompt: str, max_tokens: int, **boxes: str) -> None:
    """Opens the extras, fills the boxes given (schema, tools), sends `prompt`."""
    page.select_option("#chat-model", model)
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", str(max_tokens))
    if not page.locator("#chat-extras").evaluate("d => d.open"):
        page.click("#chat-extras summary")
    page.fill("#chat-schema", boxes.get("schema", ""))
    page.fill("#chat-tools", boxes.get("tools", ""))
    page.fill("#chat-input", prompt)
    page.click("#chat-send")


# ---- without Ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def front() -> Iterator[HttpFront]:
    f = HttpFront()
    yield f
    f.close()


def test_a_box_that_is_not_json_is_an_error_in_the_page(page: Any, front: HttpFront) -> None:
    from playwright.sync_api import expect

    sent = chat_requests(page)
    page.goto(front.base + "/#chat")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    ask(page, "echo-text", "hello", 8, schema='{"type": "object",')
    error = page.locator("#chat-error")
    expect(error.locator(".msg")).to_contain_text("The JSON schema is not valid JSON (")
    expect(error.locator(".msg")).to_contain_text("Nothing was sent.")
    expect(page.locator("#chat-schema")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#chat-schema")).to_be_focused()
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    expect(page.locator("#chat-input")).to_have_value("hello")

    # valid JSON of the wrong kind: a schema is an object, tools a list of objects
    ask(page, "echo-text", "hello", 8, schema="[1]")
    expect(error.locator(".msg")).to_contain_text("The JSON schema must be a JSON object")
    ask(page, "echo-text", "hello", 8, tools=json.dumps(WEATHER))
    expect(error.locator(".msg")).to_contain_text("The tools must be a JSON list of tool objects")
    expect(page.locator("#chat-tools")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#chat-schema")).not_to_have_attribute("aria-invalid", "true")
    page.type("#chat-tools", " ")  # editing the box clears the mark
    expect(page.locator("#chat-tools")).not_to_have_attribute("aria-invalid", "true")
    assert sent == []

    # the summary says what the extras send (seen when collapsed); completion mode sends no
    # schema or tools
    page.fill("#chat-schema", json.dumps(SCHEMA))
    page.select_option("#chat-tool-choice", "required")
    page.check("#chat-logprobs")
    on = page.locator("#chat-extras-on")
    expect(on).to_have_text("· on: JSON schema, tools (required), token probabilities")
    expect(page.locator("#chat-structure-note")).to_be_hidden()
    page.select_option("#chat-mode", "completion")
    for box in ("#chat-schema", "#chat-tools", "#chat-tool-choice"):
        expect(page.locator(box)).to_be_disabled()
    expect(page.locator("#chat-logprobs")).to_be_enabled()
    expect(page.locator("#chat-structure-note")).to_be_visible()
    expect(on).to_have_text("· on: token probabilities")
    page.click("#chat-extras summary")
    expect(page.locator("#chat-schema")).to_be_hidden()
    expect(on).to_be_visible()
    assert sent == []


def test_the_apis_400_is_shown_and_names_the_box(page: Any, front: HttpFront) -> None:
    from playwright.sync_api import expect

    sent = chat_requests(page)
    page.goto(front.base + "/#chat")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    ask(page, "echo-text", "hello", 8, schema=json.dumps(SCHEMA))
    with pytest.raises(openai.BadRequestError) as api:
        front.client().chat.completions.create(
            model="echo-text",
            messages=[{"role": "user", "content": "hello"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "playground", "schema": SCHEMA},
            },
        )
    body = api.value.body
    assert isinstance(body, dict) and body["param"] == "response_format"
    error = page.locator("#chat-error")
    expect(error.locator(".msg")).to_have_text(body["message"])
    expect(error.locator(".detail")).to_contain_text("HTTP 400")
    expect(error.locator(".detail")).to_contain_text("param: response_format")
    expect(page.locator("#chat-schema")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    (request,) = sent
    assert json.loads(request)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "playground", "schema": SCHEMA},
    }

    # tools, and token probabilities, are what the page sends and echo refuses by name too
    page.check("#chat-logprobs")
    ask(page, "echo-text", "hello", 8, tools=json.dumps([WEATHER]))
    expect(error.locator(".detail")).to_contain_text("param: tools")
    expect(page.locator("#chat-tools")).to_have_attribute("aria-invalid", "true")
    sent_body = json.loads(sent[-1])
    assert sent_body["tools"] == [WEATHER] and sent_body["tool_choice"] == "auto"
    assert sent_body["parallel_tool_calls"] is False  # one call at a time unless ticked
    assert sent_body["logprobs"] is True and sent_body["top_logprobs"] == 5
    assert "response_format" not in sent_body


# ---- the real stack: SmolLM2 on llama.cpp ---------------------------------------------------
@pytest.fixture(scope="module")
def base(stack: Any) -> str:
    return f"http://127.0.0.1:{stack.gateway.http_port}"


@pytest.fixture(scope="module")
def oai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)


def open_chat(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/#chat")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")


def user(content: str) -> list[Any]:
    return [{"role": "user", "content": content}]


@pytest.mark.integration
def test_a_schemas_answer_is_the_apis(page: Any, base: str, oai: openai.OpenAI) -> None:
    from playwright.sync_api import expect

    prompt = "Is the sky blue? Answer and give a digit."
    fmt = {"type": "json_schema", "json_schema": {"name": "playground", "schema": SCHEMA}}
    unary = oai.chat.completions.create(
        model="gguf", messages=user(prompt), response_format=fmt,
        temperature=0, max_tokens=40,
    )  # fmt: skip
    content = unary.choices[0].message.content
    assert content and unary.choices[0].finish_reason == "stop"

    open_chat(page, base)
    ask(page, "gguf", prompt, 40, schema=json.dumps(SCHEMA, indent=2))
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_attribute("data-state", "done")
    assert reply.locator(".text").text_content() == content
    jsonschema.validate(json.loads(content), SCHEMA)
    expect(reply).to_have_attribute("data-json", "valid")
    expect(reply.locator(".json-note")).to_have_text("valid JSON")
    expect(page.locator("#chat-status")).to_contain_text("finish: stop")
    expect(page.locator("#chat-error")).to_be_hidden()


@pytest.mark.integration
def test_a_tool_call_is_shown_as_a_call(page: Any, base: str, oai: openai.OpenAI) -> None:
    from playwright.sync_api import expect

    prompt = "What is the weather in Paris?"
    unary = oai.chat.completions.create(
        model="gguf", messages=user(prompt), tools=[WEATHER],
        tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=60,
    )  # fmt: skip
    assert unary.choices[0].finish_reason == "tool_calls"
    calls = unary.choices[0].message.tool_calls or []
    assert calls

    open_chat(page, base)
    page.click("#chat-extras summary")
    page.select_option("#chat-tool-choice", "required")
    ask(page, "gguf", prompt, 60, tools=json.dumps([WEATHER]))
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_attribute("data-state", "done")
    shown = reply.locator(".call")
    expect(shown).to_have_count(len(calls))
    for i, made in enumerate(calls):
        block = shown.nth(i)
        fn = made.function
        expect(block.locator(".call-name")).to_have_text(fn.name)
        expect(block).to_have_attribute("aria-label", f"tool call {fn.name}")
        args = json.loads(fn.arguments)
        jsonschema.validate(args, WEATHER["function"]["parameters"])
        pretty = json.dumps(args, indent=2, ensure_ascii=False)
        assert block.locator(".call-args").text_content() == pretty
    expect(reply.locator(".text")).to_be_hidden()  # no raw JSON as text
    assert reply.locator(".text").text_content() == ""
    expect(page.locator("#chat-status")).to_contain_text("finish: tool_calls")


@pytest.mark.integration
def test_token_probabilities_on_hover_and_focus(page: Any, base: str, oai: openai.OpenAI) -> None:
    from playwright.sync_api import expect

    prompt = "What is the capital of France?"
    unary = oai.chat.completions.create(
        model="gguf", messages=user(prompt), temperature=0, max_tokens=8,
        logprobs=True, top_logprobs=5,
    )  # fmt: skip
    entries = unary.choices[0].logprobs.content
    assert entries

    open_chat(page, base)
    page.click("#chat-extras summary")
    page.check("#chat-logprobs")
    ask(page, "gguf", prompt, 8)
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_attribute("data-state", "done")
    tokens = reply.locator(".text .tok")
    expect(tokens).to_have_count(len(entries))  # one span per token
    assert tokens.all_text_contents() == [e.token for e in entries]
    assert reply.locator(".text").text_content() == unary.choices[0].message.content
    shown_logprobs = [float(str(t.get_attribute("data-logprob"))) for t in tokens.all()]
    assert shown_logprobs == pytest.approx([e.logprob for e in entries], abs=1e-4)
    # one tab stop for the answer; the arrow keys move between its tokens
    assert [t.get_attribute("tabindex") for t in tokens.all()] == ["0"] + ["-1"] * (
        len(entries) - 1
    )

    tip = page.locator("#chat-token-tip")
    expect(tip).to_be_hidden()

    def shows(i: int) -> None:
        lp = shown_logprobs[i]
        expect(tip).to_be_visible()
        expect(tip).to_have_attribute("role", "tooltip")
        expect(tokens.nth(i)).to_have_attribute("aria-describedby", "chat-token-tip")
        expect(tip.locator(".tip-head")).to_have_text(f"{quoted(entries[i].token)} {pct(lp)}")
        alts = tip.locator(".tip-alts li")
        expect(alts).to_have_count(5)
        shown = [str(t).rsplit(" ", 1) for t in alts.all_text_contents()]
        api = entries[i].top_logprobs
        assert [token for token, _ in shown] == [quoted(t.token) for t in api]
        # the API's unary answer and the page's stream may differ in the last float bits
        assert [float(p.strip("<%")) for _, p in shown] == pytest.approx(
            [100 * math.exp(t.logprob) for t in api], abs=0.06
        )
        assert shown[0][0] == quoted(entries[i].token)  # greedy: the token is the top-1
        expect(alts.first).to_have_class("chosen")

    tokens.nth(1).hover()
    shows(1)
    page.mouse.move(1, 1)
    expect(tip).to_be_hidden()
    expect(tokens.nth(1)).not_to_have_attribute("aria-describedby", "chat-token-tip")

    tokens.first.focus()
    shows(0)
    page.keyboard.press("ArrowRight")
    expect(tokens.nth(1)).to_be_focused()
    shows(1)
    assert tokens.nth(1).get_attribute("tabindex") == "0"
    assert tokens.first.get_attribute("tabindex") == "-1"
    page.keyboard.press("End")
    expect(tokens.last).to_be_focused()
    shows(len(entries) - 1)
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()
    page.keyboard.press("Home")
    shows(0)
    page.keyboard.press("Tab")  # leaving the answer hides it
    expect(tip).to_be_hidden()

    # completion mode: the legacy logprobs shape, the same spans
    legacy = (
        oai.completions.create(
            model="gguf", prompt="The capital of France is", temperature=0, max_tokens=5, logprobs=5
        )
        .choices[0]
        .logprobs
    )
    assert legacy and legacy.tokens and legacy.token_logprobs and legacy.top_logprobs
    page.select_option("#chat-mode", "completion")
    page.fill("#chat-max-tokens", "5")
    page.fill("#chat-input", "The capital of France is")
    page.click("#chat-send")
    done = page.locator(".msg.completion")
    expect(done).to_have_attribute("data-state", "done")
    tokens = done.locator(".tok")
    expect(tokens).to_have_count(len(legacy.tokens))
    assert tokens.all_text_contents() == legacy.tokens
    logprobs = [float(str(t.get_attribute("data-logprob"))) for t in tokens.all()]
    assert logprobs == pytest.approx(legacy.token_logprobs, abs=1e-4)
    tokens.first.hover()
    top = sorted(legacy.top_logprobs[0].items(), key=lambda kv: -kv[1])
    alts = tip.locator(".tip-alts li")
    expect(alts).to_have_count(len(top))
    assert [str(t).rsplit(" ", 1)[0] for t in alts.all_text_contents()] == [
        quoted(token) for token, _ in top
    ]


@pytest.mark.integration
def test_a_schema_llguidance_cannot_compile_shows_the_apis_message(
    page: Any, base: str, oai: openai.OpenAI
) -> None:
    from playwright.sync_api import expect

    bad = {"type": "string", "format": "nope"}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "playground", "schema": bad}}
    with pytest.raises(openai.BadRequestError) as api:
        oai.chat.completions.create(
            model="gguf", messages=user("hi"), max_tokens=8, temperature=0, response_format=fmt
        )
    body = api.value.body
    assert isinstance(body, dict) and body["param"] == "response_format"

    open_chat(page, base)
    ask(page, "gguf", "hi", 8, schema=json.dumps(bad))
    error = page.locator("#chat-error")
    expect(error.locator(".msg")).to_have_text(body["message"])
    expect(error.locator(".detail")).to_contain_text("HTTP 400")
    expect(error.locator(".detail")).to_contain_text("param: response_format")
    expect(page.locator("#chat-schema")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    expect(page.locator("#chat-input")).to_have_value("hi")
