"""OpenAI's response shapes as typed models (as vLLM's protocol module has them), and the SSE
writer that streams them: the front end builds these, never dicts by hand.

Fields are OpenAI's, in OpenAI's order; a field OpenAI sends as `null` is None here and is sent
as null, except where OpenAI leaves it out (a chat delta's unset role or content, `usage` on a
chunk of a stream that did not ask for it).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

from core.errors import Failure
from core.types import FinishReason, TextChunk, TextResult
from gateway.dataplane import TextStream

SSE_DONE = b"data: [DONE]\n\n"


def finish_reason(reason: FinishReason | None) -> str | None:
    if reason is None:
        return None
    return "length" if reason == FinishReason.LENGTH else "stop"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


# ---- unary -------------------------------------------------------------------------------
class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage


def completion_response(
    results: list[TextResult], request_id: str, model: str, *, chat: bool
) -> Completion | ChatCompletion:
    """The response to a (chat) completion whose parts (prompts) gave `results`: choices
    numbered prompt-major, usage summed over the parts."""
    usage = Usage.of(
        sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)
    )
    numbered = [
        (k * len(result.completions) + c.index, c)
        for k, result in enumerate(results)
        for c in result.completions
    ]
    if chat:
        return ChatCompletion(
            id=request_id,
            model=model,
            usage=usage,
            choices=[
                ChatChoice(
                    index=i,
                    message=AssistantMessage(content=c.text),
                    finish_reason=finish_reason(c.finish_reason),
                )
                for i, c in numbered
            ],
        )
    return Completion(
        id=request_id,
        model=model,
        usage=usage,
        choices=[
            CompletionChoice(index=i, text=c.text, finish_reason=finish_reason(c.finish_reason))
            for i, c in numbered
        ],
    )


# ---- streamed ------------------------------------------------------------------------------
class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _unset_left_out(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChunk(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


def sse(data: BaseModel | dict[str, Any], *, exclude: set[str] | None = None) -> bytes:
    """One SSE event. A model is serialized by pydantic's own JSON writer: a chat delta event
    (built and written) took 7.2 us here against 10.4 us through model_dump + json.dumps."""
    if isinstance(data, BaseModel):
        body = data.model_dump_json(exclude=exclude).encode()
    else:
        body = json.dumps(data, separators=(",", ":")).encode()
    return b"data: " + body + b"\n\n"


class ChunkWriter:
    """The SSE events of one streamed (chat) completion, in OpenAI's shapes: a chat choice's
    first event names the role, its finish reason comes once in an event with an empty delta;
    with `include_usage` every event carries `usage: null` and a last event the usage."""

    def __init__(self, request_id: str, model: str, *, chat: bool, include_usage: bool) -> None:
        self.request_id = request_id
        self.model = model
        self.chat = chat
        self.include_usage = include_usage
        self.created = now()
        self.started: set[int] = set()
        self._exclude = None if include_usage else {"usage"}

    def delta(self, index: int, text: str, reason: FinishReason | None) -> list[bytes]:
        """The events for one delta of choice `index`."""
        finish = finish_reason(reason)
        if not self.chat:
            choice = CompletionChoice(index=index, text=text, finish_reason=finish)
            return [self._event(CompletionChunk, [choice])]
        events = []
        if index not in self.started:
            self.started.add(index)
            events.append(self._chat(index, ChatDelta(role="assistant", content=""), None))
        if text:
            events.append(self._chat(index, ChatDelta(content=text), None))
        if finish is not None:
            events.append(self._chat(index, ChatDelta(), finish))
        return events

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        kind = ChatCompletionChunk if self.chat else CompletionChunk
        return sse(
            kind(
                id=self.request_id,
                created=self.created,
                model=self.model,
                choices=[],
                usage=Usage.of(prompt_tokens, completion_tokens),
            )
        )

    def _chat(self, index: int, delta: ChatDelta, finish: str | None) -> bytes:
        choice = ChatChunkChoice(index=index, delta=delta, finish_reason=finish)
        return self._event(ChatCompletionChunk, [choice])

    def _event(
        self, kind: type[ChatCompletionChunk | CompletionChunk], choices: list[Any]
    ) -> bytes:
        chunk = kind(id=self.request_id, created=self.created, model=self.model, choices=choices)
        return sse(chunk, exclude=self._exclude)

    async def events(
        self,
        first: tuple[int, TextChunk],
        stream: TextStream,
        per_part: int,
        failed: Callable[[Exception], Failure],
        error_body: Callable[[Failure], dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        """The whole SSE body: each delta (choices numbered prompt-major, `per_part` to a
        prompt), the usage the data plane kept when asked for, and [DONE]. An error after the
        stream began is an error event (`failed` renders it and records it on the call)."""
        try:
            item: tuple[int, TextChunk] | None = first
            while item is not None:
                k, chunk = item
                index = k * per_part + chunk.index
                for event in self.delta(index, chunk.delta, chunk.finish_reason):
                    yield event
                item = await anext(stream, None)
            if self.include_usage:
                yield self.usage(stream.usage.prompt_tokens, stream.usage.completion_tokens)
        except Exception as exc:  # after the stream began: an error event, then [DONE]
            yield sse(error_body(failed(exc)))
        finally:
            await stream.aclose()
        yield SSE_DONE


# ---- images --------------------------------------------------------------------------------
class ImageData(BaseModel):
    b64_json: str


class ImagesResponse(BaseModel):
    created: int = Field(default_factory=now)
    data: list[ImageData]
