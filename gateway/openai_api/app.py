"""The OpenAI-compatible HTTP front end (Starlette on uvicorn): routes that only convert.

Every route has the data plane authorize the caller, reads the body (bounded), opens a
`DataPlane.call` and converts JSON <-> domain (`convert.py`); the HTTP plumbing (bodies,
deadlines, SSE, errors from the one status table) is `http.py`, `/v1/models` is `models.py`.
A client that disconnects cancels the work: unary routes race the call against the ASGI
`http.disconnect` message, and Starlette cancels an SSE body when the socket closes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from aigc.wav import wav_header
from core.config import AigcConfig, Modality
from core.errors import AigcError
from gateway.calls import Call
from gateway.dataplane import DataPlane
from gateway.errors import client_failure
from gateway.openai_api import convert, http, page, protocol
from gateway.openai_api.models import ModelList, model_entries
from gateway.openai_api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    ImageGenerationRequest,
    SpeechRequest,
)

PROTOCOL = "http"
B = TypeVar("B", bound=BaseModel)


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

    def app(self, extra: list[BaseRoute] | None = None) -> Starlette:
        return Starlette(
            routes=[*(extra or ()), *self.routes()],
            exception_handlers={HTTPException: http.not_routed},
        )

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
        rid = http.request_id(request)
        try:
            self.plane.authorize(PROTOCOL, request.headers.get("authorization"))
            data = await http.read_json(request, self.max_body) if body_model is not None else {}
            if "engine" in request.path_params:  # the pre-1.0 client's routes
                data["model"] = request.path_params["engine"]
            name = data.get("model")
            deadline = http.deadline(request, self.default_timeout_s)
            stack = contextlib.AsyncExitStack()
            call = await stack.enter_async_context(
                self.plane.call(
                    PROTOCOL, method, modality, name if isinstance(name, str) else "", rid, deadline
                )
            )
            try:
                body = http.parse(body_model, data) if body_model is not None else None
                response = await http.until_disconnect(request, work(call, body))
            except BaseException as exc:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            if isinstance(response, StreamingResponse):
                response.body_iterator = http.closing(response.body_iterator, stack)  # type: ignore[arg-type]
            else:
                await stack.aclose()
        except Exception as exc:
            response = http.error_response(client_failure(exc, rid), rid)
        response.headers["x-request-id"] = rid
        return response

    # ---- models and health ---------------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        async def work(call: Call, body: None) -> Response:
            listed = ModelList(data=model_entries(self.plane, self.created))
            return JSONResponse(listed.model_dump())

        return await self._handle(request, "/v1/models", None, None, work)

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]

        async def work(call: Call, body: None) -> Response:
            for entry in model_entries(self.plane, self.created):
                if entry.id == model_id:
                    return JSONResponse(entry.model_dump())
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
            rid = http.request_id(request)
            return http.error_response(client_failure(exc, rid), rid)
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
        echo = [r.prompt or "" for r in requests] if not chat and body.echo else None
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            writer = protocol.ChunkWriter(rid, served, chat=chat, include_usage=include, echo=echo)
            stream = self.plane.stream_texts(call, model, requests)  # admitted as one request
            first = await anext(stream)  # errors before the first token are HTTP errors
            events = writer.events(
                first,
                stream,
                requests[0].n,
                lambda exc: self.plane.failed_in_band(call, exc),
                http.error_body,
            )
            return StreamingResponse(events, media_type="text/event-stream")
        results = await self.plane.generate_texts(call, model, requests)
        return JSONResponse(
            protocol.completion_response(results, rid, served, chat=chat, echo=echo).model_dump()
        )

    # ---- images --------------------------------------------------------------------------
    async def images(self, request: Request) -> Response:
        return await self._handle(
            request, "/v1/images/generations", Modality.IMAGE, ImageGenerationRequest, self._images
        )

    async def _images(self, call: Call, body: Any) -> Response:
        model = self.plane.resolve(call, body.model or "")
        facts = self.plane.facts(model)
        domain = convert.image_request(body, model, facts, call.request_id, call.deadline)
        result = await self.plane.generate_images(call, model, domain)
        images = [
            protocol.ImageData(b64_json=base64.b64encode(i.data).decode()) for i in result.images
        ]
        return JSONResponse(protocol.ImagesResponse(data=images).model_dump())

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

    async def _speech_whole(self, call: Call, body: Any) -> Response:
        """Speech as one JSON body (a batch line's response, our extension): the audio in
        base64, its format and sample rate."""
        model = self.plane.resolve(call, body.model or "")
        domain = convert.speech_request(body, model, call.request_id, call.deadline)
        pcm, rate = bytearray(), 0
        chunks = self.plane.stream_speech(call, model, domain)
        try:
            async for chunk in chunks:
                pcm += chunk.pcm16
                rate = chunk.sample_rate
        finally:
            await chunks.aclose()
        audio = (wav_header(rate, len(pcm)) if body.response_format == "wav" else b"") + pcm
        return JSONResponse(
            {
                "object": "audio.speech",
                "format": body.response_format,
                "sample_rate": rate,
                "audio": base64.b64encode(audio).decode(),
            }
        )

    # ---- batch lines ---------------------------------------------------------------------
    def batch_routes(self) -> dict[str, tuple[Modality, type[BaseModel], Any]]:
        return {
            "/v1/chat/completions": (Modality.TEXT, ChatCompletionRequest, self._chat),
            "/v1/completions": (Modality.TEXT, CompletionRequest, self._completion),
            "/v1/images/generations": (Modality.IMAGE, ImageGenerationRequest, self._images),
            "/v1/audio/speech": (Modality.AUDIO, SpeechRequest, self._speech_whole),
        }

    async def execute(
        self, endpoint: str, data: dict[str, Any], request_id: str
    ) -> tuple[int, dict[str, Any], float | None]:
        """One batch line, through the same conversion, data plane (flex tier) and errors as
        the route: (HTTP status, body, retry hint of a refusal). Never raises."""
        modality, body_model, work = self.batch_routes()[endpoint]
        data = {**data, "service_tier": "flex"}
        if modality == Modality.TEXT:
            data["stream"] = False
            data.pop("stream_options", None)
        name = data.get("model")
        deadline = None if self.default_timeout_s is None else time.time() + self.default_timeout_s
        try:
            async with self.plane.call(
                "batch", endpoint, modality, name if isinstance(name, str) else "", request_id,
                deadline,
            ) as call:  # fmt: skip
                body = http.parse(body_model, data)
                response = await work(call, body)
            return response.status_code, json.loads(bytes(response.body)), None
        except Exception as exc:
            failure = client_failure(exc, request_id)
            return failure.http_status, http.error_body(failure), failure.retry_after_s


def _not_found(model_id: str) -> AigcError:
    from core.errors import ModelNotFound

    return ModelNotFound(f"model {model_id!r} is not served", field="model")
