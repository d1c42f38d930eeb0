"""Thin servicers: proto -> domain -> Serve handle -> proto. Nothing else lives here.

`rpc` wraps every method the same way: request id, in-flight gauge, duration and status-code
metrics, and the one error table. When the client cancels or its deadline passes, grpc.aio
cancels the handler task; `relay_unary`/`relay_stream` then cancel the Serve request, which
reaches the replica (awaiting alone would leave it running).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from aigc.config import Modality, ModelConfig
from aigc.v1 import (
    audio_pb2_grpc,
    common_pb2,
    image_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_pb2_grpc,
)
from gateway import convert
from gateway.admission import CostGate, cost_of
from gateway.coalesce import Coalescer
from gateway.errors import abort, classify
from gateway.metrics import GatewayMetrics
from gateway.router import ModelRouter
from services.errors import DeadlineExceeded, Overloaded
from services.types import AudioRequest, ImageRequest, TextRequest

_MODALITY_PB = {
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.IMAGE: common_pb2.MODALITY_IMAGE,
    Modality.AUDIO: common_pb2.MODALITY_AUDIO,
}


class Call:
    """Per-RPC facts the servicers and the metrics share."""

    def __init__(self, context: grpc.aio.ServicerContext, model: str) -> None:
        rid = next((v for k, v in context.invocation_metadata() or () if k == "x-request-id"), None)
        self.request_id = str(rid or uuid.uuid4().hex)[:64]
        self.model = model
        self.start = time.perf_counter()
        remaining = context.time_remaining()
        self.deadline = time.time() + remaining if remaining is not None else None


async def relay_unary(response: Any) -> Any:
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


async def retrying(call: Callable[[], Awaitable[Any]], retries: int) -> Any:
    """Unary calls that are idempotent (seed fixed by the gateway) get `retries` more tries
    when the replica died or was unavailable; any other error returns at once."""
    for attempt in range(retries + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == retries or classify(exc)[0] != grpc.StatusCode.UNAVAILABLE:
                raise
    raise AssertionError("unreachable")


async def relay_stream(stream: Any) -> AsyncIterator[Any]:
    try:
        async for item in stream:
            yield item
    finally:
        stream.cancel()  # harmless after a normal end


MIN_REMAINING_S = 0.001  # a deadline closer than this cannot be met: refuse without work


class _Base:
    modality: Modality

    def __init__(
        self, router: ModelRouter, metrics: GatewayMetrics, gates: dict[str, CostGate], retries: int
    ) -> None:
        self.router = router
        self.metrics = metrics
        self.gates = gates
        self.retries = retries

    @contextlib.asynccontextmanager
    async def admitted(
        self, model: ModelConfig, request: TextRequest | ImageRequest | AudioRequest, call: Call
    ) -> AsyncIterator[None]:
        if call.deadline is not None and call.deadline - time.time() < MIN_REMAINING_S:
            self.metrics.rejected.labels("deadline").inc()
            raise DeadlineExceeded("deadline too short to start the request")
        try:
            gate = self.gates[model.name].admit(cost_of(request), call.deadline)
            await gate.__aenter__()
        except Overloaded:
            self.metrics.rejected.labels("admission").inc()
            raise
        try:
            yield
        finally:
            await gate.__aexit__(None, None, None)

    @contextlib.asynccontextmanager
    async def tracked(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Call]:
        """Request id, in-flight gauge, duration and code metrics, and the one error table."""
        call = Call(context, self.router.label(self.modality, request.model))
        gauge = self.metrics.inflight.labels(self.modality.value, call.model)
        gauge.inc()
        code = grpc.StatusCode.OK
        try:
            yield call
        except BaseException as exc:
            code = _code_of(exc, call)
            if isinstance(exc, Exception):
                await abort(context, exc, call.request_id)
            raise
        finally:
            gauge.dec()
            labels = (self.modality.value, call.model, method)
            self.metrics.requests.labels(*labels, code.name).inc()
            self.metrics.duration.labels(*labels).observe(time.perf_counter() - call.start)


def _code_of(exc: BaseException, call: Call) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError):
        expired = call.deadline is not None and time.time() >= call.deadline
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    return classify(exc)[0]


def rpc(method: str) -> Callable[[Any], Any]:
    """Wraps a unary or server-streaming servicer method (chosen by what it is)."""

    def decorate(fn: Any) -> Any:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream_wrapper(
                self: _Base, request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async with self.tracked(method, request, context) as call:
                    async for item in fn(self, request, context, call):
                        yield item

            return stream_wrapper

        @functools.wraps(fn)
        async def unary_wrapper(
            self: _Base, request: Any, context: grpc.aio.ServicerContext
        ) -> Any:
            async with self.tracked(method, request, context) as call:
                return await fn(self, request, context, call)

        return unary_wrapper

    return decorate


class TextServicer(_Base, text_pb2_grpc.TextGenerationServicer):
    modality = Modality.TEXT

    @rpc("Generate")
    async def Generate(self, request: Any, context: Any, call: Call) -> Any:
        model = self.router.resolve(self.modality, request.model)
        domain = convert.text_request(request, model, call.request_id, call.deadline)
        async with self.admitted(model, domain, call):
            result = await relay_unary(self.router.handle(model).generate.remote(domain))
        self.metrics.prompt_tokens.labels(model.name).inc(result.prompt_tokens)
        self.metrics.output_tokens.labels(model.name).inc(result.completion_tokens)
        return convert.text_response(result)

    @rpc("GenerateStream")
    async def GenerateStream(self, request: Any, context: Any, call: Call) -> AsyncIterator[Any]:
        model = self.router.resolve(self.modality, request.model)
        domain = convert.text_request(request, model, call.request_id, call.deadline)
        handle = self.router.handle(model).options(stream=True)
        m = self.metrics
        first: float | None = None
        last = 0.0
        tokens = finished = prompt_tokens = 0
        async with self.admitted(model, domain, call):
            async for chunk in relay_stream(handle.generate_stream.remote(domain)):
                now = time.perf_counter()
                if first is None:
                    first = now
                    m.ttft.labels(model.name).observe(now - call.start)
                else:
                    m.itl.labels(model.name).observe(now - last)
                last = now
                tokens += chunk.token_count
                m.output_tokens.labels(model.name).inc(chunk.token_count)
                message = convert.text_chunk(chunk, call.request_id, model.name)
                if chunk.finish_reason is not None:
                    finished += 1
                    prompt_tokens = chunk.prompt_tokens
                    if finished == domain.n:
                        message.usage.CopyFrom(convert.usage(prompt_tokens, tokens))
                yield message
        m.prompt_tokens.labels(model.name).inc(prompt_tokens)
        if first is not None and tokens > 1:
            m.tpot.labels(model.name).observe((last - first) / (tokens - 1))


class ImageServicer(_Base, image_pb2_grpc.ImageGenerationServicer):
    modality = Modality.IMAGE

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.coalescers: dict[str, Coalescer] = {}

    def _coalescer(self, model: ModelConfig) -> Coalescer:
        c = self.coalescers.get(model.name)
        if c is None:
            handle = self.router.handle(model)
            c = Coalescer(
                lambda items: handle.generate_many.remote(items),
                max_items=model.batching.max_batch_size,
                max_outstanding=2 * model.scaling.max_replicas,
            )
            self.coalescers[model.name] = c
        return c

    async def _generate(self, model: ModelConfig, domain: ImageRequest) -> Any:
        if model.batching.gateway_coalescing:
            coalescer = self._coalescer(model)
            return await retrying(lambda: coalescer.submit(domain), self.retries)
        handle = self.router.handle(model)
        return await retrying(lambda: relay_unary(handle.generate.remote(domain)), self.retries)

    @rpc("Generate")
    async def Generate(self, request: Any, context: Any, call: Call) -> Any:
        model = self.router.resolve(self.modality, request.model)
        domain = convert.image_request(request, model, call.request_id, call.deadline)
        async with self.admitted(model, domain, call):
            result = await self._generate(model, domain)
        self.metrics.images.labels(model.name).inc(len(result.images))
        return convert.image_response(result)


class AudioServicer(_Base, audio_pb2_grpc.AudioSynthesisServicer):
    modality = Modality.AUDIO

    @rpc("Synthesize")
    async def Synthesize(self, request: Any, context: Any, call: Call) -> Any:
        model = self.router.resolve(self.modality, request.model)
        domain = convert.audio_request(request, model, call.request_id, call.deadline, stream=False)
        handle = self.router.handle(model)
        async with self.admitted(model, domain, call):
            result = await retrying(
                lambda: relay_unary(handle.synthesize.remote(domain)), self.retries
            )
        self.metrics.audio_seconds.labels(model.name).inc(result.duration_s)
        return convert.audio_response(result)

    @rpc("SynthesizeStream")
    async def SynthesizeStream(self, request: Any, context: Any, call: Call) -> AsyncIterator[Any]:
        model = self.router.resolve(self.modality, request.model)
        domain = convert.audio_request(request, model, call.request_id, call.deadline, stream=True)
        handle = self.router.handle(model).options(stream=True)
        first = True
        async with self.admitted(model, domain, call):
            async for chunk in relay_stream(handle.synthesize_stream.remote(domain)):
                if first:
                    self.metrics.ttfa.labels(model.name).observe(time.perf_counter() - call.start)
                    first = False
                self.metrics.audio_seconds.labels(model.name).inc(chunk.duration_s)
                yield convert.audio_chunk(chunk, call.request_id, model.name)


class ModelsServicer(models_pb2_grpc.ModelsServicer):
    def __init__(self, router: ModelRouter) -> None:
        self.router = router

    async def ListModels(self, request: Any, context: Any) -> Any:
        wanted = request.modality
        out = []
        for model in self.router.config.models:
            pb_modality = _MODALITY_PB[model.modality]
            if wanted and wanted != pb_modality:
                continue
            st = self.router.state[model.name]
            info = st.info
            default = self.router.config.default_model(model.modality)
            out.append(
                models_pb2.ModelInfo(
                    name=model.name,
                    aliases=list(model.aliases),
                    modality=pb_modality,
                    engine=model.engine,
                    ready=st.ready,
                    default=default is not None and default.name == model.name,
                    batching=models_pb2.BatchingInfo(
                        max_batch_size=model.batching.max_batch_size,
                        batch_wait_timeout_s=model.batching.batch_wait_timeout_s,
                    ),
                    scaling=models_pb2.ScalingInfo(
                        min_replicas=model.scaling.min_replicas,
                        max_replicas=model.scaling.max_replicas,
                        target_ongoing_requests=model.scaling.target_ongoing_requests,
                        running_replicas=st.running_replicas,
                        max_ongoing_requests=model.max_ongoing_requests,
                        max_queued_requests=model.scaling.max_queued_requests,
                    ),
                    source=str(info.get("source") or model.weights or ""),
                    license=str(model.license or info.get("license") or ""),
                    parameters=int(info.get("parameters", 0)),
                    description=model.description,
                    labels=list(info.get("labels", [])),
                    voices=list(info.get("voices", [])),
                    device=str(info.get("device", "")),
                )
            )
        return models_pb2.ListModelsResponse(models=out)
