"""Checks a domain request against the model's configured limits, for both front ends.

Every check raises InvalidArgument naming the field, so the client learns exactly what to fix.
Front ends name fields in their own vocabulary (`chat.messages` in aigc.v1, `messages` in the
OpenAI API) through `messages_field`. Checks that need the model itself (labels, voices,
context length) happen in the replica.
"""

from __future__ import annotations

import math

from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import AudioRequest, ImageRequest, TextRequest

CHAT_ROLES = ("system", "user", "assistant", "tool")
MAX_STOP_CHARS = 128
SPEED_RANGE = (0.25, 4.0)


def check_range(
    field: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise InvalidArgument(f"{field} must be in {bound}, got {value}", field=field)


def text(req: TextRequest, model: ModelConfig, messages_field: str = "chat.messages") -> None:
    limits = model.limits
    if req.prompt is not None:
        if not req.prompt.strip():
            raise InvalidArgument("prompt must not be empty", field="prompt")
        if len(req.prompt) > limits.max_prompt_chars:
            raise InvalidArgument(
                f"prompt is {len(req.prompt)} characters; the limit is {limits.max_prompt_chars}",
                field="prompt",
            )
    else:
        if not req.messages:
            raise InvalidArgument(f"{messages_field} must not be empty", field=messages_field)
        for i, m in enumerate(req.messages):
            if m.role not in CHAT_ROLES:
                raise InvalidArgument(
                    f"{messages_field}[{i}].role must be one of {', '.join(CHAT_ROLES)}, "
                    f"got {m.role!r}",
                    field=f"{messages_field}[{i}].role",
                )
        if not any(m.content.strip() for m in req.messages):
            raise InvalidArgument("chat messages are all empty", field=messages_field)
        total = sum(len(m.content) for m in req.messages)
        if total > limits.max_prompt_chars:
            raise InvalidArgument(
                f"chat is {total} characters; the limit is {limits.max_prompt_chars}",
                field=messages_field,
            )
    if req.max_tokens is not None:
        check_range("max_tokens", req.max_tokens, 1, limits.max_tokens)
    if req.temperature is not None:
        check_range("temperature", req.temperature, 0.0, 2.0)
    if req.top_p is not None:
        check_range("top_p", req.top_p, 0.0, 1.0, low_open=True)
    if req.top_k is not None:
        check_range("top_k", req.top_k, 0, 100_000)
    check_range("n", req.n, 1, limits.max_n)
    if len(req.stop) > limits.max_stop:
        raise InvalidArgument(
            f"at most {limits.max_stop} stop strings are allowed, got {len(req.stop)}",
            field="stop",
        )
    for i, s in enumerate(req.stop):
        if not s or len(s) > MAX_STOP_CHARS:
            raise InvalidArgument(
                f"stop[{i}] must have 1 to {MAX_STOP_CHARS} characters", field=f"stop[{i}]"
            )


def image(req: ImageRequest, model: ModelConfig, count_field: str = "count") -> None:
    check_range(count_field, req.count, 1, model.limits.max_images)


def audio(req: AudioRequest, model: ModelConfig, text_field: str = "text") -> None:
    if not req.text.strip():
        raise InvalidArgument(f"{text_field} must not be empty", field=text_field)
    if len(req.text) > model.limits.max_text_chars:
        raise InvalidArgument(
            f"{text_field} is {len(req.text)} characters; the limit is "
            f"{model.limits.max_text_chars}",
            field=text_field,
        )
    check_range("speed", req.speed, *SPEED_RANGE)
