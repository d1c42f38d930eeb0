"""The Video panel in a real browser against the session's stack: a clip made through
/v1/videos plays in the page's <video> element with the length and size asked for."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def base(stack: Any) -> str:
    return f"http://127.0.0.1:{stack.gateway.http_port}"


def test_the_clip_plays_in_the_page(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/#video")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    page.select_option("#video-model", "shapes-video")
    expect(page.locator("#video-labels")).to_contain_text("circle, square, triangle")
    page.fill("#video-prompt", "a circle turning into a square")
    page.fill("#video-seconds", "3")
    page.fill("#video-seed", "4")
    page.click("#video-generate")
    expect(page.locator("#video-status")).to_contain_text("3 s · 28x28", timeout=120_000)
    page.wait_for_function(
        "() => document.querySelector('#video-player').readyState >= 1", timeout=30_000
    )
    shape = page.evaluate(
        "() => { const v = document.querySelector('#video-player');"
        " return [v.duration, v.videoWidth, v.videoHeight, v.error && v.error.code]; }"
    )
    assert shape[0] == pytest.approx(3.0, abs=0.05) and shape[1:] == [28, 28, None], shape
    # a bad prompt is refused with the API's message, naming the labels
    page.fill("#video-prompt", "a dragon")
    page.click("#video-generate")
    expect(page.locator("#video-error")).to_contain_text("valid labels: circle, square, triangle")
