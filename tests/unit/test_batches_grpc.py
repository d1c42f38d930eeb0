"""aigc.v1 Batches and google.longrunning.Operations without Ray: the servicers on an
in-process grpc.aio server over a real job store (SQLite in the test's directory) and a real
batch runner whose lines go to a stand-in `execute` (no model), driven through the SDK and the
CLI; /v1/files and /v1/batches over the same store, through the `openai` client."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from starlette.applications import Starlette

from aigc import cli
from aigc.client import AsyncClient, Client, batch_metadata, batch_of, batch_status, upload_requests
from aigc.v1 import batches_pb2
from core.config import JobsConfig
from core.errors import Unauthenticated
from gateway.grpc_api import jobs as grpc_jobs
from gateway.grpc_api.auth import AuthInterceptor
from gateway.grpc_api.decode import DecodeInterceptor
from gateway.jobs.runner import BatchRunner
from gateway.jobs.store import INLINE_PURPOSE, JobStore
from gateway.openai_api.jobs import JobsApi
from gateway.server import http_server
from tests.conftest import LoopThread

CHAT = "/v1/chat/completions"


class Backend:
    """The runner's `execute`: echoes each body; model "nope" is a 404, model "held" waits
    until `release()`."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.held: asyncio.Event | None = None

    async def execute(
        self, endpoint: str, body: dict[str, Any], request_id: str
    ) -> tuple[int, dict[str, Any], float | None]:
        self.seen.append(body)
        if body.get("model") == "held":
            if self.held is None:
                self.held = asyncio.Event()
            await self.held.wait()
        if body.get("model") == "nope":
            return 404, {"error": {"message": "no model", "param": "model"}}, None
        return 200, {"object": "chat.completion", "echo": body}, None


class Jobs:
    def __init__(self, root: Path) -> None:
        self.loop = LoopThread()
        self.backend = Backend()
        self.config = JobsConfig(state_dir=str(root), max_file_mb=2, lease_s=5.0)
        self.store = JobStore(self.config.url())
        self.store.migrate()
        self.port = self.loop.run(self._start())
        self.target = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self.runner = BatchRunner(
            self.store, self.backend.execute, lease_s=5.0, poll_s=0.05, concurrency=2
        )
        self.server = grpc.aio.server(interceptors=[DecodeInterceptor()])
        grpc_jobs.add_to_server(self.server, self.config, self.store, self.runner)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.runner.start()
        # /v1/files and /v1/batches over the same store and runner (no model behind either)
        routes = JobsApi(self.config, self.store, self.runner, lambda header: None).routes()
        self.http = http_server(Starlette(routes=routes), "127.0.0.1", 0, None)
        self.http_task = asyncio.ensure_future(self.http.serve())
        while not self.http.started:
            if self.http_task.done():
                self.http_task.result()
            await asyncio.sleep(0.01)
        self.http_base = f"http://127.0.0.1:{self.http.servers[0].sockets[0].getsockname()[1]}/v1"
        return port

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.http_base, api_key="none", max_retries=0, timeout=30)

    def release(self) -> None:
        async def go() -> None:
            if self.backend.held is not None:
                self.backend.held.set()

        self.loop.run(go())

    def close(self) -> None:
        self.release()
        self.http.should_exit = True

        async def http_stopped() -> None:
            await self.http_task

        self.loop.run(http_stopped(), timeout=30)
        self.loop.run(self.runner.stop())
        self.loop.run(self.server.stop(0))
        self.loop.close()
        self.store.close()


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    j = Jobs(tmp_path_factory.mktemp("jobs"))
    yield j
    j.close()


@pytest.fixture()
def c(jobs: Jobs) -> Iterator[Client]:
    with Client(jobs.target, timeout=30) as client:
        yield client


