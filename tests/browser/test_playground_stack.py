"""The playground in a real browser against the session's real stack (Ray Serve behind the
gateway's HTTP port): a chat answer streamed and one stopped mid-way, an image grid that a
seed reproduces, speech that plays, the System panel after traffic, refused requests' messages.

Every wait is an explicit condition with a bound (Playwright's `expect`, `wait_for_function`,
`wait_until`); nothing sleeps and no time is asserted.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from tests.conditions import wait_until
from tests.integration.helpers import scrape, total

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def base(stack: Any) -> str:
    return f"http://127.0.0.1:{stack.gateway.http_port}"


@pytest.fixture(scope="module")
def metrics_url(stack: Any) -> str:
    return f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"


def open_panel(page: Any, base: str, panel: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/#{panel}")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")


def post(base: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_chat_streams_the_answer_the_api_gives(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    oai = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    msgs = [{"role": "user", "content": "Hello there"}]
    unary = oai.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    answer = unary.choices[0].message.content
    assert answer  # else the comparison below would prove little

    open_panel(page, base, "chat")
    page.select_option("#chat-model", "tiny")
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "8")
    page.fill("#chat-input", "Hello there")
    page.press("#chat-input", "Enter")
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_attribute("data-state", "done")
    assert reply.locator(".text").text_content() == answer
    expect(page.locator("#chat-status")).to_contain_text(f"{unary.usage.completion_tokens} tokens")

    # completion mode continues a prompt (echo-text says it back, cut at max tokens)
    page.select_option("#chat-mode", "completion")
    page.select_option("#chat-model", "echo-text")
    page.fill("#chat-max-tokens", "3")
    page.fill("#chat-input", "one two three four five")
    page.click("#chat-send")
    done = page.locator(".msg.completion")
    expect(done).to_have_attribute("data-state", "done")
    expect(done.locator(".text")).to_have_text("one two three")
    expect(page.locator("#chat-status")).to_contain_text("finish: length")


def test_stop_ends_the_stream_and_the_gateway_cancels_it(
    page: Any, base: str, metrics_url: str
) -> None:
    from playwright.sync_api import expect

    # slow-text says the prompt back one word per 250 ms: 400 words run for 100 s
    words = [f"w{i}" for i in range(400)]
    cancelled = {
        "model": "slow-text",
        "method": "/v1/chat/completions",
        "code": "CANCELLED",
        "protocol": "http",
    }
    before = total(scrape(metrics_url), "aigc_requests_total", **cancelled)
    open_panel(page, base, "chat")
    page.select_option("#chat-model", "slow-text")
    page.fill("#chat-max-tokens", "400")
    page.fill("#chat-input", " ".join(words))
    page.click("#chat-send")
    reply = page.locator(".msg.assistant")
    expect(reply.locator(".text")).to_contain_text("w0 w1 w2")  # streaming, token by token
    expect(reply).to_have_attribute("data-state", "streaming")
    page.click("#chat-stop")
    expect(reply).to_have_attribute("data-state", "stopped")
    expect(page.locator("#chat-status")).to_contain_text("stopped after")
    shown = str(reply.locator(".text").text_content()).split()
    assert 3 <= len(shown) < len(words) and shown == words[: len(shown)]

    def counted() -> bool:
        m = scrape(metrics_url)
        return (
            total(m, "aigc_requests_total", **cancelled) == before + 1
            and total(m, "aigc_inflight_requests", model="slow-text") == 0
        )

    assert wait_until(counted, timeout_s=60)  # the gateway cancelled the Serve call
    assert str(reply.locator(".text").text_content()).split() == shown  # nothing came after
    expect(page.locator("#chat-send")).to_be_enabled()
    expect(page.locator("#chat-error")).to_be_hidden()


def test_image_grid_and_the_same_seed_gives_the_same_picture(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    open_panel(page, base, "images")
    page.select_option("#image-model", "shapes")
    expect(page.locator("#image-label option")).to_have_text(["circle", "square", "triangle"])
    page.select_option("#image-label", "square")
    page.fill("#image-count", "4")
    page.fill("#image-seed", "7")
    grid = page.locator("#image-grid img")

    def generate() -> list[str]:
        page.evaluate("() => document.getElementById('image-grid').replaceChildren()")
        page.click("#image-generate")
        expect(grid).to_have_count(4)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#image-grid img')]"
            ".every(i => i.complete && i.naturalWidth === 28)"
        )  # decoded PNGs of the model's native size
        return [str(grid.nth(i).get_attribute("src")) for i in range(4)]

    first = generate()
    expect(page.locator("#image-status")).to_contain_text("seed 7")
    status, api = post(
        base,
        "/v1/images/generations",
        {"model": "shapes", "prompt": "square", "n": 4, "seed": 7},
    )
    assert status == 200
    assert first == [f"data:image/png;base64,{d['b64_json']}" for d in api["data"]]
    assert generate() == first  # the same seed, the same pictures
    page.fill("#image-seed", "8")
    assert generate() != first


def test_speech_streams_and_plays(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    open_panel(page, base, "speech")
    page.select_option("#speech-model", "speech")
    page.fill("#speech-input", "Hello there. How are you today?")
    page.click("#speech-speak")
    audio = page.locator("#speech-audio")
    expect(audio).to_have_attribute("data-state", "done", timeout=120_000)
    assert int(str(audio.get_attribute("data-chunks"))) >= 1
    assert float(str(audio.get_attribute("data-seconds"))) > 0.5
    assert audio.get_attribute("data-sample-rate") == "24000"
    expect(page.locator("#speech-status")).to_contain_text("played as it streamed")
    # the player holds the whole WAV: it loads with that duration and plays
    page.wait_for_function("() => document.getElementById('speech-audio').readyState >= 1")
    duration = page.evaluate("() => document.getElementById('speech-audio').duration")
    assert duration == pytest.approx(float(str(audio.get_attribute("data-seconds"))), abs=0.01)
    page.evaluate("() => document.getElementById('speech-audio').play()")
    page.wait_for_function("() => document.getElementById('speech-audio').currentTime > 0")


def test_system_panel_updates_after_traffic(page: Any, base: str, stack: Any) -> None:
    from playwright.sync_api import expect

    open_panel(page, base, "system")
    row = page.locator("#system-models tr[data-model='tiny']")
    expect(row.locator("td[data-col='state']")).to_have_text("ready")
    expect(row.locator("td[data-col='engine']")).to_have_text("transformers")
    expect(row.locator("td[data-col='replicas']")).to_have_text("1")
    names = [str(n) for n in page.locator("#system-models tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.model)"
    )]  # fmt: skip
    assert names == [m.name for m in stack.config.models]
    before = int(str(row.locator("td[data-col='requests']").text_content()))
    errors_before = int(str(row.locator("td[data-col='errors']").text_content()))

    oai = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    oai.completions.create(model="tiny", prompt="a computer", max_tokens=4)
    oai.completions.create(model="tiny", prompt="hello", max_tokens=4)
    list(oai.completions.create(model="tiny", prompt="hi", max_tokens=4, stream=True))
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="tiny", prompt="x", max_tokens=10_000)

    # the panel refreshes itself every few seconds: wait (bounded) for the traffic to show
    page.wait_for_function(
        """([before, errorsBefore]) => {
            const cell = (c) => document.querySelector(
                `#system-models tr[data-model='tiny'] td[data-col='${c}']`)?.textContent;
            return Number(cell('requests')) >= before + 4
                && Number(cell('errors')) >= errorsBefore + 1
                && Number(cell('rate')) > 0
                && /ms|s$/.test(cell('ttft'));
        }""",
        arg=[before, errors_before],
        timeout=60_000,
    )
    expect(page.locator("#system-status")).to_contain_text("models ready")
    expect(page.locator("#system-error")).to_be_hidden()


def test_refused_requests_show_the_api_message(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    open_panel(page, base, "chat")
    page.select_option("#chat-model", "tiny")
    page.fill("#chat-max-tokens", "1000")
    page.fill("#chat-input", "Hello")
    page.click("#chat-send")
    status, api = post(
        base,
        "/v1/chat/completions",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 1000,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert status == 400
    error = page.locator("#chat-error")
    expect(error.locator(".msg")).to_have_text(api["error"]["message"])
    expect(error.locator(".detail")).to_contain_text("HTTP 400")
    expect(error.locator(".detail")).to_contain_text(f"param: {api['error']['param']}")
    expect(page.locator("#chat-log .msg")).to_have_count(0)  # the refused turn is not kept
    expect(page.locator("#chat-input")).to_have_value("Hello")  # to fix and send again

    page.click("#tab-images")
    page.select_option("#image-model", "shapes")
    page.fill("#image-count", "99")
    page.click("#image-generate")
    status, api = post(
        base, "/v1/images/generations", {"model": "shapes", "prompt": "circle", "n": 99}
    )
    assert status == 400
    expect(page.locator("#image-error .msg")).to_have_text(api["error"]["message"])
