"""A real browser for the playground tests: Debian's chromium driven by Playwright.

Playwright's own browser download is not used (no network): it drives the system chromium
(`apt-get install -y chromium`; another binary with AIGC_CHROMIUM). Where neither the package
nor a browser can be had, every test here is skipped with the reason; AIGC_REQUIRE_BROWSER=1
(set by .ci/run, which installs both) turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    explicit = os.environ.get("AIGC_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("AIGC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (AIGC_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API runs an asyncio loop on the main thread while it is
    open, and every later test that runs its own loop (asyncio.run) or calls a Ray handle
    synchronously would fail inside it; the browser closes with its module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[dev]')")
    exe = chromium_path()
    if exe is None:
        _unavailable("no chromium found (apt-get install -y chromium, or set AIGC_CHROMIUM)")
    with sync_playwright() as p:
        # the audio flag lets the <audio> element play without a click in the test
        b = p.chromium.launch(
            executable_path=exe, args=["--autoplay-policy=no-user-gesture-required"]
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; browser errors (uncaught exceptions, console errors) fail the test."""
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on(
        "console",
        lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
    )
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()
    assert not [p for p in problems if not _expected(p)], problems


def _expected(problem: str) -> bool:
    # A refused request is logged by the browser as a failed resource load; the page shows it.
    return "Failed to load resource" in problem
