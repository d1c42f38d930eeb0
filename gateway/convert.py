"""aigc.v1 proto <-> domain conversion; the domain request is then checked against the model's
limits by `gateway.validate` (shared with the OpenAI front end). Every check raises
InvalidArgument naming the field (e.g. `chat.messages[1].role`)."""

from __future__ import annotations

from typing import Any

from aigc.v1 import audio_pb2, common_pb2, image_pb2, text_pb2
from aigc.wire import TIERS
from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import (
    AudioChunk,
    AudioFormat,
    AudioRequest,
    AudioResult,
    ChatMessage,
    FinishReason,
    ImageFormat,
    ImageRequest,
    ImageResult,
    Priority,
    TextChunk,
    TextRequest,
    TextResult,
)
from gateway import validate

_FINISH = {
    FinishReason.LENGTH: text_pb2.FINISH_REASON_LENGTH,
    FinishReason.STOP: text_pb2.FINISH_REASON_STOP,
    FinishReason.CANCELLED: text_pb2.FINISH_REASON_CANCELLED,
}


_PRIORITIES = {value: Priority(name) for name, value in TIERS.items()} | {
    common_pb2.PRIORITY_UNSPECIFIED: Priority.INTERACTIVE
}


def priority(value: Any) -> Priority:
    if value not in _PRIORITIES:
        raise InvalidArgument(f"unknown priority {value}", field="priority")
    return _PRIORITIES[value]


# ---- text ------------------------------------------------------------------------------
def text_request(
    req: text_pb2.GenerateTextRequest, model: ModelConfig, request_id: str, deadline: float | None
) -> TextRequest:
    which = req.WhichOneof("input")
    if which is None:
        raise InvalidArgument("one of prompt or chat is required", field="prompt")
    domain = TextRequest(
        request_id=request_id,
        model=model.name,
        prompt=req.prompt if which == "prompt" else None,
        messages=tuple(ChatMessage(m.role, m.content) for m in req.chat.messages),
        max_tokens=req.max_tokens if req.HasField("max_tokens") else None,
        temperature=req.temperature if req.HasField("temperature") else None,
        top_p=req.top_p if req.HasField("top_p") else None,
        top_k=req.top_k if req.HasField("top_k") else None,
        stop=tuple(req.stop),
        n=req.n if req.HasField("n") else 1,
        seed=req.seed if req.HasField("seed") else None,
        deadline=deadline,
        priority=priority(req.priority),
    )
    validate.text(domain, model)
    return domain


def finish_reason(reason: FinishReason | None) -> Any:
    return _FINISH[reason] if reason is not None else text_pb2.FINISH_REASON_UNSPECIFIED


def usage(prompt_tokens: int, completion_tokens: int) -> text_pb2.Usage:
    return text_pb2.Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def text_response(result: TextResult) -> text_pb2.GenerateTextResponse:
    return text_pb2.GenerateTextResponse(
        id=result.request_id,
        model=result.model,
        completions=[
            text_pb2.Completion(
                index=c.index,
                text=c.text,
                finish_reason=finish_reason(c.finish_reason),
                completion_tokens=c.completion_tokens,
            )
            for c in result.completions
        ],
        usage=usage(result.prompt_tokens, result.completion_tokens),
    )


def text_chunk(
    chunk: TextChunk, request_id: str, model: str
) -> text_pb2.GenerateTextStreamResponse:
    return text_pb2.GenerateTextStreamResponse(
        id=request_id,
        model=model,
        index=chunk.index,
        delta=chunk.delta,
        finish_reason=finish_reason(chunk.finish_reason),
    )


# ---- image -----------------------------------------------------------------------------
_IMAGE_FORMATS = {
    image_pb2.IMAGE_FORMAT_UNSPECIFIED: ImageFormat.PNG,
    image_pb2.IMAGE_FORMAT_PNG: ImageFormat.PNG,
    image_pb2.IMAGE_FORMAT_RAW: ImageFormat.RAW,
}


def image_request(
    req: image_pb2.GenerateImageRequest, model: ModelConfig, request_id: str, deadline: float | None
) -> ImageRequest:
    if req.format not in _IMAGE_FORMATS:
        raise InvalidArgument(f"unknown image format {req.format}", field="format")
    domain = ImageRequest(
        request_id=request_id,
        model=model.name,
        count=req.count if req.HasField("count") else 1,
        seed=req.seed if req.HasField("seed") else None,  # None: the data plane draws one
        label=req.label or None,
        format=_IMAGE_FORMATS[req.format],
        deadline=deadline,
        priority=priority(req.priority),
    )
    validate.image(domain, model)
    return domain


def image_response(result: ImageResult) -> image_pb2.GenerateImageResponse:
    return image_pb2.GenerateImageResponse(
        id=result.request_id,
        model=result.model,
        images=[
            image_pb2.Image(
                data=i.data,
                mime_type=i.mime_type,
                width=i.width,
                height=i.height,
                channels=i.channels,
                seed=i.seed,
                label=i.label or "",
            )
            for i in result.images
        ],
    )


# ---- audio -----------------------------------------------------------------------------
def audio_request(
    req: audio_pb2.SynthesizeRequest,
    model: ModelConfig,
    request_id: str,
    deadline: float | None,
    *,
    stream: bool,
) -> AudioRequest:
    if stream:
        if req.format not in (audio_pb2.AUDIO_FORMAT_UNSPECIFIED, audio_pb2.AUDIO_FORMAT_PCM16):
            raise InvalidArgument(
                "SynthesizeStream sends PCM16 chunks; use format PCM16 or leave it unset",
                field="format",
            )
        fmt = AudioFormat.PCM16
    else:
        if req.format not in _AUDIO_FORMATS:
            raise InvalidArgument(f"unknown audio format {req.format}", field="format")
        fmt = _AUDIO_FORMATS[req.format]
    domain = AudioRequest(
        request_id=request_id,
        model=model.name,
        text=req.text,
        voice=req.voice or None,
        speed=req.speed if req.HasField("speed") else 1.0,
        seed=req.seed if req.HasField("seed") else None,
        format=fmt,
        deadline=deadline,
        priority=priority(req.priority),
    )
    validate.audio(domain, model)
    return domain


_AUDIO_FORMATS = {
    audio_pb2.AUDIO_FORMAT_UNSPECIFIED: AudioFormat.WAV,
    audio_pb2.AUDIO_FORMAT_WAV: AudioFormat.WAV,
    audio_pb2.AUDIO_FORMAT_PCM16: AudioFormat.PCM16,
}


def audio_response(result: AudioResult) -> audio_pb2.SynthesizeResponse:
    return audio_pb2.SynthesizeResponse(
        id=result.request_id,
        model=result.model,
        audio=result.audio,
        mime_type=result.mime_type,
        sample_rate=result.sample_rate,
        channels=1,
        duration_seconds=result.duration_s,
        seed=result.seed,
    )


def audio_chunk(chunk: AudioChunk, request_id: str, model: str) -> audio_pb2.AudioChunk:
    return audio_pb2.AudioChunk(
        id=request_id,
        model=model,
        index=chunk.index,
        audio=chunk.pcm16,
        sample_rate=chunk.sample_rate,
        duration_seconds=chunk.duration_s,
        last=chunk.last,
    )
