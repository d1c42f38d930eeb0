"""The batch runner: each gateway runs one, and works the batches it holds a lease on.

A batch's life (OpenAI's): `validating` (the input file is read: one stored line per JSONL
line; a line that is not JSON, or names another endpoint, is an error line; duplicate
custom_ids fail the whole batch, as OpenAI does) -> `in_progress` (its lines run through the
data plane on the flex tier, `concurrency` at a time: interactive requests go first and the
batch takes what capacity is left; a line refused for overload waits the retry hint and runs
again, it is not failed) -> `finalizing` (the output and error files are written from the
stored results, in input order) -> `completed`. `cancelling` stops starting lines, lets the
running ones finish, and ends `cancelled` with the results so far (the lines not run get
error lines). A batch past its `expires_at` ends `expired` the same way.

Leases: a runner claims an unfinished batch nobody holds (or whose holder stopped renewing),
renews the lease every third of `lease_s`, and stops working the batch the moment a renewal
fails. Each line's result is written once (gateway/jobs/store.py), so a batch taken over, or
resumed after a restart, runs only the lines that have no result yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.jobs.store import BatchRecord, JobStore, Line, new_id

logger = logging.getLogger(__name__)

# endpoint -> (status code, body) for one request line; raises nothing
Execute = Callable[[str, dict[str, Any], str], Awaitable[tuple[int, dict[str, Any], float | None]]]
RETRY_S = (0.05, 2.0)  # a refused line waits the hint, within these bounds


class BatchRunner:
    def __init__(
        self,
        store: JobStore,
        execute: Execute,
        *,
        lease_s: float = 30.0,
        concurrency: int = 16,
        max_lines: int = 50_000,
        poll_s: float = 1.0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.execute = execute
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.max_lines = max_lines
        self.poll_s = poll_s
        self.owner = owner or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.lines_run = 0  # lines this runner ran to a result (metrics)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batch-runner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """A batch was created or cancelled here: look now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                batch = await asyncio.to_thread(self.store.claim, self.owner, self.lease_s)
                if batch is not None:
                    await self.work(batch)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away, say: try again at the next poll
                logger.exception("batch runner step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def work(self, batch: BatchRecord) -> None:
        """Works one leased batch until it is done, or the lease is lost."""
        lost = asyncio.Event()
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(batch.id, lost))
        try:
            if batch.status == "validating":
                await self._validate(batch)
            fresh = await asyncio.to_thread(self.store.get_batch, batch.id)
            if fresh is not None and fresh.status in ("in_progress", "cancelling"):
                await self._run_lines(fresh, lost)
            fresh = await asyncio.to_thread(self.store.get_batch, batch.id)
            if fresh is not None and not lost.is_set():
                await self._finish(fresh)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, batch_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = await asyncio.to_thread(self.store.renew, batch_id, self.owner, self.lease_s)
            if not held:
                lost.set()
                return

    # ---- validating ----------------------------------------------------------------------
    async def _validate(self, batch: BatchRecord) -> None:
        data = await asyncio.to_thread(self.store.file_content, batch.input_file_id)
        if data is None:
            await self._fail(batch, "missing_file", f"input file {batch.input_file_id} is gone")
            return
        parsed, errors, fatal = read_lines(data, batch.endpoint, self.max_lines)
        if fatal is not None:
            code, message, line = fatal
            await self._fail(batch, code, message, line)
            return
        await asyncio.to_thread(self.store.start, batch.id, self.owner, parsed, errors)

    async def _fail(
        self, batch: BatchRecord, code: str, message: str, line: int | None = None
    ) -> None:
        errors = json.dumps([{"code": code, "message": message, "param": None, "line": line}])
        await asyncio.to_thread(self.store.move, batch.id, self.owner, "failed", errors=errors)

    # ---- in progress ---------------------------------------------------------------------
    async def _run_lines(self, batch: BatchRecord, lost: asyncio.Event) -> None:
        running: dict[int, asyncio.Task[None]] = {}
        try:
            while not lost.is_set():
                current = await asyncio.to_thread(self.store.get_batch, batch.id)
                if current is None or current.status != "in_progress":
                    break  # cancelling: start nothing more
                if time.time() >= current.expires_at:
                    break
                room = self.concurrency - len(running)
                todo = []
                if room > 0:
                    todo = await asyncio.to_thread(self.store.pending, batch.id, room, set(running))
                for line in todo:
                    running[line.line_no] = asyncio.get_running_loop().create_task(
                        self._line(batch, line)
                    )
                if not running:
                    break  # every line has its result
                done, _ = await asyncio.wait(
                    running.values(), timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
                )
                for n in [n for n, t in running.items() if t in done]:
                    running.pop(n).result()
        finally:
            if lost.is_set():
                for task in running.values():
                    task.cancel()
            if running:  # let what runs finish (cancelling, expiry) or end (lost lease)
                await asyncio.gather(*running.values(), return_exceptions=True)

    async def _line(self, batch: BatchRecord, line: Line) -> None:
        body = line.body.get("body")
        request_id = new_id("batch_req_")
        while True:
            status, response, retry_after = await self.execute(
                batch.endpoint, body if isinstance(body, dict) else {}, request_id
            )
            if status != 429:
                break
            await asyncio.sleep(min(max(retry_after or RETRY_S[0], RETRY_S[0]), RETRY_S[1]))
        ok = status < 400
        result = {
            "id": request_id,
            "custom_id": line.custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": response},
            "error": None,
        }
        await asyncio.to_thread(self.store.finish_line, batch.id, line.line_no, ok, result)
        self.lines_run += 1

    # ---- finalizing ----------------------------------------------------------------------
    async def _finish(self, batch: BatchRecord) -> None:
        expired = batch.status == "in_progress" and time.time() >= batch.expires_at
        if batch.status == "cancelling" or expired:
            code = "batch_cancelled" if batch.status == "cancelling" else "batch_expired"
            message = (
                "The batch was cancelled before this request ran."
                if code == "batch_cancelled"
                else "The batch expired before this request ran."
            )
            await asyncio.to_thread(
                self.store.fail_pending,
                batch.id,
                lambda custom_id: {
                    "id": new_id("batch_req_"),
                    "custom_id": custom_id,
                    "response": None,
                    "error": {"code": code, "message": message},
                },
            )
            end = "cancelled" if code == "batch_cancelled" else "expired"
        elif batch.status in ("in_progress", "finalizing"):
            end = "completed"
            if batch.status == "in_progress":
                await asyncio.to_thread(self.store.move, batch.id, self.owner, "finalizing")
        else:
            return
        output, errors = await asyncio.to_thread(self._write_files, batch.id)
        await asyncio.to_thread(
            self.store.move, batch.id, self.owner, end,
            output_file_id=output, error_file_id=errors,
        )  # fmt: skip

    def _write_files(self, batch_id: str) -> tuple[str | None, str | None]:
        out: list[str] = []
        err: list[str] = []
        for _, state, result in self.store.results(batch_id):
            (out if state == "done" else err).append(result)
        ids: list[str | None] = []
        for name, rows in (("output", out), ("errors", err)):
            if not rows:
                ids.append(None)
                continue
            data = ("\n".join(rows) + "\n").encode()
            kind = "batch_output"
            ids.append(self.store.create_file(kind, f"{batch_id}_{name}.jsonl", data).id)
        return ids[0], ids[1]


