"""The OpenAI Files and Batches API on the real stack, through the real `openai` client:
upload, create, poll, cancel, read the output and error files; bad input by name. The job
store is the stack's SQLite (tests/tiny_models.py: in the test's own directory)."""

from __future__ import annotations

import base64
import io
import json
import wave
from typing import Any

import openai
import pytest

from tests.conditions import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oai(stack: Any) -> openai.OpenAI:
    base = f"http://127.0.0.1:{stack.gateway.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def finished(oai: openai.OpenAI, batch_id: str, timeout_s: float = 120) -> Any:
    done = ("completed", "failed", "expired", "cancelled")
    assert wait_until(
        lambda: oai.batches.retrieve(batch_id).status in done, timeout_s, step_s=0.2
    ), oai.batches.retrieve(batch_id)
    return oai.batches.retrieve(batch_id)


def lines_of(oai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in oai.files.content(file_id).text.splitlines()]


def test_a_chat_batch_with_good_and_bad_lines(oai: openai.OpenAI) -> None:
    chat = "/v1/chat/completions"
    rows: list[Any] = [
        line(
            f"ok-{i}",
            chat,
            {"model": "echo-text", "messages": [{"role": "user", "content": f"say {i} words"}]},
        )
        for i in range(6)
    ]
    rows += [
        line(
            "tiny",
            chat,
            {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        ),
        line("no-model", chat, {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        line(
            "bad-temp",
            chat,
            {
                "model": "echo-text",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 9,
            },
        ),
        line("wrong-url", "/v1/completions", {"model": "echo-text", "prompt": "x"}),
        "this is not json",
    ]
    upload = oai.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
    assert upload.purpose == "batch" and upload.bytes == len(jsonl(rows))
    assert oai.files.retrieve(upload.id).filename == "in.jsonl"
    batch = oai.batches.create(
        input_file_id=upload.id, endpoint=chat, completion_window="24h",
        metadata={"job": "nightly"},
    )  # fmt: skip
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    done = finished(oai, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.total == 11
    assert done.request_counts.completed == 7 and done.request_counts.failed == 4
    assert done.completed_at and done.in_progress_at and done.finalizing_at
    out = lines_of(oai, done.output_file_id)
    assert [x["custom_id"] for x in out] == [f"ok-{i}" for i in range(6)] + ["tiny"]
    for x in out:
        assert x["error"] is None and x["response"]["status_code"] == 200
        body = x["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert out[2]["response"]["body"]["choices"][0]["message"]["content"] == "say 2 words"
    errors = {x["custom_id"]: x for x in lines_of(oai, done.error_file_id)}
    assert set(errors) == {"no-model", "bad-temp", "wrong-url", ""}
    assert errors["no-model"]["response"]["status_code"] == 404
    assert errors["bad-temp"]["response"]["body"]["error"]["param"] == "temperature"
    assert errors["wrong-url"]["error"]["code"] == "invalid_url"
    assert errors[""]["error"]["code"] == "invalid_json_line"
    listed = [b.id for b in oai.batches.list(limit=100)]
    assert batch.id in listed
    with pytest.raises(openai.BadRequestError) as err:  # a finished batch
        oai.batches.cancel(batch.id)
    assert err.value.body["param"] == "batch_id"


def test_images_and_speech_lines(oai: openai.OpenAI) -> None:
    rows = [line("img", "/v1/images/generations", {"model": "echo-image", "prompt": "x", "n": 2})]
    upload = oai.files.create(file=("img.jsonl", jsonl(rows)), purpose="batch")
    done = finished(
        oai,
        oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h"
        ).id,
    )
    (out,) = lines_of(oai, done.output_file_id)
    images = out["response"]["body"]["data"]
    assert len(images) == 2 and base64.b64decode(images[0]["b64_json"])[:4] == b"\x89PNG"
    rows = [line("hi", "/v1/audio/speech", {"model": "speech", "input": "Hello there."})]
    upload = oai.files.create(file=("say.jsonl", jsonl(rows)), purpose="batch")
    done = finished(
        oai,
        oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/audio/speech", completion_window="24h"
        ).id,
    )
    (out,) = lines_of(oai, done.output_file_id)
    body = out["response"]["body"]
    with wave.open(io.BytesIO(base64.b64decode(body["audio"]))) as w:
        assert w.getframerate() == body["sample_rate"] and w.getnframes() > 1000


def test_duplicate_custom_ids_fail_the_batch(oai: openai.OpenAI) -> None:
    body = {"model": "echo-text", "prompt": "a"}
    rows = [line("same", "/v1/completions", body), line("same", "/v1/completions", body)]
    upload = oai.files.create(file=("dup.jsonl", jsonl(rows)), purpose="batch")
    done = finished(
        oai,
        oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/completions", completion_window="24h"
        ).id,
    )
    assert done.status == "failed"
    assert done.errors.data[0].code == "duplicate_custom_id" and done.errors.data[0].line == 2


def test_cancel_a_running_batch_keeps_what_ran(oai: openai.OpenAI) -> None:
    rows = [
        line(
            f"s{i}", "/v1/completions", {"model": "slow-text", "prompt": "a b c d", "max_tokens": 4}
        )
        for i in range(40)
    ]
    upload = oai.files.create(file=("slow.jsonl", jsonl(rows)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=upload.id, endpoint="/v1/completions", completion_window="24h"
    )
    assert wait_until(lambda: oai.batches.retrieve(batch.id).request_counts.completed > 0, 60)
    assert oai.batches.cancel(batch.id).status == "cancelling"
    done = finished(oai, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    out, errors = lines_of(oai, done.output_file_id), lines_of(oai, done.error_file_id)
    assert len(out) + len(errors) == 40  # every line: one output or one error
    assert sorted(x["custom_id"] for x in out + errors) == sorted(f"s{i}" for i in range(40))
    assert out and all(x["error"]["code"] == "batch_cancelled" for x in errors)


def test_an_upload_over_the_limit_is_a_413(oai: openai.OpenAI) -> None:
    """The stack's limit is 1 MiB (tests/tiny_models.py)."""
    with pytest.raises(openai.APIStatusError) as err:
        oai.files.create(file=("big.jsonl", b"x" * (2**20 + 2**17)), purpose="batch")
    assert err.value.status_code == 413


def test_bad_requests_name_their_field(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    assert err.value.body["param"] == "purpose"
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(
            input_file_id="file-nope", endpoint="/v1/completions", completion_window="24h"
        )
    upload = oai.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError) as err:
        oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
        )  # type: ignore[arg-type]
    assert err.value.body["param"] == "endpoint"
    with pytest.raises(openai.BadRequestError) as err:
        oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/completions", completion_window="1h"
        )  # type: ignore[arg-type]
    assert err.value.body["param"] == "completion_window"
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")
    assert oai.files.delete(upload.id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(upload.id)
