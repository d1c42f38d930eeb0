"""aigc.v1 Batches and google.longrunning.Operations over the job store: the Batch API of the
HTTP front end (gateway/openai_api/jobs.py: the same store, batch runner and checks,
gateway/jobs/checks.py) for gRPC clients.

A batch is an operation named "operations/<batch id>": its metadata a `BatchMetadata`, `done`
once the batch ends, then its response the `Batch` (completed) or its error a google.rpc.Status
(failed: the input was refused; cancelled: CANCELLED; expired: DEADLINE_EXCEEDED) that carries
the `Batch` among its details. Lines given with CreateBatch are checked here, each refusal
naming its line (`lines[3].custom_id`), and stored as an input file the batch reads like an
upload. Errors go through the one table (gateway/grpc_api/status.py).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import any_pb2, empty_pb2, json_format
from google.rpc import code_pb2, status_pb2

from aigc.v1 import batches_pb2, batches_pb2_grpc
from aigc.wire import BATCHES_SERVICE, OPERATION_PREFIX, OPERATIONS_SERVICE
from core.config import JobsConfig
from core.errors import FailedPrecondition, InvalidArgument, TooLarge
from gateway.grpc_api.servicers import _request_id
from gateway.grpc_api.status import abort
from gateway.jobs import checks
from gateway.jobs.runner import BatchRunner
from gateway.jobs.store import (
    ACTIVE,
    DONE,
    INLINE_PURPOSE,
    STAMPS,
    BatchRecord,
    FileRecord,
    JobStore,
)

STATUS: dict[str, batches_pb2.BatchStatus] = {
    s: cast(batches_pb2.BatchStatus, batches_pb2.BatchStatus.Value(f"BATCH_STATUS_{s.upper()}"))
    for s in (*ACTIVE, *DONE)
}
CHUNK = 2**20  # GetFileContent's piece
PAGE_SIZE = (20, 100)  # ListOperations: the default and the most
WAIT_S = 60.0  # WaitOperation without a timeout (and within the call's deadline)
INLINE_FILENAME = "lines.jsonl"


# ---- conversions -------------------------------------------------------------------------
def operation_name(batch_id: str) -> str:
    return OPERATION_PREFIX + batch_id


def batch_id_of(name: str, field: str = "name") -> str:
    """The batch an operation name ("operations/<batch id>") names."""
    batch_id = name.removeprefix(OPERATION_PREFIX)
    if not name.startswith(OPERATION_PREFIX) or not batch_id or "/" in batch_id:
        raise InvalidArgument(f"{field} must be operations/<batch id>, got {name!r}", field=field)
    return batch_id


def _times(record: BatchRecord) -> batches_pb2.BatchTimes:
    stamps = {f"{s}_at": v or 0 for s, v in record.stamps.items() if s in STAMPS}
    return batches_pb2.BatchTimes(
        created_at=record.created_at, expires_at=record.expires_at, **stamps
    )


def _counts(record: BatchRecord) -> batches_pb2.RequestCounts:
    return batches_pb2.RequestCounts(
        total=record.total, completed=record.completed, failed=record.failed
    )


def batch_message(record: BatchRecord) -> batches_pb2.Batch:
    return batches_pb2.Batch(
        id=record.id,
        endpoint=record.endpoint,
        input_file_id=record.input_file_id,
        completion_window=record.completion_window,
        status=STATUS.get(record.status, batches_pb2.BATCH_STATUS_UNSPECIFIED),
        request_counts=_counts(record),
        times=_times(record),
        output_file_id=record.output_file_id or "",
        error_file_id=record.error_file_id or "",
        errors=[
            batches_pb2.BatchError(
                code=str(e.get("code") or ""),
                message=str(e.get("message") or ""),
                param=str(e.get("param") or ""),
                line=int(e.get("line") or 0),
            )
            for e in record.errors or ()
        ],
        metadata=record.metadata or {},
    )


def batch_metadata(record: BatchRecord) -> batches_pb2.BatchMetadata:
    return batches_pb2.BatchMetadata(
        batch_id=record.id,
        status=STATUS.get(record.status, batches_pb2.BATCH_STATUS_UNSPECIFIED),
        request_counts=_counts(record),
        times=_times(record),
        output_file_id=record.output_file_id or "",
        error_file_id=record.error_file_id or "",
        endpoint=record.endpoint,
    )


def _packed(message: Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def batch_error(record: BatchRecord) -> status_pb2.Status:
    """The error of a batch that ended other than completed, with the Batch in its details."""
    if record.status == "cancelled":
        code, message = code_pb2.CANCELLED, f"batch {record.id} was cancelled"
    elif record.status == "expired":
        code = code_pb2.DEADLINE_EXCEEDED
        message = f"batch {record.id} expired (completion_window {record.completion_window})"
    else:
        first = (record.errors or [{}])[0]
        missing = first.get("code") == "missing_file"  # the input file was deleted
        code = code_pb2.NOT_FOUND if missing else code_pb2.INVALID_ARGUMENT
        message = str(first.get("message") or f"batch {record.id} failed")
        if first.get("line"):
            message += f" (line {first['line']})"
    return status_pb2.Status(code=code, message=message, details=[_packed(batch_message(record))])


def operation(record: BatchRecord) -> operations_pb2.Operation:
    op = operations_pb2.Operation(
        name=operation_name(record.id),
        metadata=_packed(batch_metadata(record)),
        done=record.status in DONE,
    )
    if record.status == "completed":
        op.response.Pack(batch_message(record))
    elif op.done:
        op.error.CopyFrom(batch_error(record))
    return op


def _whole_numbers(value: Any) -> Any:
    """A Struct's numbers are doubles: 4.0 goes on as 4 (max_tokens, n, seed are integers)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def line_body(line: batches_pb2.BatchLine, k: int) -> dict[str, Any]:
    which = line.WhichOneof("body")
    if which == "body_struct":
        body = _whole_numbers(json_format.MessageToDict(line.body_struct))
    elif which == "body_json":
        try:
            body = json.loads(line.body_json)
        except ValueError as exc:
            raise InvalidArgument(
                f"lines[{k}].body_json is not JSON: {exc}", field=f"lines[{k}].body_json"
            ) from None
        if not isinstance(body, dict):
            raise InvalidArgument(
                f"lines[{k}].body_json must be a JSON object", field=f"lines[{k}].body_json"
            )
    else:
        raise InvalidArgument(
            f"lines[{k}] needs a body (body_json or body_struct)", field=f"lines[{k}].body_json"
        )
    return dict(body)


def inline_file(lines: Sequence[batches_pb2.BatchLine], endpoint: str, max_lines: int) -> bytes:
    """The JSONL input file of lines given with CreateBatch (OpenAI's line format), each line
    checked: a custom_id, unique, and a JSON object for a body."""
    if len(lines) > max_lines:
        raise InvalidArgument(f"at most {max_lines} lines per batch", field="lines")
    seen: dict[str, int] = {}
    rows = []
    for k, line in enumerate(lines):
        if not line.custom_id:
            raise InvalidArgument(
                f"lines[{k}].custom_id is required", field=f"lines[{k}].custom_id"
            )
        if line.custom_id in seen:
            raise InvalidArgument(
                f"custom_id {line.custom_id!r} is on lines[{seen[line.custom_id]}] and lines[{k}]",
                field=f"lines[{k}].custom_id",
            )
        seen[line.custom_id] = k
        row = {
            "custom_id": line.custom_id,
            "method": "POST",
            "url": endpoint,
            "body": line_body(line, k),
        }
        rows.append(json.dumps(row, separators=(",", ":")))
    return ("\n".join(rows) + "\n").encode()


_TERM = re.compile(r"""^\s*(\w+)\s*(=|==|!=)\s*"?([\w.-]*)"?\s*$""")


def list_filter(text: str) -> list[str] | None:
    """The statuses a ListOperations filter lets through (None: all): terms joined by AND,
    each `done = true|false` or `status = NAME` / `status != NAME` (OpenAI's names,
    `in_progress`, or the enum's, `BATCH_STATUS_IN_PROGRESS`)."""
    allowed = set(STATUS)
    if not text.strip():
        return None
    for term in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        m = _TERM.match(term)
        if m is None:
            raise _bad_filter(text, f"cannot read {term!r}")
        key, op, value = m.group(1).lower(), m.group(2), m.group(3)
        if key == "done" and value.lower() in ("true", "false"):
            done = (value.lower() == "true") != (op == "!=")
            allowed &= set(DONE if done else ACTIVE)
        elif key == "status":
            name = value.lower().removeprefix("batch_status_")
            if name not in STATUS:
                raise _bad_filter(text, f"no status {value!r}; one of {', '.join(STATUS)}")
            allowed &= {name} if op != "!=" else set(STATUS) - {name}
        else:
            raise _bad_filter(text, f"{term!r}: filter on done = true|false or status = NAME")
    return sorted(allowed)


def _bad_filter(text: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"filter {text!r}: {why}", field="filter")


def file_message(record: FileRecord) -> batches_pb2.File:
    return batches_pb2.File(
        id=record.id,
        purpose=record.purpose,
        filename=record.filename,
        bytes=record.bytes,
        created_at=record.created_at,
    )


# ---- the servicers -----------------------------------------------------------------------
def guarded(fn: Any) -> Any:
    """Renders any exception of a servicer method (unary or streaming) as its status."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, request, context):
                    yield item
            except Exception as exc:
                await abort(context, exc, _request_id(context))

        return stream

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            await abort(context, exc, _request_id(context))

    return unary


class _Jobs:
    def __init__(
        self, config: JobsConfig, store: JobStore, runner: BatchRunner | None, poll_s: float = 0.25
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.poll_s = poll_s
        self.max_file = config.max_file_mb * 2**20

    def _wake(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    async def _batch(self, name: str) -> BatchRecord:
        batch_id = batch_id_of(name)
        record = await asyncio.to_thread(self.store.get_batch, batch_id)
        if record is None:
            raise checks.missing("operation", name, field="name")
        return record


class BatchesServicer(_Jobs, batches_pb2_grpc.BatchesServicer):
    @guarded
    async def CreateBatch(self, request: Any, context: Any) -> operations_pb2.Operation:
        endpoint = checks.endpoint(request.endpoint)
        window = checks.window(request.completion_window or "24h")
        meta = checks.metadata(dict(request.metadata) or None)
        if request.lines and request.input_file_id:
            raise InvalidArgument("give lines or input_file_id, not both", field="input_file_id")
        if request.lines:
            data = inline_file(request.lines, endpoint, self.config.max_lines)
            if len(data) > self.max_file:
                raise TooLarge(
                    f"the lines make {len(data)} bytes; the limit is {self.max_file}",
                    field="lines",
                )
            source = await asyncio.to_thread(
                self.store.create_file, INLINE_PURPOSE, INLINE_FILENAME, data
            )
        elif request.input_file_id:
            source = await asyncio.to_thread(checks.input_file, self.store, request.input_file_id)
        else:
            raise InvalidArgument(
                "give the requests: lines, or input_file_id (an uploaded file)", field="lines"
            )
        record = await asyncio.to_thread(
            self.store.create_batch, endpoint, source.id, window, checks.WINDOWS[window], meta
        )
        self._wake()
        return operation(record)

    @guarded
    async def UploadFile(self, requests: Any, context: Any) -> batches_pb2.File:
        purpose, filename, chunks, size = None, "", [], 0
        async for message in requests:
            if purpose is None:
                purpose = checks.purpose(message.purpose)
                filename = message.filename
            size += len(message.data)
            if size > self.max_file:
                raise TooLarge(
                    f"the file has {size} bytes or more; the limit is {self.max_file}",
                    field="data",
                )
            chunks.append(message.data)
        if purpose is None:
            raise InvalidArgument("purpose is required (no message was sent)", field="purpose")
        record = await asyncio.to_thread(
            self.store.create_file, purpose, filename or "upload.jsonl", b"".join(chunks)
        )
        return file_message(record)

    @guarded
    async def GetFileContent(self, request: Any, context: Any) -> AsyncIterator[Any]:
        data = await asyncio.to_thread(self.store.file_content, request.file_id)
        if data is None:
            raise checks.missing("file", request.file_id)
        yield batches_pb2.FileChunk(data=data[:CHUNK], total_bytes=len(data))
        for start in range(CHUNK, len(data), CHUNK):
            yield batches_pb2.FileChunk(data=data[start : start + CHUNK])


class OperationsServicer(_Jobs, operations_pb2_grpc.OperationsServicer):
    @guarded
    async def GetOperation(self, request: Any, context: Any) -> operations_pb2.Operation:
        return operation(await self._batch(request.name))

    @guarded
    async def ListOperations(self, request: Any, context: Any) -> Any:
        if request.name not in ("", OPERATION_PREFIX.rstrip("/")):
            raise InvalidArgument(
                f"name is the collection, 'operations' (or empty), got {request.name!r}",
                field="name",
            )
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size")
        size = min(request.page_size or PAGE_SIZE[0], PAGE_SIZE[1])
        statuses = list_filter(request.filter)
        after = request.page_token or None
        records = await asyncio.to_thread(self.store.list_batches, after, size + 1, statuses)
        # an unknown anchor lists nothing: only then is the token looked up, to say why
        if not records and after is not None:
            if await asyncio.to_thread(self.store.get_batch, after) is None:
                raise InvalidArgument(
                    f"page_token {after!r} is not one this gave", field="page_token"
                )
        page = records[:size]
        return operations_pb2.ListOperationsResponse(
            operations=[operation(r) for r in page],
            next_page_token=page[-1].id if len(records) > size else "",
        )

    @guarded
    async def CancelOperation(self, request: Any, context: Any) -> empty_pb2.Empty:
        batch_id = batch_id_of(request.name)
        record = await asyncio.to_thread(self.store.request_cancel, batch_id)
        if record is None:
            raise checks.missing("operation", request.name, field="name")
        if record.status not in ("cancelling", "cancelled"):
            raise FailedPrecondition(
                f"batch {batch_id} is {record.status}; only a validating or in-progress batch "
                "can be cancelled",
                field="name",
            )
        self._wake()
        return empty_pb2.Empty()

    @guarded
    async def DeleteOperation(self, request: Any, context: Any) -> empty_pb2.Empty:
        batch_id = batch_id_of(request.name)
        record = await asyncio.to_thread(self.store.delete_batch, batch_id)
        if record is None:
            raise checks.missing("operation", request.name, field="name")
        if record.status not in DONE:
            raise FailedPrecondition(
                f"batch {batch_id} is {record.status}; only a finished batch can be deleted "
                "(cancel it first)",
                field="name",
            )
        return empty_pb2.Empty()

    @guarded
    async def WaitOperation(self, request: Any, context: Any) -> operations_pb2.Operation:
        """The operation once done, or as it is when the wait ends: `timeout`, else WAIT_S,
        within the call's deadline. Polls the store (another gateway may hold the batch)."""
        wait = WAIT_S
        if request.HasField("timeout"):
            wait = request.timeout.ToTimedelta().total_seconds()
            if wait < 0:
                raise InvalidArgument("timeout must not be negative", field="timeout")
        remaining = context.time_remaining()
        if remaining is not None:
            wait = min(wait, max(remaining - 0.5, 0.0))
        end = time.monotonic() + wait
        step = min(0.05, self.poll_s)
        while True:
            record = await self._batch(request.name)
            left = end - time.monotonic()
            if record.status in DONE or left <= 0:
                return operation(record)
            await asyncio.sleep(min(step, left))
            step = min(step * 2, self.poll_s)


def add_to_server(
    server: grpc.aio.Server, config: JobsConfig, store: JobStore, runner: BatchRunner | None
) -> list[str]:
    """Registers both services; their full names (for reflection)."""
    batches_pb2_grpc.add_BatchesServicer_to_server(BatchesServicer(config, store, runner), server)
    operations_pb2_grpc.add_OperationsServicer_to_server(
        OperationsServicer(config, store, runner), server
    )
    return [BATCHES_SERVICE, OPERATIONS_SERVICE]
