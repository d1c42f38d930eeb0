"""HTTP plumbing of the OpenAI front end: request ids, deadlines, bounded JSON bodies, body
validation, SSE framing, disconnect watching, and errors rendered from the one status table
(`core.errors`) as OpenAI's `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import ClientGone, Failure, InvalidArgument, TooLarge
from gateway.errors import client_failure

TIMEOUT_HEADERS = ("x-request-timeout", "x-stainless-timeout")  # seconds; the openai SDK sends
B = TypeVar("B", bound=BaseModel)
T = TypeVar("T")


# ---- errors -------------------------------------------------------------------------------
def error_body(failure: Failure) -> dict[str, Any]:
    return {
        "error": {
            "message": failure.message,
            "type": failure.error_type,
            "param": failure.field,
            "code": failure.code.lower(),
        }
    }


def error_response(failure: Failure, request_id: str) -> JSONResponse:
    headers = {"x-request-id": request_id}
    if failure.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(failure.retry_after_s)))
        headers["retry-after-ms"] = str(int(failure.retry_after_s * 1000))
    return JSONResponse(error_body(failure), status_code=failure.http_status, headers=headers)


async def not_routed(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route) in OpenAI's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = (
        f"no route {request.method} {request.url.path}"
        if status in (404, 405)
        else "request failed"
    )
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error" if status < 500 else "server_error",
            "param": None,
            "code": "not_found" if status == 404 else str(status),
        }
    }
    return JSONResponse(body, status_code=status)


# ---- the request --------------------------------------------------------------------------
async def guarded(
    request: Request,
    authorize: Callable[[str | None], object],
    work: Callable[[], Awaitable[Response]],
) -> Response:
    """A route outside the data plane's calls (files, batches, videos): the caller authorized,
    any error rendered from the one status table, the request id echoed."""
    rid = request_id(request)
    try:
        authorize(request.headers.get("authorization"))
        response = await work()
    except Exception as exc:
        response = error_response(client_failure(exc, rid), rid)
    response.headers["x-request-id"] = rid
    return response


def request_id(request: Request) -> str:
    """The client's x-request-id (bounded), or a new one."""
    return (request.headers.get("x-request-id") or uuid.uuid4().hex)[:64]


def deadline(request: Request, default_timeout_s: float | None) -> float | None:
    """The absolute deadline a request names in a timeout header (the openai SDK sends one),
    else `default_timeout_s` from now."""
    for name in TIMEOUT_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise InvalidArgument(f"header {name} must be a positive number of seconds", field=name)
        return time.time() + seconds
    return None if default_timeout_s is None else time.time() + default_timeout_s


async def read_json(request: Request, max_body: int) -> dict[str, Any]:
    """The body as a JSON object; refused before it is read in full when too large."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise too_large(int(length), max_body)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise too_large(size, max_body)
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the body must be a JSON object")
    return data


def too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(f"the body has {size} bytes or more; the limit is {limit}")


def parse(model: type[B], data: dict[str, Any]) -> B:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
            for i, p in enumerate(err["loc"])
            if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS))
        )
        raise InvalidArgument(f"{param or 'body'}: {err['msg']}", field=param or None) from None


# pydantic names union members in error locations (e.g. 'str', 'list[str]'); not fields
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-after"}


# ---- streams ------------------------------------------------------------------------------
async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, unless the client disconnects first: then `work` is cancelled."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():  # disconnected, or we were cancelled
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        watcher.cancel()
    if task.cancelled():
        raise ClientGone("the client disconnected")
    return task.result()


async def closing(body: AsyncIterator[Any], stack: contextlib.AsyncExitStack) -> AsyncIterator[Any]:
    """Relays a streamed body, then closes the data-plane call with how the stream ended."""
    try:
        async for part in body:
            yield part
    except BaseException as exc:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await stack.aclose()
