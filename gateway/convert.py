"""Proto <-> domain conversion, with the validation that needs only the request and config.

Every check raises InvalidArgument naming the field, so the client learns exactly what to fix.
Checks that need the model (labels, voices, context length) happen in the replica.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from aigc.config import ModelConfig
from aigc.v1 import audio_pb2, common_pb2, image_pb2, text_pb2
from services.errors import InvalidArgument
from services.types import (
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

CHAT_ROLES = ("system", "user", "assistant", "tool")
MAX_STOP_CHARS = 128
SPEED_RANGE = (0.25, 4.0)
_FINISH = {
    FinishReason.LENGTH: text_pb2.FINISH_REASON_LENGTH,
    FinishReason.STOP: text_pb2.FINISH_REASON_STOP,
    FinishReason.CANCELLED: text_pb2.FINISH_REASON_CANCELLED,
}


def _range(field: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise InvalidArgument(f"{field} must be in {bound}, got {value}", field=field)


def random_seed() -> int:
    return secrets.randbits(63)


_PRIORITIES = {
    common_pb2.PRIORITY_UNSPECIFIED: Priority.INTERACTIVE,
    common_pb2.PRIORITY_INTERACTIVE: Priority.INTERACTIVE,
    common_pb2.PRIORITY_BATCH: Priority.BATCH,
}


def priority(value: Any) -> Priority:
    if value not in _PRIORITIES:
        raise InvalidArgument(f"unknown priority {value}", field="priority")
    return _PRIORITIES[value]


# ---- text ------------------------------------------------------------------------------
def text_request(
    req: text_pb2.GenerateTextRequest, model: ModelConfig, request_id: str, deadline: float | None
) -> TextRequest:
    limits = model.limits
    which = req.WhichOneof("input")
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    if which is None:
        raise InvalidArgument("one of prompt or chat is required", field="prompt")
    if which == "prompt":
        if not req.prompt.strip():
            raise InvalidArgument("prompt must not be empty", field="prompt")
        if len(req.prompt) > limits.max_prompt_chars:
            raise InvalidArgument(
                f"prompt is {len(req.prompt)} characters; the limit is {limits.max_prompt_chars}",
                field="prompt",
            )
        prompt = req.prompt
    else:
        if not req.chat.messages:
            raise InvalidArgument("chat.messages must not be empty", field="chat.messages")
        total = 0
        for i, m in enumerate(req.chat.messages):
            if m.role not in CHAT_ROLES:
                raise InvalidArgument(
                    f"chat.messages[{i}].role must be one of {', '.join(CHAT_ROLES)}, "
                    f"got {m.role!r}",
                    field=f"chat.messages[{i}].role",
                )
            total += len(m.content)
        if not any(m.content.strip() for m in req.chat.messages):
            raise InvalidArgument("chat messages are all empty", field="chat.messages")
        if total > limits.max_prompt_chars:
            raise InvalidArgument(
                f"chat is {total} characters; the limit is {limits.max_prompt_chars}",
                field="chat.messages",
            )
        messages = tuple(ChatMessage(m.role, m.content) for m in req.chat.messages)
    max_tokens = None
    if req.HasField("max_tokens"):
        _range("max_tokens", req.max_tokens, 1, limits.max_tokens)
        max_tokens = req.max_tokens
    if req.HasField("temperature"):
        _range("temperature", req.temperature, 0.0, 2.0)
    if req.HasField("top_p"):
        _range("top_p", req.top_p, 0.0, 1.0, low_open=True)
    if req.HasField("top_k"):
        _range("top_k", req.top_k, 0, 100_000)
    n = req.n if req.HasField("n") else 1
    _range("n", n, 1, limits.max_n)
    if len(req.stop) > limits.max_stop:
        raise InvalidArgument(
            f"at most {limits.max_stop} stop strings are allowed, got {len(req.stop)}", field="stop"
        )
    for i, s in enumerate(req.stop):
        if not s or len(s) > MAX_STOP_CHARS:
            raise InvalidArgument(
                f"stop[{i}] must have 1 to {MAX_STOP_CHARS} characters", field=f"stop[{i}]"
            )
    return TextRequest(
        request_id=request_id,
        model=model.name,
        prompt=prompt,
        messages=messages,
        max_tokens=max_tokens,
        temperature=req.temperature if req.HasField("temperature") else None,
        top_p=req.top_p if req.HasField("top_p") else None,
        top_k=req.top_k if req.HasField("top_k") else None,
        stop=tuple(req.stop),
        n=n,
        seed=req.seed if req.HasField("seed") else None,
        deadline=deadline,
        priority=priority(req.priority),
    )


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
    count = req.count if req.HasField("count") else 1
    _range("count", count, 1, model.limits.max_images)
    if req.format not in _IMAGE_FORMATS:
        raise InvalidArgument(f"unknown image format {req.format}", field="format")
    return ImageRequest(
        request_id=request_id,
        model=model.name,
        count=count,
        seed=req.seed if req.HasField("seed") else random_seed(),  # fixed here: retries repeat
        label=req.label or None,
        format=_IMAGE_FORMATS[req.format],
        deadline=deadline,
        priority=priority(req.priority),
    )


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
    if not req.text.strip():
        raise InvalidArgument("text must not be empty", field="text")
    if len(req.text) > model.limits.max_text_chars:
        raise InvalidArgument(
            f"text is {len(req.text)} characters; the limit is {model.limits.max_text_chars}",
            field="text",
        )
    speed = req.speed if req.HasField("speed") else 1.0
    _range("speed", speed, *SPEED_RANGE)
    if stream:
        if req.format not in (audio_pb2.AUDIO_FORMAT_UNSPECIFIED, audio_pb2.AUDIO_FORMAT_PCM16):
            raise InvalidArgument(
                "SynthesizeStream sends PCM16 chunks; use format PCM16 or leave it unset",
                field="format",
            )
        fmt = AudioFormat.PCM16
    else:
        formats = {
            audio_pb2.AUDIO_FORMAT_UNSPECIFIED: AudioFormat.WAV,
            audio_pb2.AUDIO_FORMAT_WAV: AudioFormat.WAV,
            audio_pb2.AUDIO_FORMAT_PCM16: AudioFormat.PCM16,
        }
        if req.format not in formats:
            raise InvalidArgument(f"unknown audio format {req.format}", field="format")
        fmt = formats[req.format]
    return AudioRequest(
        request_id=request_id,
        model=model.name,
        text=req.text,
        voice=req.voice or None,
        speed=speed,
        seed=req.seed if req.HasField("seed") else random_seed(),
        format=fmt,
        deadline=deadline,
        priority=priority(req.priority),
    )


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
