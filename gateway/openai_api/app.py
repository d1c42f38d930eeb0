"""The OpenAI-compatible HTTP front end (Starlette on uvicorn): routes that only convert.

Every route reads the body (bounded), checks the API key, opens a `DataPlane.call` and converts
JSON <-> domain; errors render with the one table as `{"error": {message, type, param, code}}`.
A client that disconnects cancels the work: unary routes race the call against the ASGI
`http.disconnect` message, and Starlette cancels an SSE body when the socket closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from aigc.wav import wav_header
from core.config import AigcConfig, Modality, ModelConfig
from core.errors import AigcError, ClientGone, InvalidArgument, TooLarge
from core.replica import ModelFacts
from core.types import StreamUsage, TextChunk, TextRequest
from gateway.dataplane import Call, DataPlane
from gateway.errors import Failure, client_failure
from gateway.openai_api import convert, page
from gateway.openai_api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    ImageGenerationRequest,
    SpeechRequest,
)
from gateway.router import ModelState

PROTOCOL = "http"
TIMEOUT_HEADERS = ("x-request-timeout", "x-stainless-timeout")  # seconds; the openai SDK sends
B = TypeVar("B", bound=BaseModel)
T = TypeVar("T")


async def _closing(
    body: AsyncIterator[Any], stack: contextlib.AsyncExitStack
) -> AsyncIterator[Any]:
    """Relays a streamed body, then closes the data-plane call with how the stream ended."""
    try:
        async for part in body:
            yield part
    except BaseException as exc:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await stack.aclose()


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


def _sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
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


class OpenAIApi:
    def __init__(
        self,
        config: AigcConfig,
        plane: DataPlane,
        ready: Callable[[], bool],
    ) -> None:
        self.config = config
        self.plane = plane
        self.ready = ready
        self.max_body = config.gateway.max_message_mb * 2**20
        self.default_timeout_s = config.gateway.http_timeout_s
        self.created = int(time.time())

    # ---- plumbing ------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        post = ["POST"]
        return [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=post),
            Route("/v1/chat/completions", self.chat_completions, methods=post),
            Route(
                "/v1/engines/{engine:path}/chat/completions", self.chat_completions, methods=post
            ),
            Route("/v1/engines/{engine:path}/completions", self.completions, methods=post),
            Route("/v1/images/generations", self.images, methods=post),
            Route("/v1/audio/speech", self.speech, methods=post),
            Route("/readyz", self.readiness, methods=["GET"]),
            Route("/health", self.readiness, methods=["GET"]),
            Route("/livez", self.liveness, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
            *page.routes(),
        ]

    def app(self) -> Starlette:
        async def not_routed(request: Request, exc: Exception) -> Response:
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

        return Starlette(routes=self.routes(), exception_handlers={HTTPException: not_routed})

    def _request_id(self, request: Request) -> str:
        return (request.headers.get("x-request-id") or uuid.uuid4().hex)[:64]

    def _deadline(self, request: Request) -> float | None:
        for name in TIMEOUT_HEADERS:
            value = request.headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds <= 0:
                raise InvalidArgument(
                    f"header {name} must be a positive number of seconds", field=name
                )
            return time.time() + seconds
        return None if self.default_timeout_s is None else time.time() + self.default_timeout_s

    async def _json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object; refused before it is read in full when too large."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise _too_large(int(length), self.max_body)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise _too_large(size, self.max_body)
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidArgument("the body must be a JSON object")
        return data

    async def _handle(
        self,
        request: Request,
        method: str,
        modality: Modality | None,
        body_model: type[B] | None,
        work: Callable[[Call, Any], Awaitable[Response]],
    ) -> Response:
        """Auth, body, the data-plane call and error rendering around one route's work. A
        streamed response keeps the call open until its last byte (or the disconnect)."""
        rid = self._request_id(request)
        try:
            self.plane.authorize(PROTOCOL, request.headers.get("authorization"))
            data = await self._json(request) if body_model is not None else {}
            if "engine" in request.path_params:  # the pre-1.0 client's routes
                data["model"] = request.path_params["engine"]
            name = data.get("model")
            deadline = self._deadline(request)
            stack = contextlib.AsyncExitStack()
            call = await stack.enter_async_context(
                self.plane.call(
                    PROTOCOL, method, modality, name if isinstance(name, str) else "", rid, deadline
                )
            )
            try:
                body = _parse(body_model, data) if body_model is not None else None
                response = await _until_disconnect(request, work(call, body))
            except BaseException as exc:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            if isinstance(response, StreamingResponse):
                response.body_iterator = _closing(response.body_iterator, stack)  # type: ignore[arg-type]
            else:
                await stack.aclose()
        except Exception as exc:
            response = error_response(client_failure(exc, rid), rid)
        response.headers["x-request-id"] = rid
        return response

    # ---- models and health ---------------------------------------------------------------
    def _model_entries(self) -> list[dict[str, Any]]:
        out = []
        for view in self.plane.models():
            m, st = view.config, view.state
            for served in (m.name, *m.aliases):
                out.append(
                    {
                        "id": served,
                        "object": "model",
                        "created": self.created,
                        "owned_by": "aigc-serve",
                        "root": m.name,
                        "modality": m.modality.value,
                        "ready": st.ready,
                        "default": view.default,
                        # What a playground or dashboard shows; OpenAI clients ignore these.
                        "state": model_state(st),
                        "engine": m.engine,
                        "description": m.description,
                        "replicas": {
                            "running": st.running_replicas,
                            "starting": st.starting_replicas,
                            "min": m.scaling.min_replicas,
                            "max": m.scaling.max_replicas,
                        },
                        "limits": _limits(m),
                        **_shown_facts(view.facts),
                    }
                )
        return out

    async def list_models(self, request: Request) -> Response:
        async def work(call: Call, body: None) -> Response:
            return JSONResponse({"object": "list", "data": self._model_entries()})

        return await self._handle(request, "/v1/models", None, None, work)

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]

        async def work(call: Call, body: None) -> Response:
            for entry in self._model_entries():
                if entry["id"] == model_id:
                    return JSONResponse(entry)
            raise _not_found(model_id)

        return await self._handle(request, "/v1/models/{id}", None, None, work)

    async def readiness(self, request: Request) -> Response:
        ok = self.ready()
        return JSONResponse(
            {"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503
        )

    async def liveness(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def metrics_text(self, request: Request) -> Response:
        """The metrics port's exposition (same registry), for pages served from this port.
        Behind the API keys when they are on; per-key rate limits do not apply (a dashboard
        that polls must not spend the caller's request budget)."""
        try:
            self.plane.authorize(PROTOCOL, request.headers.get("authorization"), rated=False)
        except AigcError as exc:
            rid = self._request_id(request)
            return error_response(client_failure(exc, rid), rid)
        body = generate_latest(self.plane.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # ---- text ----------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        if request.url.path.endswith("/chat/completions"):
            return await self._handle(
                request, "/v1/chat/completions", Modality.TEXT, ChatCompletionRequest, self._chat
            )
        return await self._handle(
            request, "/v1/completions", Modality.TEXT, CompletionRequest, self._completion
        )

    chat_completions = completions

    async def _completion(self, call: Call, body: Any) -> Response:
        return await self._text(call, body, chat=False)

    async def _chat(self, call: Call, body: Any) -> Response:
        return await self._text(call, body, chat=True)

    async def _text(self, call: Call, body: Any, *, chat: bool) -> Response:
        model = self.plane.resolve(call, body.model or "")
        if chat:
            requests = [convert.chat_request(body, model, call.request_id, call.deadline)]
        else:
            requests = convert.completion_requests(body, model, call.request_id, call.deadline)
        served = body.model or model.name
        rid = ("chatcmpl-" if chat else "cmpl-") + call.request_id
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            writer = convert.ChunkWriter(rid, served, chat=chat, include_usage=include)
            return await self._stream_text(call, model, requests, writer)
        results = await self.plane.generate_texts(call, model, requests)
        return JSONResponse(convert.completion_response(results, rid, served, chat=chat))

    async def _stream_text(
        self, call: Call, model: Any, requests: list[TextRequest], writer: convert.ChunkWriter
    ) -> Response:
        n = requests[0].n
        chunks = self.plane.stream_texts(call, model, requests)  # admitted as one request
        first = await anext(chunks)  # errors before the first token are HTTP errors

        async def events(first: tuple[int, TextChunk]) -> AsyncIterator[bytes]:
            usage = StreamUsage(completions=n * len(requests))
            try:
                item: tuple[int, TextChunk] | None = first
                while item is not None:
                    k, chunk = item
                    usage.add(chunk, k)
                    for data in writer.delta(k * n + chunk.index, chunk.delta, chunk.finish_reason):
                        yield _sse(data)
                    item = await anext(chunks, None)
                if writer.include_usage:
                    yield _sse(writer.usage(usage.prompt_tokens, usage.completion_tokens))
            except Exception as exc:  # after the stream began: an error event, then [DONE]
                failure = client_failure(exc, call.request_id)
                call.code = failure.code  # the call ends with it, though HTTP said 200
                yield _sse(error_body(failure))
            finally:
                await chunks.aclose()
            yield SSE_DONE

        return StreamingResponse(events(first), media_type="text/event-stream")

    # ---- images --------------------------------------------------------------------------
    async def images(self, request: Request) -> Response:
        async def work(call: Call, body: Any) -> Response:
            model = self.plane.resolve(call, body.model or "")
            facts = self.plane.router.facts(model)
            domain = convert.image_request(body, model, facts, call.request_id, call.deadline)
            result = await self.plane.generate_images(call, model, domain)
            images = [{"b64_json": base64.b64encode(i.data).decode()} for i in result.images]
            return JSONResponse({"created": int(time.time()), "data": images})

        return await self._handle(
            request, "/v1/images/generations", Modality.IMAGE, ImageGenerationRequest, work
        )

    # ---- speech --------------------------------------------------------------------------
    async def speech(self, request: Request) -> Response:
        async def work(call: Call, body: Any) -> Response:
            model = self.plane.resolve(call, body.model or "")
            domain = convert.speech_request(body, model, call.request_id, call.deadline)
            chunks = self.plane.stream_speech(call, model, domain)
            first = await anext(chunks)  # errors before the first sentence are HTTP errors
            wav = body.response_format == "wav"

            async def audio() -> AsyncIterator[bytes]:
                try:
                    if wav:
                        yield wav_header(first.sample_rate)
                    yield first.pcm16
                    async for chunk in chunks:
                        yield chunk.pcm16
                finally:
                    await chunks.aclose()

            headers = {"x-sample-rate": str(first.sample_rate)}
            media = convert.SPEECH_FORMATS[body.response_format]
            return StreamingResponse(audio(), media_type=media, headers=headers)

        return await self._handle(request, "/v1/audio/speech", Modality.AUDIO, SpeechRequest, work)


def _too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(f"the body has {size} bytes or more; the limit is {limit}")


def _not_found(model_id: str) -> AigcError:
    from core.errors import ModelNotFound

    return ModelNotFound(f"model {model_id!r} is not served", field="model")


def _parse(model: type[B], data: dict[str, Any]) -> B:
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


# What /v1/models adds to OpenAI's fields (as vLLM adds root and max_model_len).
def _shown_facts(facts: ModelFacts) -> dict[str, Any]:
    """The facts a playground needs to build a request form, where the model has them."""
    shown: dict[str, Any] = {"labels": list(facts.labels), "voices": list(facts.voices)}
    shown["image_size"] = facts.image_size
    return {k: v for k, v in shown.items() if v}


def model_state(st: ModelState) -> str:
    """ready: serving; starting: no replica serves yet but one is starting; unavailable."""
    if st.ready:
        return "ready"
    return "starting" if st.starting_replicas else "unavailable"


def _limits(m: ModelConfig) -> dict[str, int]:
    """The request limits of the model's modality (a request past one is refused with 400)."""
    lim = m.limits
    if m.modality == Modality.TEXT:
        return {"max_tokens": lim.max_tokens, "max_n": lim.max_n}
    if m.modality == Modality.IMAGE:
        return {"max_images": lim.max_images}
    return {"max_text_chars": lim.max_text_chars}


# pydantic names union members in error locations (e.g. 'str', 'list[str]'); not fields
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-after"}
