"""Drive the playground of a running gateway (`make up`) in Debian's chromium: use every served
model from its panel, report what each produced, first paint and page weight, and write one
screenshot per panel into docs/ (the README shows them).

    .venv/bin/python scripts/playground_screenshots.py                  # http://127.0.0.1:8000
    .venv/bin/python scripts/playground_screenshots.py --base URL --key KEY --out docs

Needs the `playwright` package (dev extra) and `chromium` (apt-get install -y chromium).
Every wait is a bounded condition on the page; no time is asserted, only reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1100, "height": 680}
QUESTION = "What is the capital of Japan?"
FOLLOW_UP = "What is the capital of Kenya?"
PROMPT = "A computer is"
SPEECH = "Hello there! Each sentence plays as soon as it is made. This one follows the first."


def models(base: str, key: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(base + "/v1/models")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=30) as r:
        data = json.loads(r.read())["data"]
    return [m for m in data if m["id"] == m.get("root", m["id"])]


def traffic(base: str, key: str, model: dict[str, Any]) -> None:
    """One small request to `model` through the API (not the page)."""
    path, body = {
        "text": ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}],
                                          "max_tokens": 16, "stream": True}),
        "image": ("/v1/images/generations", {"prompt": (model.get("labels") or [""])[0], "n": 4}),
        "audio": ("/v1/audio/speech", {"input": "Hello there."}),
    }[model["modality"]]  # fmt: skip
    req = urllib.request.Request(
        base + path,
        data=json.dumps({"model": model["id"], **body}).encode(),
        headers={"content-type": "application/json"},
    )
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


def open_page(browser: Any, base: str, key: str, panel: str) -> Any:
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(180_000)
    page.goto(f"{base}/#{panel}")
    if key:
        page.fill("#api-key", key)
        page.click("#key-use")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    return page


def chat(
    page: Any, model: str, prompts: list[str], mode: str = "chat", max_tokens: int = 48
) -> str:
    """Sends the prompts in turn (one conversation); the last answer, or the status line
    when it is empty."""
    from playwright.sync_api import expect

    page.select_option("#chat-mode", mode)
    page.click("#chat-clear")
    page.select_option("#chat-model", model)
    page.fill("#chat-max-tokens", str(max_tokens))
    answer = ""
    for prompt in prompts:
        page.fill("#chat-input", prompt)
        page.click("#chat-send")
        reply = page.locator(".msg.assistant, .msg.completion").last
        expect(reply).to_have_attribute("data-state", "done")
        answer = str(reply.locator(".text").text_content())
    return answer or str(page.locator("#chat-status").text_content())


def images(page: Any, model: dict[str, Any], count: int, seed: int) -> str:
    from playwright.sync_api import expect

    page.select_option("#image-model", model["id"])
    labels = model.get("labels") or []
    if labels:
        page.select_option("#image-label", labels[min(7, len(labels) - 1)])
    page.fill("#image-count", str(count))
    page.fill("#image-seed", str(seed))
    page.evaluate("() => document.getElementById('image-grid').replaceChildren()")
    page.click("#image-generate")
    expect(page.locator("#image-grid img")).to_have_count(count)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#image-grid img')].every(i => i.complete)"
    )
    return str(page.locator("#image-status").text_content())


def speech(page: Any, model: str) -> str:
    from playwright.sync_api import expect

    page.select_option("#speech-model", model)
    page.fill("#speech-input", SPEECH)
    page.click("#speech-speak")
    expect(page.locator("#speech-audio")).to_have_attribute("data-state", "done")
    page.wait_for_function("() => document.getElementById('speech-audio').readyState >= 1")
    return str(page.locator("#speech-status").text_content())


def shoot(page: Any, out: Path, name: str) -> Path:
    path = out / f"playground-{name}.png"
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 200})
    page.screenshot(path=str(path), full_page=True)  # as tall as the content
    page.set_viewport_size(VIEWPORT)
    try:  # a palette PNG is a third of the size and looks the same for a UI
        from PIL import Image

        with Image.open(path) as im:
            im.convert("RGB").quantize(colors=128).save(path, optimize=True)
    except ImportError:
        pass
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="http://127.0.0.1:8000")
    ap.add_argument("--key", default="", help="API key, when the gateway asks for one")
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    served = models(args.base, args.key)
    results: list[tuple[str, str, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, args=["--autoplay-policy=no-user-gesture-required"]
        )
        page = open_page(browser, args.base, args.key, "chat")
        fcp = page.evaluate(
            "() => performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)"
        )
        weight = page.evaluate(
            "() => [...performance.getEntriesByType('navigation'),"
            " ...performance.getEntriesByType('resource')]"
            ".filter(e => !e.name.includes('/v1/'))"
            ".reduce((n, e) => n + e.decodedBodySize, 0)"
        )
        print(f"first contentful paint {fcp[0]:.0f} ms; page weight {weight} bytes")
        for m in served:
            if m["modality"] == "text":
                results.append(("chat", m["id"], chat(page, m["id"], [QUESTION])))
                results.append(("prompt", m["id"], chat(page, m["id"], [PROMPT], "completion")))
        default_text = next(
            (m["id"] for m in served if m["modality"] == "text" and m["default"]), None
        )
        if default_text:
            chat(page, default_text, [QUESTION, FOLLOW_UP])
            shoot(page, args.out, "chat")
            # a refused request: the API's message, as it states it
            page.fill("#chat-max-tokens", "100000")
            page.fill("#chat-input", QUESTION)
            page.click("#chat-send")
            page.locator("#chat-error .msg").wait_for()
            results.append(("error", default_text, str(page.text_content("#chat-error"))))
            shoot(page, args.out, "error")

        page.click("#tab-images")
        for m in served:
            if m["modality"] == "image":
                results.append(("image", m["id"], images(page, m, 8, 1)))
        conditional = next(
            (m for m in served if m["modality"] == "image" and m.get("labels")), None
        )
        if conditional:
            images(page, conditional, 16, 3)
            shoot(page, args.out, "images")

        page.click("#tab-speech")
        for m in served:
            if m["modality"] == "audio":
                results.append(("audio", m["id"], speech(page, m["id"])))
        shoot(page, args.out, "speech")

        page.click("#tab-system")
        page.wait_for_function(
            "() => Number(document.getElementById('system-status').dataset.updates) >= 1"
        )
        # traffic while the panel watches, so its rates and TTFT are of the last minute
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda m: traffic(args.base, args.key, m), served * 2))
        updates = int(page.locator("#system-status").get_attribute("data-updates") or 0)
        page.wait_for_function(
            f"() => Number(document.getElementById('system-status').dataset.updates) > {updates}"
        )
        shoot(page, args.out, "system")
        browser.close()

    for modality, name, what in results:
        print(f"{modality:6} {name:12} {what}")
    for path in sorted(args.out.glob("playground-*.png")):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
              f"({path.stat().st_size // 1024} KB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
