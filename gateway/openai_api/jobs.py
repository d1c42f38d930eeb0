"""The OpenAI Files and Batches API (`/v1/files`, `/v1/batches`) over the job store.

Uploads are multipart (`file`, `purpose`), read as they stream and refused with 413 as soon as
they pass `jobs.max_file_mb` (or at once, from Content-Length). Only `purpose: "batch"` is
taken (what the batch runner reads); its outputs are `batch_output` files. A batch names an
uploaded file, an endpoint (`/v1/chat/completions`, `/v1/completions`, `/v1/images/generations`,
and `/v1/audio/speech` as our extension) and `completion_window: "24h"`; the batch runner
(gateway/jobs/runner.py) does the rest. Shapes and errors are OpenAI's; every refusal names its
field, a missing file or batch is a 404. The checks are aigc.v1 Batches' too
(gateway/jobs/checks.py; gateway/grpc_api/jobs.py serves the same store over gRPC).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.config import JobsConfig
from core.errors import AigcError, InvalidArgument
from gateway.jobs import checks
from gateway.jobs.runner import BatchRunner
from gateway.jobs.store import JobStore
from gateway.openai_api import http


class JobsApi:
    def __init__(
        self,
        config: JobsConfig,
        store: JobStore,
        runner: BatchRunner | None,
        authorize: Callable[[str | None], object],
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.authorize = authorize
        self.max_file = config.max_file_mb * 2**20

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/files", self.files, methods=["GET", "POST"]),
            Route("/v1/files/{file_id}", self.file, methods=["GET", "DELETE"]),
            Route("/v1/files/{file_id}/content", self.content, methods=["GET"]),
            Route("/v1/batches", self.batches, methods=["GET", "POST"]),
            Route("/v1/batches/{batch_id}", self.batch, methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
        ]

    async def _guarded(self, request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
        return await http.guarded(request, self.authorize, work)

    # ---- files ---------------------------------------------------------------------------
    async def files(self, request: Request) -> Response:
        async def work() -> Response:
            if request.method == "POST":
                return await self._upload(request)
            q = request.query_params
            records = await asyncio.to_thread(
                self.store.list_files, q.get("purpose"), q.get("after"), _limit(q, 10_000)
            )
            data = [r.openai() for r in records]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                    "has_more": len(data) == _limit(q, 10_000),
                }
            )

        return await self._guarded(request, work)

    async def _upload(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_file + 2**16:
            raise http.too_large(int(length), self.max_file)
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=self.max_file)
        except AigcError:
            raise
        except Exception as exc:  # a malformed multipart body, or a part over the limit
            if "size" in str(exc).lower() or "large" in str(exc).lower():
                raise http.too_large(self.max_file, self.max_file) from None
            raise InvalidArgument(f"the body is not a multipart form: {exc}", "file") from None
        try:
            purpose = checks.purpose(form.get("purpose"))
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidArgument("file is required (a multipart file part)", field="file")
            data = await _read(upload, self.max_file)
            name = upload.filename or "upload.jsonl"
        finally:
            await form.close()
        record = await asyncio.to_thread(self.store.create_file, purpose, name, data)
        return JSONResponse(record.openai())

    async def file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]

        async def work() -> Response:
            if request.method == "DELETE":
                if not await asyncio.to_thread(self.store.delete_file, file_id):
                    raise checks.missing("file", file_id)
                return JSONResponse({"id": file_id, "object": "file", "deleted": True})
            record = await asyncio.to_thread(self.store.get_file, file_id)
            if record is None:
                raise checks.missing("file", file_id)
            return JSONResponse(record.openai())

        return await self._guarded(request, work)

    async def content(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]

        async def work() -> Response:
            data = await asyncio.to_thread(self.store.file_content, file_id)
            if data is None:
                raise checks.missing("file", file_id)
            return Response(data, media_type="application/octet-stream")

        return await self._guarded(request, work)

    # ---- batches -------------------------------------------------------------------------
    async def batches(self, request: Request) -> Response:
        async def work() -> Response:
            if request.method == "POST":
                return await self._create(await http.read_json(request, 2**20))
            q = request.query_params
            limit = _limit(q, 100, default=20)
            records = await asyncio.to_thread(self.store.list_batches, q.get("after"), limit)
            data = [r.openai() for r in records]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                    "has_more": len(data) == limit,
                }
            )

        return await self._guarded(request, work)

    async def _create(self, body: dict[str, Any]) -> Response:
        file_id = checks.input_file_id(body.get("input_file_id"))
        endpoint = checks.endpoint(body.get("endpoint"))
        window = checks.window(body.get("completion_window"))
        meta = checks.metadata(body.get("metadata"))
        await asyncio.to_thread(checks.input_file, self.store, file_id)
        record = await asyncio.to_thread(
            self.store.create_batch, endpoint, file_id, window, checks.WINDOWS[window], meta
        )
        if self.runner is not None:
            self.runner.wake()
        return JSONResponse(record.openai())

    async def batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]

        async def work() -> Response:
            record = await asyncio.to_thread(self.store.get_batch, batch_id)
            if record is None:
                raise checks.missing("batch", batch_id)
            return JSONResponse(record.openai())

        return await self._guarded(request, work)

    async def cancel(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]

        async def work() -> Response:
            record = await asyncio.to_thread(self.store.request_cancel, batch_id)
            if record is None:
                raise checks.missing("batch", batch_id)
            if record.status not in ("cancelling", "cancelled"):
                raise InvalidArgument(
                    f"batch {batch_id} is {record.status}; only a validating or in-progress "
                    "batch can be cancelled",
                    field="batch_id",
                )
            if self.runner is not None:
                self.runner.wake()
            return JSONResponse(record.openai())

        return await self._guarded(request, work)


def _limit(query: Any, most: int, default: int | None = None) -> int:
    raw = query.get("limit")
    if raw is None:
        return default or most
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidArgument(f"limit must be 1 to {most}, got {raw!r}", field="limit")
    return int(raw)


async def _read(upload: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(2**20):
        size += len(chunk)
        if size > limit:
            raise http.too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)