def read_lines(
    data: bytes, endpoint: str, max_lines: int
) -> tuple[list[Line], list[str], tuple[str, str, int | None] | None]:
    """The input file's request lines; error lines (JSON text) for lines that cannot run; a
    fatal error that fails the batch (code, message, line), as OpenAI's validation has."""
    parsed: list[Line] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return [], [], ("invalid_file", "the input file is not UTF-8 text", None)
    rows = [row for row in text.splitlines() if row.strip()]
    if not rows:
        return [], [], ("empty_file", "the input file has no request lines", None)
    if len(rows) > max_lines:
        return [], [], ("too_many_requests", f"at most {max_lines} lines per batch", None)
    for k, row in enumerate(rows, start=1):
        try:
            item = json.loads(row)
        except ValueError as exc:
            errors.append(_error_line("", "invalid_json_line", f"line {k}: not JSON ({exc})"))
            continue
        if not isinstance(item, dict):
            errors.append(_error_line("", "invalid_request", f"line {k}: not a JSON object"))
            continue
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_error_line("", "missing_custom_id", f"line {k}: custom_id is required"))
            continue
        if custom_id in seen:
            return (
                [],
                [],
                (
                    "duplicate_custom_id",
                    f"custom_id {custom_id!r} is on lines {seen[custom_id]} and {k}",
                    k,
                ),
            )
        seen[custom_id] = k
        url = item.get("url")
        if url != endpoint:
            errors.append(
                _error_line(
                    custom_id, "invalid_url",
                    f"line {k}: url {url!r} is not the batch's endpoint {endpoint}",
                )
            )  # fmt: skip
            continue
        if item.get("method", "POST") != "POST" or not isinstance(item.get("body"), dict):
            errors.append(
                _error_line(custom_id, "invalid_request", f"line {k}: needs method POST and a body")
            )
            continue
        parsed.append(Line(len(parsed), custom_id, item))
    return parsed, errors, None


def _error_line(custom_id: str, code: str, message: str) -> str:
    return json.dumps(
        {
            "id": new_id("batch_req_"),
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )
