"""aigc.v1 proto <-> domain conversion; the domain request is then checked against the model's
limits by `gateway.validate` (shared with the OpenAI front end). Every check raises
InvalidArgument naming the field in aigc.v1's terms (e.g. `chat.messages[1].role`,
`tools[0].name`, `response_format.json_schema.schema_json`)."""

from __future__ import annotations

import json
import re
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
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from core.types import OutputFormat as Format
from gateway import validate

_FINISH = {
    FinishReason.LENGTH: text_pb2.FINISH_REASON_LENGTH,
    FinishReason.STOP: text_pb2.FINISH_REASON_STOP,
    FinishReason.CANCELLED: text_pb2.FINISH_REASON_CANCELLED,
    FinishReason.TOOL_CALLS: text_pb2.FINISH_REASON_TOOL_CALLS,
}
_TOOL_CHOICES = {
    text_pb2.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoice.AUTO,
    text_pb2.TOOL_CHOICE_MODE_NONE: ToolChoice.NONE,
    text_pb2.TOOL_CHOICE_MODE_AUTO: ToolChoice.AUTO,
    text_pb2.TOOL_CHOICE_MODE_REQUIRED: ToolChoice.REQUIRED,
}
_FORMATS = {
    None: Format.TEXT,
    "text": Format.TEXT,
    "json_object": Format.JSON_OBJECT,
    "json_schema": Format.JSON_SCHEMA,
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
    output_format, json_schema = response_format(req.response_format)
    choice, tool_name = tool_choice(req.tool_choice)
    domain = TextRequest(
        request_id=request_id,
        model=model.name,
        prompt=req.prompt if which == "prompt" else None,
        messages=tuple(chat_message(m, i) for i, m in enumerate(req.chat.messages)),
        max_tokens=req.max_tokens if req.HasField("max_tokens") else None,
        temperature=req.temperature if req.HasField("temperature") else None,
        top_p=req.top_p if req.HasField("top_p") else None,
        top_k=req.top_k if req.HasField("top_k") else None,
        stop=tuple(req.stop),
        n=req.n if req.HasField("n") else 1,
        seed=req.seed if req.HasField("seed") else None,
        deadline=deadline,
        priority=priority(req.priority),
        output_format=output_format,
        json_schema=json_schema,
        tools=tuple(tool(t) for t in req.tools),
        tool_choice=choice,
        tool_name=tool_name,
        parallel_tool_calls=(
            req.parallel_tool_calls if req.HasField("parallel_tool_calls") else True
        ),
        logprobs=req.logprobs if req.HasField("logprobs") else None,
        presence_penalty=req.presence_penalty if req.HasField("presence_penalty") else 0.0,
        frequency_penalty=req.frequency_penalty if req.HasField("frequency_penalty") else 0.0,
        repetition_penalty=(req.repetition_penalty if req.HasField("repetition_penalty") else 1.0),
        logit_bias=tuple(sorted(req.logit_bias.items())),
    )
    try:
        validate.text(domain, model)
    except InvalidArgument as exc:
        raise in_aigc_terms(exc, domain) from None
    return domain


def chat_message(m: text_pb2.ChatMessage, i: int) -> ChatMessage:
    calls = []
    for j, c in enumerate(m.tool_calls):
        where = f"chat.messages[{i}].tool_calls[{j}]"
        if m.role != "assistant":
            raise InvalidArgument(
                f"{where}: only an assistant message carries tool calls, not {m.role!r}",
                field=f"chat.messages[{i}].tool_calls",
            )
        if not c.name:
            raise InvalidArgument(f"{where}.name must name a tool", field=f"{where}.name")
        calls.append(ToolCall(c.id, c.name, json_object(c.arguments, f"{where}.arguments")))
    return ChatMessage(
        m.role,
        m.content,
        tool_calls=tuple(calls),
        tool_call_id=m.tool_call_id or None,
        name=m.name or None,
    )


def json_object(text: str, field: str) -> str:
    """JSON text of an object (empty text: `{}`), as it came."""
    if not text.strip():
        return "{}"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{field} is not JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object", field=field)
    return text


def response_format(fmt: text_pb2.ResponseFormat) -> tuple[Format, str | None]:
    which = fmt.WhichOneof("format")
    schema = fmt.json_schema.schema_json if which == "json_schema" else ""
    return _FORMATS[which], schema or None  # no schema: validate says it is required


def tool(t: text_pb2.Tool) -> Tool:
    return Tool(t.name, t.description, t.parameters_json or Tool.parameters)


def tool_choice(choice: text_pb2.ToolChoice) -> tuple[ToolChoice, str | None]:
    which = choice.WhichOneof("choice")
    if which == "function":
        return ToolChoice.FUNCTION, choice.function
    if choice.mode not in _TOOL_CHOICES:
        raise InvalidArgument(f"unknown tool choice mode {choice.mode}", field="tool_choice.mode")
    return _TOOL_CHOICES[choice.mode], None


# `validate` names the request's new fields as the OpenAI API does; aigc.v1 calls them so.
_AIGC_FIELDS = [
    (re.compile(r"tools\[(\d+)\]\.function\.name"), r"tools[\1].name"),
    (re.compile(r"tools\[(\d+)\]\.function\.parameters"), r"tools[\1].parameters_json"),
    (
        re.compile(r"response_format\.json_schema\.schema"),
        "response_format.json_schema.schema_json",
    ),
]


def in_aigc_terms(exc: InvalidArgument, req: TextRequest) -> InvalidArgument:
    """`exc` with its field (and the message that starts with it) in aigc.v1's names."""
    field = exc.field
    if field is None:
        return exc
    renamed = field
    if field == "tool_choice":
        function = req.tool_choice == ToolChoice.FUNCTION
        renamed = "tool_choice.function" if function else "tool_choice.mode"
    for pattern, name in _AIGC_FIELDS:
        if pattern.fullmatch(field):
            renamed = pattern.sub(name, field)
    if renamed == field:
        return exc
    message = exc.message
    if message.startswith(field) and field != "tool_choice":
        message = renamed + message[len(field) :]
    return type(exc)(message, renamed, **exc.details)


def finish_reason(reason: FinishReason | None) -> Any:
    return _FINISH[reason] if reason is not None else text_pb2.FINISH_REASON_UNSPECIFIED


def usage(prompt_tokens: int, completion_tokens: int) -> text_pb2.Usage:
    return text_pb2.Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def token_logprob(t: TokenLogprob) -> text_pb2.TokenLogprob:
    return text_pb2.TokenLogprob(
        token=t.token,
        logprob=t.logprob,
        bytes=bytes(t.bytes),
        top=[token_logprob(alt) for alt in t.top],
    )


def tool_call(c: ToolCall) -> text_pb2.ToolCall:
    return text_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments)


def tool_call_delta(d: ToolCallDelta) -> text_pb2.ToolCallDelta:
    return text_pb2.ToolCallDelta(
        index=d.index, id=d.id or "", name=d.name or "", arguments=d.arguments
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
                logprobs=[token_logprob(t) for t in c.logprobs or ()],
                tool_calls=[tool_call(t) for t in c.tool_calls],
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
        logprobs=[token_logprob(t) for t in chunk.logprobs or ()],
        tool_calls=[tool_call_delta(d) for d in chunk.tool_calls or ()],
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
