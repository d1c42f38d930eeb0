"""The playground's Jobs panel in a real browser against the session's real stack (the batch
runner of the gateway, echo-text and slow-text): a pasted chat batch runs to completed and its
output file downloads; a running batch of slow lines is cancelled; refused and unreadable
uploads show the API's errors; the list pages newest first.

Every wait is an explicit condition with a bound (Playwright's `expect`, `wait_until`); nothing
sleeps and no time is asserted.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conditions import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
PAGE = 10  # jobs.js's page of batches
RUN_MS = 120_000  # bound on a batch's run


@pytest.fixture(scope="module")
def base(stack: Any) -> str:
    return f"http://127.0.0.1:{stack.gateway.http_port}"


@pytest.fixture(scope="module")
def oai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)


def jsonl(rows: list[Any]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def open_jobs(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/#jobs")
    expect(page.locator("body")).to_have_attribute("data-models", "loaded")
    expect(page.locator("#panel-jobs")).to_be_visible()
    expect(page.locator("#jobs-list")).to_have_attribute("data-updates", re.compile(r"\d+"))


def submitted(page: Any) -> Any:
    """The row of the batch the form just submitted (its id is in the status line)."""
    from playwright.sync_api import expect

    status = page.locator("#jobs-status")
    expect(status).to_contain_text("submitted", timeout=60_000)
    batch_id = str(status.text_content()).split()[0]
    assert batch_id.startswith("batch_"), batch_id
    row = page.locator(f'#jobs-list > li[data-id="{batch_id}"]')
    expect(row).to_be_visible()
    return row


def fetch(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return r.read()


def test_a_pasted_chat_batch_completes_and_its_output_downloads(
    page: Any, base: str, oai: openai.OpenAI
) -> None:
    from playwright.sync_api import expect

    ask = [[{"role": "user", "content": f"say {i} words"}] for i in range(3)]
    rows = [line(f"q{i}", CHAT, {"model": "echo-text", "messages": m}) for i, m in enumerate(ask)]
    open_jobs(page, base)
    page.fill("#jobs-endpoint", COMPLETIONS)
    page.fill("#jobs-text", jsonl(rows))
    expect(page.locator("#jobs-endpoint")).to_have_value(CHAT)  # from the first line's url
    page.click("#jobs-submit")
    row = submitted(page)
    assert page.locator("#jobs-list > li").first.get_attribute("data-id") == row.get_attribute(
        "data-id"
    )  # newest first
    expect(row.locator(".batch-name")).to_have_text("pasted.jsonl")
    expect(row.locator(".endpoint")).to_have_text(CHAT)
    expect(page.locator("#jobs-text")).to_have_value("")

    # the panel refreshes by itself until the batch is done
    expect(row).to_have_attribute("data-status", "completed", timeout=RUN_MS)
    expect(row.locator(".batch-status")).to_have_text("completed")
    bar = row.locator(".bar")
    expect(bar).to_have_attribute("aria-valuenow", "3")
    expect(bar).to_have_attribute("aria-valuemax", "3")
    assert bar.locator(".bar-ok").evaluate("e => e.style.width") == "100%"
    expect(row.locator(".counts")).to_have_text("3 of 3 done")
    expect(row.locator("button.errors")).to_be_hidden()
    expect(row.locator("button.cancel")).to_be_hidden()
    expect(page.locator("#jobs-status")).to_contain_text("completed: 3 of 3 done")

    batch_id = str(row.get_attribute("data-id"))
    done = oai.batches.retrieve(batch_id)
    assert done.status == "completed" and done.output_file_id and done.error_file_id is None
    output = row.locator("button.output")
    output.focus()  # by keyboard
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    download = info.value
    assert download.suggested_filename == f"{batch_id}_output.jsonl"
    data = Path(download.path()).read_bytes()
    assert data == fetch(base, f"/v1/files/{done.output_file_id}/content")
    lines = [json.loads(x) for x in data.decode().splitlines()]
    assert [x["custom_id"] for x in lines] == ["q0", "q1", "q2"]
    for i, x in enumerate(lines):
        assert x["error"] is None and x["response"]["status_code"] == 200
        body = x["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"say {i} words"
    expect(page.locator("#jobs-status")).to_have_text(
        f"{batch_id}_output.jsonl: {len(data)} bytes saved"
    )


def test_a_running_batch_of_slow_lines_is_cancelled(
    page: Any, base: str, oai: openai.OpenAI
) -> None:
    from playwright.sync_api import expect

    words = " ".join(["word"] * 40)  # slow-text: 250 ms a word, 10 s a line
    rows = [
        line(f"s{i}", COMPLETIONS, {"model": "slow-text", "prompt": words, "max_tokens": 40})
        for i in range(40)
    ]
    open_jobs(page, base)
    page.set_input_files(
        "#jobs-file",
        {"name": "slow.jsonl", "mimeType": "application/jsonl", "buffer": jsonl(rows).encode()},
    )
    expect(page.locator("#jobs-endpoint")).to_have_value(COMPLETIONS)
    page.click("#jobs-submit")
    row = submitted(page)
    expect(row.locator(".batch-name")).to_have_text("slow.jsonl")
    expect(row).to_have_attribute("data-status", "in_progress", timeout=60_000)
    expect(row.locator(".bar")).to_have_attribute("aria-valuemax", "40")
    cancel = row.locator("button.cancel")
    cancel.focus()
    page.keyboard.press("Enter")
    expect(row).to_have_attribute("data-status", re.compile("^cancell(ing|ed)$"))
    expect(cancel).to_be_hidden()
    expect(row).to_be_focused()  # the keyboard stays on the batch when its button goes
    expect(row).to_have_attribute("data-status", "cancelled", timeout=RUN_MS)
    expect(row.locator(".batch-status")).to_have_text("cancelled")

    batch_id = str(row.get_attribute("data-id"))
    done = oai.batches.retrieve(batch_id)
    assert done.status == "cancelled"
    counts = done.request_counts
    assert counts.total == 40 and counts.completed + counts.failed == 40 and counts.failed > 0
    # every line has a result: the bar is full, the failed part the lines that never ran
    expect(row.locator(".bar")).to_have_attribute("aria-valuenow", "40")
    done_text = f"40 of 40 done · {counts.failed} failed"
    expect(row.locator(".counts")).to_have_text(done_text)
    with page.expect_download() as info:
        row.locator("button.errors").click()
    errors = [json.loads(x) for x in Path(info.value.path()).read_text().splitlines()]
    assert len(errors) == counts.failed
    assert {x["error"]["code"] for x in errors} == {"batch_cancelled"}


def test_refused_and_unreadable_uploads_show_the_api_errors(
    page: Any, base: str, oai: openai.OpenAI
) -> None:
    from playwright.sync_api import expect

    open_jobs(page, base)
    error = page.locator("#jobs-error")
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url) if r.url.endswith("/v1/files") else None)

    # nothing chosen: said in the page, nothing sent
    page.click("#jobs-submit")
    expect(error.locator(".msg")).to_have_text("Choose a .jsonl file or paste its lines first.")
    assert uploads == []

    # an endpoint the gateway does not batch: the API's 400, naming the field
    rows = [line("e1", "/v1/embeddings", {"model": "echo-text", "input": "x"})]
    page.set_input_files(
        "#jobs-file",
        {"name": "embed.jsonl", "mimeType": "application/jsonl", "buffer": jsonl(rows).encode()},
    )
    expect(page.locator("#jobs-endpoint")).to_have_value("/v1/embeddings")
    page.click("#jobs-submit")
    expect(error.locator(".msg")).to_contain_text(
        "endpoint '/v1/embeddings' is not batched here; use one of /v1/chat/completions"
    )
    expect(error.locator(".detail")).to_contain_text("HTTP 400")
    expect(error.locator(".detail")).to_contain_text("param: endpoint")
    expect(page.locator("#jobs-endpoint")).to_have_attribute("aria-invalid", "true")
    assert uploads == [base + "/v1/files"]
    # the refused batch's upload is deleted again
    assert wait_until(
        lambda: all(f.filename != "embed.jsonl" for f in oai.files.list(purpose="batch")), 30
    )

    # not UTF-8 text: taken, then the batch fails validation with the API's reason
    page.fill("#jobs-endpoint", COMPLETIONS)
    expect(page.locator("#jobs-endpoint")).not_to_have_attribute("aria-invalid", "true")
    png = b"\x89PNG\r\n\x1a\n\xff\xfe\x00"
    page.set_input_files(
        "#jobs-file", {"name": "picture.jsonl", "mimeType": "image/png", "buffer": png}
    )
    page.click("#jobs-submit")
    row = submitted(page)
    expect(error).to_be_hidden()
    expect(row).to_have_attribute("data-status", "failed", timeout=RUN_MS)
    problem = row.locator(".batch-errors li")
    expect(problem.locator(".msg")).to_have_text("the input file is not UTF-8 text")
    expect(problem.locator(".detail")).to_have_text("invalid_file")
    expect(row.locator(".counts")).to_have_text("no requests")
    expect(row.locator("button.output")).to_be_hidden()

    # lines that are not JSON: each is an error line of a completed batch
    good = line("ok", COMPLETIONS, {"model": "echo-text", "prompt": "a b", "max_tokens": 2})
    page.fill("#jobs-text", jsonl([good, "this is not json"]))
    page.click("#jobs-submit")
    row = submitted(page)
    expect(row).to_have_attribute("data-status", "completed", timeout=RUN_MS)
    expect(row.locator(".counts")).to_have_text("2 of 2 done · 1 failed")
    assert row.locator(".bar-failed").evaluate("e => e.style.width") == "50%"
    with page.expect_download() as info:
        row.locator("button.errors").click()
    (bad,) = [json.loads(x) for x in Path(info.value.path()).read_text().splitlines()]
    assert bad["error"]["code"] == "invalid_json_line"


def test_the_list_pages_newest_first(page: Any, base: str, oai: openai.OpenAI) -> None:
    from playwright.sync_api import expect

    rows = [line("one", COMPLETIONS, {"model": "echo-text", "prompt": "a", "max_tokens": 1})]
    upload = oai.files.create(file=("one.jsonl", jsonl(rows).encode()), purpose="batch")
    for _ in range(PAGE + 2):
        oai.batches.create(
            input_file_id=upload.id, endpoint=COMPLETIONS, completion_window="24h"
        )  # fmt: skip
    listed = [b.id for b in oai.batches.list(limit=2 * PAGE).data]  # newest first, one page
    open_jobs(page, base)
    items = page.locator("#jobs-list > li")
    expect(items).to_have_count(PAGE)
    assert [items.nth(i).get_attribute("data-id") for i in range(PAGE)] == listed[:PAGE]
    more = page.locator("#jobs-more")
    more.focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(len(listed))
    assert [items.nth(i).get_attribute("data-id") for i in range(len(listed))] == listed
    expect(items.nth(PAGE)).to_be_focused()  # the first of the new page
    # every one of the new batches is seen to finish without a reload
    for i in range(PAGE + 2):
        expect(items.nth(i)).to_have_attribute("data-status", "completed", timeout=RUN_MS)
