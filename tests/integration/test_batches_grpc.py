"""The Batch API over gRPC on the real stack: aigc.v1 Batches and google.longrunning.Operations
through the SDK (lines given inline, waiting on the operation, results read over gRPC, cancel,
delete), and `aigc batch submit --wait` / `aigc batch results` run as commands. The same job
store as /v1/batches (tests/integration/test_batches.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2
from google.rpc import code_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from aigc.client import Client, batch_metadata, batch_of, batch_status
from aigc.v1 import batches_pb2
from aigc.wire import BATCHES_SERVICE, OPERATIONS_SERVICE
from tests.conditions import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"


def chat(text: str, model: str = "echo-text", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def finished(c: Client, name: str, timeout_s: float = 120) -> operations_pb2.Operation:
    """WaitOperation (the server returns once the batch is done), bounded."""
    end = time.monotonic() + timeout_s
    op = c.wait_operation(name, 10)
    while not op.done and time.monotonic() < end:
        op = c.wait_operation(name, 10)
    assert op.done, op
    return op


def lines_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(x) for x in data.decode().splitlines()]


def test_inline_lines_over_grpc(client: Client) -> None:
    lines: list[Any] = [(f"ok-{i}", chat(f"say {i} words")) for i in range(4)]
    lines.append(("tiny", chat("Hi", model="tiny", max_tokens=4)))
    lines.append(("no-model", chat("x", model="nope")))
    op = client.submit_batch(lines, metadata={"job": "grpc"})
    assert op.name.startswith("operations/batch_") and not op.done
    done = finished(client, op.name)
    assert batch_status(done) == "completed" and done.HasField("response")
    batch = batch_of(done)
    assert batch is not None and batch.metadata == {"job": "grpc"}
    counts = batch_metadata(done).request_counts
    assert (counts.total, counts.completed, counts.failed) == (6, 5, 1)
    out = lines_of(client.file_content(batch.output_file_id))
    assert [x["custom_id"] for x in out] == [f"ok-{i}" for i in range(4)] + ["tiny"]
    assert out[2]["response"]["body"]["choices"][0]["message"]["content"] == "say 2 words"
    (error,) = lines_of(client.file_content(batch.error_file_id))
    assert error["custom_id"] == "no-model" and error["response"]["status_code"] == 404
    listed = client.list_operations("status = completed", page_size=100).operations
    assert op.name in {o.name for o in listed}


def test_cancel_a_running_batch_then_delete_it(client: Client) -> None:
    lines = [
        (f"s{i}", {"model": "slow-text", "prompt": "a b c d", "max_tokens": 4}) for i in range(40)
    ]
    op = client.submit_batch(lines, endpoint="/v1/completions")

    def started() -> bool:
        return batch_metadata(client.get_operation(op.name)).request_counts.completed > 0

    assert wait_until(started, 60)
    with pytest.raises(grpc.RpcError) as err:  # still running
        client.delete_operation(op.name)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    client.cancel_operation(op.name)
    done = finished(client, op.name)
    assert batch_status(done) == "cancelled" and done.error.code == code_pb2.CANCELLED
    meta = batch_metadata(done)
    assert meta.times.cancelled_at and meta.status == batches_pb2.BATCH_STATUS_CANCELLED
    out = lines_of(client.file_content(meta.output_file_id))
    errors = lines_of(client.file_content(meta.error_file_id))
    assert sorted(x["custom_id"] for x in out + errors) == sorted(f"s{i}" for i in range(40))
    assert out and errors and all(x["error"]["code"] == "batch_cancelled" for x in errors)
    client.delete_operation(op.name)
    for call, arg in (
        (client.get_operation, op.name),
        (client.file_content, meta.output_file_id),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(arg)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def aigc(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The `aigc` command in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "aigc.cli", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_cli_submit_wait_and_results(target: str, tmp_path: Path) -> None:
    rows = [
        {"custom_id": f"q{i}", "method": "POST", "url": CHAT, "body": chat(f"echo {i}")}
        for i in range(5)
    ]
    rows.append(
        {"custom_id": "bad", "method": "POST", "url": CHAT, "body": chat("x", model="nope")}
    )
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = ("--target", target)
    submitted = aigc("batch", "submit", str(requests), "--wait", "--poll", "0.5", *t)
    assert submitted.returncode == 0, submitted.stderr
    batch_id, summary = submitted.stdout.splitlines()
    assert summary == f"{batch_id} completed: 5 completed, 1 failed of 6"
    assert submitted.stderr.splitlines()[-1].endswith("6/6, 1 failed completed")
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    results = aigc("batch", "results", batch_id, "-o", str(out), "--errors", str(err), *t)
    assert results.returncode == 0, results.stderr
    assert results.stdout.strip() == f"wrote {out} (5 lines), {err} (1 line)"
    got = lines_of(out.read_bytes())
    assert [x["custom_id"] for x in got] == [f"q{i}" for i in range(5)]
    assert got[3]["response"]["body"]["choices"][0]["message"]["content"] == "echo 3"
    assert [x["custom_id"] for x in lines_of(err.read_bytes())] == ["bad"]
    status = aigc("batch", "status", batch_id, *t)
    assert status.returncode == 0 and "status      completed" in status.stdout


def test_reflection_lists_batches_and_operations(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert {BATCHES_SERVICE, OPERATIONS_SERVICE} <= set(services)