def chat(text: str, model: str = "echo-text", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def field_of(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        found = error_details_pb2.BadRequest()
        if detail.Unpack(found):
            return str(found.field_violations[0].field)
    return ""


def refused(fn: Any, *args: Any, **kw: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kw)
    return err.value.code(), field_of(err.value)  # type: ignore[attr-defined]


def lines_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(x) for x in data.decode().splitlines()]


def test_inline_lines_run_to_a_completed_operation(c: Client, jobs: Jobs) -> None:
    struct = struct_pb2.Struct()
    struct.update(chat("as a struct", max_tokens=4))
    lines: list[Any] = [
        ("a", chat("first")),
        {"custom_id": "b", "method": "POST", "url": CHAT, "body": chat("second")},
        batches_pb2.BatchLine(custom_id="c", body_struct=struct),
        ("d", json.dumps(chat("json text"))),
        ("e", chat("x", model="nope")),
    ]
    op = c.submit_batch(lines, metadata={"job": "unit"})
    meta = batch_metadata(op)
    assert op.name == f"operations/{meta.batch_id}" and not op.done
    assert meta.endpoint == CHAT and batch_status(op) == "validating"
    done = c.wait_operation(op.name, 20)
    assert done.done and done.HasField("response") and not done.HasField("error")
    batch = batch_of(done)
    assert batch is not None and batch.status == batches_pb2.BATCH_STATUS_COMPLETED
    assert batch.metadata == {"job": "unit"} and batch.endpoint == CHAT
    counts = batch_metadata(done).request_counts
    assert (counts.total, counts.completed, counts.failed) == (5, 4, 1)
    assert batch.times.created_at and batch.times.completed_at and not batch.times.cancelled_at
    out = lines_of(c.file_content(batch.output_file_id))
    assert [x["custom_id"] for x in out] == ["a", "b", "c", "d"]
    by_id = {x["custom_id"]: x["response"]["body"]["echo"] for x in out}
    assert by_id["c"]["max_tokens"] == 4 and isinstance(by_id["c"]["max_tokens"], int)
    assert by_id["d"]["messages"][0]["content"] == "json text"
    (error,) = lines_of(c.file_content(batch.error_file_id))
    assert error["custom_id"] == "e" and error["response"]["status_code"] == 404
    assert c.get_operation(meta.batch_id) == done  # by its batch id too
    input_file = jobs.store.get_file(batch.input_file_id)
    assert input_file is not None and input_file.purpose == INLINE_PURPOSE


def test_a_file_uploaded_in_pieces_and_read_back(c: Client, tmp_path: Path) -> None:
    rows = [{"custom_id": f"r{i}", "url": CHAT, "body": chat("y" * 9000)} for i in range(150)]
    rows.append({"custom_id": "bad-url", "url": "/v1/completions", "body": chat("x")})
    data = ("\n".join(json.dumps(r) for r in rows) + "\nnot json\n").encode()
    assert 2**20 < len(data) <= 2 * 2**20  # two upload pieces, within max_file_mb
    path = tmp_path / "requests.jsonl"
    path.write_bytes(data)
    uploaded = c.upload_file(path)
    assert uploaded.purpose == "batch" and uploaded.filename == "requests.jsonl"
    assert uploaded.bytes == len(data) and c.file_content(uploaded.id) == data
    chunks = list(c.file_chunks(uploaded.id))
    assert len(chunks) == 2 and chunks[0].total_bytes == len(data)
    op = c.wait_operation(c.submit_batch(path).name, 30)
    assert batch_status(op) == "completed"
    meta = batch_metadata(op)
    assert (meta.request_counts.completed, meta.request_counts.failed) == (150, 2)
    codes = sorted(x["error"]["code"] for x in lines_of(c.file_content(meta.error_file_id)))
    assert codes == ["invalid_json_line", "invalid_url"]


def test_bad_requests_name_their_field(c: Client, jobs: Jobs) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert refused(c.create_batch, [("a", chat("x")), ("a", chat("y"))]) == (
        invalid,
        "lines[1].custom_id",
    )
    assert refused(c.create_batch, [("", chat("x"))]) == (invalid, "lines[0].custom_id")
    assert refused(c.create_batch, [("a", "[1, 2]")]) == (invalid, "lines[0].body_json")
    assert refused(c.create_batch, [("a", "{not json")]) == (invalid, "lines[0].body_json")
    assert refused(c.create_batch, [batches_pb2.BatchLine(custom_id="a")]) == (
        invalid,
        "lines[0].body_json",
    )
    assert refused(c.create_batch, []) == (invalid, "lines")
    assert refused(c.create_batch, [("a", chat("x"))], endpoint="/v1/embeddings") == (
        invalid,
        "endpoint",
    )
    assert refused(c.create_batch, [("a", chat("x"))], completion_window="1h") == (
        invalid,
        "completion_window",
    )
    many = {str(i): "v" for i in range(17)}
    assert refused(c.create_batch, [("a", chat("x"))], metadata=many) == (invalid, "metadata")
    assert refused(c.create_batch, input_file_id="file-nope") == (
        grpc.StatusCode.NOT_FOUND,
        "input_file_id",
    )
    uploaded = c.upload_file(b'{"custom_id": "a"}\n')
    assert refused(c.create_batch, [("a", chat("x"))], input_file_id=uploaded.id) == (
        invalid,
        "input_file_id",
    )
    with pytest.raises(ValueError, match="url"):
        c.create_batch([{"custom_id": "a", "url": "/v1/completions", "body": {}}])
    assert refused(c.upload_file, b"x", purpose="fine-tune") == (invalid, "purpose")
    too_big = b"x" * (jobs.config.max_file_mb * 2**20 + 1)
    assert refused(c.upload_file, too_big) == (invalid, "data")
    assert refused(c.stubs.batches.UploadFile, iter(())) == (invalid, "purpose")
    big_line = [("a", chat("x" * (2**21)))]  # inline lines past max_file_mb
    assert refused(c.create_batch, big_line) == (invalid, "lines")
    assert refused(c.get_operation, "operations/batch_nope") == (grpc.StatusCode.NOT_FOUND, "name")
    assert refused(c.get_operation, "operations/") == (invalid, "name")
    assert refused(c.file_content, "file-nope") == (grpc.StatusCode.NOT_FOUND, "file_id")
    assert refused(c.list_operations, "colour = red") == (invalid, "filter")
    assert refused(c.list_operations, "status = done") == (invalid, "filter")
    assert refused(c.list_operations, page_token="batch_nope") == (invalid, "page_token")


def test_a_failed_batch_is_an_operation_error(c: Client) -> None:
    dup = b'{"custom_id": "x", "url": "/v1/completions", "body": {}}\n' * 2
    op = c.wait_operation(c.submit_batch(dup, endpoint="/v1/completions").name, 20)
    assert op.done and op.HasField("error") and not op.HasField("response")
    assert op.error.code == code_pb2.INVALID_ARGUMENT and "line 2" in op.error.message
    batch = batch_of(op)
    assert batch is not None and batch.status == batches_pb2.BATCH_STATUS_FAILED
    assert batch.errors[0].code == "duplicate_custom_id" and batch.errors[0].line == 2


def test_cancel_keeps_what_ran_and_delete_removes_a_finished_batch(c: Client, jobs: Jobs) -> None:
    lines = [("first", chat("runs"))] + [(f"h{i}", chat("waits", model="held")) for i in range(3)]
    op = c.submit_batch(lines)
    name = op.name

    def started() -> bool:
        return batch_metadata(c.get_operation(name)).request_counts.completed == 1

    assert c.wait_operation(name, 0).done is False  # timeout 0: as it is now
    assert wait_for(started)
    assert refused(c.delete_operation, name) == (grpc.StatusCode.FAILED_PRECONDITION, "name")
    c.cancel_operation(name)
    assert batch_status(c.get_operation(name)) == "cancelling"
    c.cancel_operation(name)  # again: still fine
    jobs.release()  # the held lines running finish; h2 (no room to start) never runs
    done = c.wait_operation(name, 20)
    assert batch_status(done) == "cancelled" and done.error.code == code_pb2.CANCELLED
    meta = batch_metadata(done)
    out = lines_of(c.file_content(meta.output_file_id))
    errors = lines_of(c.file_content(meta.error_file_id)) if meta.error_file_id else []
    assert sorted(x["custom_id"] for x in out + errors) == ["first", "h0", "h1", "h2"]
    assert "h2" in {x["custom_id"] for x in errors} and "first" in {x["custom_id"] for x in out}
    assert all(x["error"]["code"] == "batch_cancelled" for x in errors)
    c.cancel_operation(name)  # a cancelled batch: as over HTTP, no error
    batch = batch_of(done)
    assert batch is not None
    c.delete_operation(name)
    assert refused(c.get_operation, name) == (grpc.StatusCode.NOT_FOUND, "name")
    assert refused(c.delete_operation, name) == (grpc.StatusCode.NOT_FOUND, "name")
    assert refused(c.file_content, meta.output_file_id)[0] == grpc.StatusCode.NOT_FOUND
    assert jobs.store.get_file(batch.input_file_id) is None  # the inline lines' file too


def test_deleting_a_batch_keeps_an_uploaded_input_file(c: Client, jobs: Jobs) -> None:
    uploaded = c.upload_file(b'{"custom_id": "a", "url": "/v1/chat/completions", "body": {}}\n')
    op = c.wait_operation(c.create_batch(input_file_id=uploaded.id).name, 20)
    assert batch_status(op) == "completed"
    assert refused(c.cancel_operation, op.name) == (grpc.StatusCode.FAILED_PRECONDITION, "name")
    c.delete_operation(op.name)
    assert c.file_content(uploaded.id).startswith(b'{"custom_id"')


def test_list_filters_and_pages(c: Client) -> None:
    names = [c.wait_operation(c.submit_batch([("a", chat("x"))]).name, 20).name for _ in range(3)]
    assert all(c.get_operation(n).done for n in names)
    listed = c.list_operations("done = true", page_size=100).operations
    assert set(names) <= {o.name for o in listed}
    assert not c.list_operations("done = false AND status = completed").operations
    completed = c.list_operations("status = BATCH_STATUS_COMPLETED", page_size=100).operations
    assert set(names) <= {o.name for o in completed}
    assert all(batch_status(o) == "completed" for o in completed)
    seen, token = [], ""
    while True:
        page = c.list_operations("status = completed", page_size=2, page_token=token)
        assert len(page.operations) <= 2
        seen += [o.name for o in page.operations]
        token = page.next_page_token
        if not token:
            break
    assert seen == [o.name for o in c.list_operations("status = completed").operations]
    assert len(seen) == len(set(seen)) and set(names) <= set(seen)


def test_upload_requests_split_in_pieces() -> None:
    pieces = list(upload_requests(b"x" * (2**20 + 5), filename="f.jsonl"))
    assert [len(p.data) for p in pieces] == [2**20, 5]
    assert (pieces[0].purpose, pieces[0].filename) == ("batch", "f.jsonl")
    assert not pieces[1].purpose and not pieces[1].filename


@pytest.mark.parametrize(
    ("text", "statuses"),
    [
        ("", None),
        ("done = true", ["cancelled", "completed", "expired", "failed"]),
        ("done=false", ["cancelling", "finalizing", "in_progress", "validating"]),
        ('status = "in_progress"', ["in_progress"]),
        ("status = BATCH_STATUS_FAILED", ["failed"]),
        ("done = true AND status != completed", ["cancelled", "expired", "failed"]),
        ("done = true and status = validating", []),
    ],
)
def test_list_filter(text: str, statuses: list[str] | None) -> None:
    assert grpc_jobs.list_filter(text) == statuses


def test_struct_numbers_that_are_whole_go_on_as_integers() -> None:
    struct = struct_pb2.Struct()
    struct.update({"max_tokens": 4, "temperature": 0.5, "stop": ["a"], "x": {"n": 2}})
    body = grpc_jobs.line_body(batches_pb2.BatchLine(custom_id="a", body_struct=struct), 0)
    assert body == {"max_tokens": 4, "temperature": 0.5, "stop": ["a"], "x": {"n": 2}}
    assert isinstance(body["max_tokens"], int) and isinstance(body["x"]["n"], int)


def wait_for(predicate: Any) -> bool:
    from tests.conditions import wait_until

    return wait_until(predicate, 20)


# ---- the CLI -----------------------------------------------------------------------------
def test_cli_batch_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = tmp_path / "in.jsonl"
    requests.write_text("{}\n")
    args = cli.build_parser().parse_args(
        ["batch", "submit", str(requests), "--endpoint", "/v1/completions", "--wait",
         "--metadata", "job=nightly", "--metadata", "k=a=b", "--target", "h:1"]
    )  # fmt: skip
    assert args.fn is cli.cmd_batch_submit and args.file == requests and args.wait
    assert args.endpoint == "/v1/completions" and dict(args.metadata) == {
        "job": "nightly",
        "k": "a=b",
    }
    assert args.target == "h:1" and args.poll == 1.0
    args = cli.build_parser().parse_args(["batch", "submit", str(requests)])
    assert args.endpoint == "/v1/chat/completions" and not args.wait and args.metadata is None
    args = cli.build_parser().parse_args(["batch", "results", "b1", "-o", "o.jsonl"])
    assert (args.fn, args.id, args.output, args.errors) == (
        cli.cmd_batch_results,
        "b1",
        "o.jsonl",
        None,
    )
    args = cli.build_parser().parse_args(["batch", "list", "--filter", "done = false"])
    assert (args.filter, args.limit) == ("done = false", 20)
    for argv in (
        ["batch"],
        ["batch", "submit", str(tmp_path / "missing.jsonl")],
        ["batch", "submit", str(requests), "--metadata", "novalue"],
        ["batch", "results", "b1"],  # -o is required
        ["batch", "status"],
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.build_parser().parse_args(argv)
        assert exit_.value.code == 2, argv


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def metadata(total: int, completed: int, failed: int, status: str) -> batches_pb2.BatchMetadata:
    return batches_pb2.BatchMetadata(
        status=batches_pb2.BatchStatus.Value(f"BATCH_STATUS_{status.upper()}"),
        request_counts=batches_pb2.RequestCounts(total=total, completed=completed, failed=failed),
    )


def test_progress_bar() -> None:
    plain = Stream(tty=False)
    bar = cli.Progress(plain, width=10)
    for meta in (
        metadata(0, 0, 0, "validating"),
        metadata(4, 1, 0, "in_progress"),
        metadata(4, 1, 0, "in_progress"),  # no change: no line
        metadata(4, 3, 1, "completed"),
    ):
        bar.show(meta)
    bar.end()
    assert plain.getvalue().splitlines() == [
        "[..........] 0/0 validating",
        "[##........] 1/4 in_progress",
        "[##########] 4/4, 1 failed completed",
    ]
    tty = Stream(tty=True)
    bar = cli.Progress(tty, width=4)
    bar.show(metadata(2, 0, 0, "in_progress"))
    bar.show(metadata(2, 2, 0, "completed"))
    bar.end()
    assert tty.getvalue() == "\r[....] 0/2 in_progress\r[####] 2/2 completed  \n"


def test_cli_batch_commands(jobs: Jobs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = ["--target", jobs.target]
    rows = [{"custom_id": f"q{i}", "url": CHAT, "body": chat(f"n{i}")} for i in range(3)]
    rows.append({"custom_id": "bad", "url": CHAT, "body": chat("x", model="nope")})
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["batch", "submit", str(requests), "--wait", "--poll", "0.2", *t]) == 0
    out, err = capsys.readouterr()
    batch_id, summary = out.splitlines()
    assert (
        batch_id.startswith("batch_")
        and summary == f"{batch_id} completed: 3 completed, 1 failed of 4"
    )
    assert err.splitlines()[-1] == "[" + "#" * 30 + "] 4/4, 1 failed completed"
    assert cli.main(["batch", "results", batch_id, "-o", str(tmp_path / "o.jsonl"), *t]) == 0
    out, _ = capsys.readouterr()
    record = jobs.store.get_batch(batch_id)
    assert record is not None
    assert out.splitlines() == [
        f"wrote {tmp_path / 'o.jsonl'} (3 lines)",
        f"1 error line in {record.error_file_id} (--errors FILE writes them)",
    ]
    outputs = lines_of((tmp_path / "o.jsonl").read_bytes())
    assert [x["custom_id"] for x in outputs] == ["q0", "q1", "q2"]
    argv = ["batch", "results", batch_id, "-o", str(tmp_path / "o2.jsonl"), "--errors",
            str(tmp_path / "e.jsonl"), *t]  # fmt: skip
    assert cli.main(argv) == 0
    assert [x["custom_id"] for x in lines_of((tmp_path / "e.jsonl").read_bytes())] == ["bad"]
    capsys.readouterr()
    assert cli.main(["batch", "status", batch_id, *t]) == 0
    out, _ = capsys.readouterr()
    assert f"batch       {batch_id}  (operations/{batch_id})" in out
    assert "status      completed" in out and "requests    4 total, 3 completed, 1 failed" in out
    assert cli.main(["batch", "list", "--limit", "3", "--filter", "done = true", *t]) == 0
    out, _ = capsys.readouterr()
    header, *listed = out.splitlines()
    assert header.split()[:2] == ["BATCH", "STATUS"] and 1 <= len(listed) <= 3
    # batches of the same second list in id order, not creation order (created_at is whole
    # seconds): this file's other batches may come first, so look past the first three
    assert cli.main(["batch", "list", "--limit", "100", "--filter", "done = true", *t]) == 0
    out, _ = capsys.readouterr()
    listed = out.splitlines()[1:]
    assert [batch_id, "completed", CHAT, "4/4", "1"] in [row.split()[:5] for row in listed]
    assert cli.main(["batch", "cancel", batch_id, *t]) == 2  # finished
    _, err = capsys.readouterr()
    assert err.startswith("aigc: FAILED_PRECONDITION: ") and "only a validating" in err
    assert cli.main(["batch", "delete", batch_id, *t]) == 0
    assert cli.main(["batch", "status", batch_id, *t]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("aigc: NOT_FOUND: ")
    failing = tmp_path / "dup.jsonl"
    failing.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    assert cli.main(["batch", "submit", str(failing), "--wait", "--poll", "0.2", *t]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines()[1].endswith("failed: 0 completed, 0 failed of 0 (INVALID_ARGUMENT: "
                                        "custom_id 'q0' is on lines 1 and 2 (line 2))")  # fmt: skip


class KeyPlane:
    """What AuthInterceptor asks of the data plane: one key, "k"."""

    def authorize(self, protocol: str, header: str | None) -> None:
        if header != "Bearer k":
            raise Unauthenticated("a valid API key is required")


def test_api_keys_guard_every_batch_call(tmp_path: Path) -> None:
    loop = LoopThread()
    config = JobsConfig(state_dir=str(tmp_path))
    store = JobStore(config.url())
    store.migrate()

    async def start() -> tuple[grpc.aio.Server, int]:
        auth = AuthInterceptor(KeyPlane())  # type: ignore[arg-type]
        server = grpc.aio.server(interceptors=[auth, DecodeInterceptor()])
        grpc_jobs.add_to_server(server, config, store, None)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as c:
            calls: dict[str, Any] = {
                "UploadFile": lambda: c.upload_file(b"x" * (2 * 2**20)),  # in pieces
                "CreateBatch": lambda: c.create_batch([("a", chat("x"))]),
                "GetFileContent": lambda: c.file_content("file-x"),
                "ListOperations": lambda: c.list_operations(),
                "WaitOperation": lambda: c.wait_operation("operations/batch_x", 0),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, name  # type: ignore[attr-defined]
        with Client(f"127.0.0.1:{port}", timeout=10, api_key="k") as c:
            uploaded = c.upload_file(b"x")
            assert c.file_content(uploaded.id) == b"x"
    finally:
        loop.run(server.stop(0))
        loop.close()
        store.close()


def test_the_async_client_submits_waits_and_reads(jobs: Jobs) -> None:
    async def go() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        async with AsyncClient(jobs.target, timeout=30) as c:
            inline = await c.submit_batch([("a", chat("async"))])
            uploaded = await c.submit_batch(
                b'{"custom_id": "f", "url": "/v1/chat/completions", "body": {"model": "m"}}\n'
            )
            done = [await c.wait_operation(op.name, 20) for op in (inline, uploaded)]
            assert all(op.done for op in done)
            outputs = [
                lines_of(await c.file_content(batch_metadata(op).output_file_id)) for op in done
            ]
            listed = await c.list_operations("done = true", page_size=100)
            assert inline.name in {o.name for o in listed.operations}
            return batch_status(done[0]), outputs[0], outputs[1]

    status, inline_out, uploaded_out = asyncio.run(go())
    assert status == "completed"
    assert inline_out[0]["response"]["body"]["echo"]["messages"][0]["content"] == "async"
    assert uploaded_out[0]["custom_id"] == "f"


def test_both_front_ends_share_the_batches(c: Client, jobs: Jobs) -> None:
    oai = jobs.openai()
    op = c.wait_operation(c.submit_batch([("a", chat("shared"))], metadata={"k": "v"}).name, 20)
    meta = batch_metadata(op)
    seen = oai.batches.retrieve(meta.batch_id)
    assert seen.status == "completed" and seen.metadata == {"k": "v"}
    assert seen.request_counts is not None and seen.request_counts.completed == 1
    assert seen.output_file_id == meta.output_file_id
    assert oai.files.content(meta.output_file_id).content == c.file_content(meta.output_file_id)
    batch = batch_of(op)
    assert batch is not None and seen.input_file_id == batch.input_file_id
    with pytest.raises(openai.BadRequestError) as err:  # lines given over gRPC: not an upload
        oai.batches.create(
            input_file_id=batch.input_file_id, endpoint=CHAT, completion_window="24h"
        )
    assert err.value.body["param"] == "input_file_id"  # type: ignore[index]
    up = oai.files.create(
        file=("in.jsonl", b'{"custom_id": "h", "url": "/v1/chat/completions", "body": {}}\n'),
        purpose="batch",
    )
    created = oai.batches.create(input_file_id=up.id, endpoint=CHAT, completion_window="24h")
    assert batch_status(c.wait_operation(created.id, 20)) == "completed"  # an HTTP batch over gRPC


@pytest.mark.parametrize(
    ("create", "param"),
    [
        ({"input_file_id": ""}, "input_file_id"),
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"input_file_id": "file-nope"}, "input_file_id"),
    ],
)
def test_http_batch_checks_name_their_param(jobs: Jobs, create: dict[str, Any], param: str) -> None:
    """The checks the two front ends share (gateway/jobs/checks.py), as HTTP renders them."""
    oai = jobs.openai()
    up = oai.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
    body = {"input_file_id": up.id, "endpoint": CHAT, "completion_window": "24h", **create}
    with pytest.raises(openai.APIStatusError) as err:
        oai.post("/batches", body=body, cast_to=object)
    assert err.value.body["param"] == param  # type: ignore[index]
    assert err.value.status_code == (404 if create.get("input_file_id") == "file-nope" else 400)
