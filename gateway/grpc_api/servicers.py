"""Thin servicers: proto -> domain -> data plane -> proto. Nothing else lives here.

`rpc` wraps every method the same way: it opens a `DataPlane.call` (request id, deadline,
metrics) and renders any exception with the one error table. When the client cancels or its
deadline passes, grpc.aio cancels the handler task and the data plane cancels the Serve call.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from aigc.v1 import (
    audio_pb2_grpc,
    common_pb2,
    image_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_pb2_grpc,
)
from core.config import Modality
from gateway import convert
from gateway.calls import Call
from gateway.dataplane import DataPlane, ModelView
from gateway.grpc_api.status import abort

PROTOCOL = "grpc"
_MODALITY_PB = {
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.IMAGE: common_pb2.MODALITY_IMAGE,
    Modality.AUDIO: common_pb2.MODALITY_AUDIO,
    Modality.VIDEO: common_pb2.MODALITY_VIDEO,
}
_MODALITY_OF_PB = {v: k for k, v in _MODALITY_PB.items()}


def _request_id(context: grpc.aio.ServicerContext) -> str:
    rid = next((v for k, v in context.invocation_metadata() or () if k == "x-request-id"), None)
    return str(rid or uuid.uuid4().hex)[:64]


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return time.time() + remaining if remaining is not None else None


class _Servicer:
    modality: Modality | None

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane


def rpc(method: str) -> Callable[[Any], Any]:
    """Wraps a unary or server-streaming servicer method (chosen by what it is); the method
    gets the `Call` as a third argument."""

    def opened(self: _Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        model = getattr(request, "model", "")
        return self.plane.call(
            PROTOCOL, method, self.modality, model, _request_id(context), _deadline(context)
        )

    def decorate(fn: Any) -> Any:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream_wrapper(self: _Servicer, request: Any, context: Any) -> Any:
                rid = ""
                try:
                    async with opened(self, request, context) as call:
                        rid = call.request_id
                        async for item in fn(self, request, context, call):
                            yield item
                except Exception as exc:
                    await abort(context, exc, rid)

            return stream_wrapper

        @functools.wraps(fn)
        async def unary_wrapper(self: _Servicer, request: Any, context: Any) -> Any:
            rid = ""
            try:
                async with opened(self, request, context) as call:
                    rid = call.request_id
                    return await fn(self, request, context, call)
            except Exception as exc:
                await abort(context, exc, rid)

        return unary_wrapper

    return decorate


class TextServicer(_Servicer, text_pb2_grpc.TextGenerationServicer):
    modality = Modality.TEXT

    @rpc("Generate")
    async def Generate(self, request: Any, context: Any, call: Call) -> Any:
        model = self.plane.resolve(call, request.model)
        domain = convert.text_request(request, model, call.request_id, call.deadline)
        return convert.text_response(await self.plane.generate_text(call, model, domain))

    @rpc("GenerateStream")
    async def GenerateStream(self, request: Any, context: Any, call: Call) -> AsyncIterator[Any]:
        model = self.plane.resolve(call, request.model)
        domain = convert.text_request(request, model, call.request_id, call.deadline)
        stream = self.plane.stream_texts(call, model, [domain])
        async with contextlib.aclosing(stream):
            async for _, chunk in stream:
                message = convert.text_chunk(chunk, call.request_id, model.name)
                if chunk.finish_reason is not None and stream.complete:  # the last message
                    usage = stream.usage  # carries the stream's usage
                    message.usage.CopyFrom(
                        convert.usage(usage.prompt_tokens, usage.completion_tokens)
                    )
                yield message


class ImageServicer(_Servicer, image_pb2_grpc.ImageGenerationServicer):
    modality = Modality.IMAGE

    @rpc("Generate")
    async def Generate(self, request: Any, context: Any, call: Call) -> Any:
        model = self.plane.resolve(call, request.model)
        domain = convert.image_request(request, model, call.request_id, call.deadline)
        return convert.image_response(await self.plane.generate_images(call, model, domain))


class AudioServicer(_Servicer, audio_pb2_grpc.AudioSynthesisServicer):
    modality = Modality.AUDIO

    @rpc("Synthesize")
    async def Synthesize(self, request: Any, context: Any, call: Call) -> Any:
        model = self.plane.resolve(call, request.model)
        domain = convert.audio_request(request, model, call.request_id, call.deadline, stream=False)
        return convert.audio_response(await self.plane.synthesize(call, model, domain))

    @rpc("SynthesizeStream")
    async def SynthesizeStream(self, request: Any, context: Any, call: Call) -> AsyncIterator[Any]:
        model = self.plane.resolve(call, request.model)
        domain = convert.audio_request(request, model, call.request_id, call.deadline, stream=True)
        async for chunk in self.plane.stream_speech(call, model, domain):
            yield convert.audio_chunk(chunk, call.request_id, model.name)


def model_info(view: ModelView) -> models_pb2.ModelInfo:
    model, st, facts = view.config, view.state, view.facts
    return models_pb2.ModelInfo(
        name=model.name,
        aliases=list(model.aliases),
        modality=_MODALITY_PB[model.modality],
        engine=model.engine,
        ready=st.ready,
        default=view.default,
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
        source=facts.source or model.weights or "",
        license=model.license or facts.license,
        parameters=facts.parameters,
        description=model.description,
        labels=list(facts.labels),
        voices=list(facts.voices),
        device=facts.device,
    )


class ModelsServicer(_Servicer, models_pb2_grpc.ModelsServicer):
    modality = None  # ListModels spans every modality

    @rpc("ListModels")
    async def ListModels(self, request: Any, context: Any, call: Call) -> Any:
        modality = _MODALITY_OF_PB.get(request.modality) if request.modality else None
        if request.modality and modality is None:
            raise convert.InvalidArgument(f"unknown modality {request.modality}", field="modality")
        views = self.plane.models(modality)
        return models_pb2.ListModelsResponse(models=[model_info(v) for v in views])
