"""The playground in a real browser against the HTTP front end over stand-in models (no Ray):
API keys, first paint and page weight. The real stack's tests are in test_playground_stack.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.standin import HttpFront

pytestmark = pytest.mark.browser

KEY = "p" * 24
KEYS_ENV = "AIGC_TEST_PLAYGROUND_KEYS"
WEIGHT_LIMIT = 200 * 1024


@pytest.fixture(scope="module")
def keyed() -> Iterator[HttpFront]:
    os.environ[KEYS_ENV] = f"tester:{KEY}"
    f = HttpFront(security={"api_keys_env": KEYS_ENV})
    yield f
    f.close()


@pytest.fixture(scope="module")
def open_front() -> Iterator[HttpFront]:
    f = HttpFront()
    yield f
    f.close()


def error_text(page: Any, where: str) -> str:
    return str(page.locator(f"#{where} .msg").text_content())


def test_page_asks_for_a_key_and_sends_it_as_a_bearer_token(page: Any, keyed: HttpFront) -> None:
    from playwright.sync_api import expect

    page.goto(keyed.base + "/")
    # no key: the API's own 401 message, not a blank page
    expect(page.locator("body")).to_have_attribute("data-models", "error")
    expect(page.locator("#global-error .msg")).to_have_text(
        "missing API key: send 'authorization: Bearer <key>'"
    )
    expect(page.locator("#global-error .detail")).to_contain_text("HTTP 401")
    page.fill("#api-key", "w" * 24)
    page.click("#key-use")
    expect(page.locator("#global-error .msg")).to_have_text(
        "invalid API key: send 'authorization: Bearer <key>'"
    )
    page.fill("#api-key", KEY)
    page.click("#key-use")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    expect(page.locator("#global-error")).to_be_hidden()
    expect(page.locator("#chat-model option")).to_have_text(["echo-text"])
    # a streamed answer with the key (echo-text says the prompt back, word by word)
    page.fill("#chat-input", "keys are sent with every call")
    page.click("#chat-send")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-state", "done")
    expect(page.locator(".msg.assistant .text")).to_have_text("keys are sent with every call")
    # /metrics on the HTTP port takes the same key: the System panel fills in
    page.click("#tab-system")
    state = page.locator("#system-models tr[data-model='echo-text'] td[data-col='state']")
    expect(state).to_have_text("ready")
    expect(page.locator("#system-error")).to_be_hidden()


def test_first_paint_and_page_weight_are_reported(
    page: Any, open_front: HttpFront, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured in the browser and printed; the weight (bytes, not time) is asserted."""
    from playwright.sync_api import expect

    page.goto(open_front.base + "/")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    paint = page.evaluate(
        "() => performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)"
    )
    resources = page.evaluate(
        "() => [...performance.getEntriesByType('navigation'),"
        " ...performance.getEntriesByType('resource')]"
        ".map(e => [e.name, e.decodedBodySize])"
    )
    files = {url.split("/", 3)[-1] or "index.html": size for url, size in resources}
    page_files = {k: v for k, v in files.items() if not k.startswith("v1/")}
    weight = sum(page_files.values())
    assert "playground/app.js" in page_files and "playground/style.css" in page_files
    assert weight < WEIGHT_LIMIT, page_files
    assert paint, "the browser reported no first contentful paint"
    record_property("first_contentful_paint_ms", round(paint[0], 1))
    record_property("page_weight_bytes", weight)
    with capsys.disabled():
        print(
            f"\n[playground] first contentful paint {paint[0]:.0f} ms (goal < 1000 ms, not "
            f"asserted); page weight {weight} bytes in {len(page_files)} files: "
            + json.dumps(page_files)
        )
