"""Checks a domain request against the model's configured limits, for both front ends.

Every check raises InvalidArgument naming the field, so the client learns exactly what to fix.
Front ends name fields in their own vocabulary (`chat.messages` in aigc.v1, `messages` in the
OpenAI API) through `messages_field`. Checks that need the model itself (labels, voices,
context length) happen in the replica.
"""

from __future__ import annotations

import json
import math
import re

from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import AudioRequest, ImageRequest, OutputFormat, TextRequest, ToolChoice

CHAT_ROLES = ("system", "user", "assistant", "tool")
MAX_STOP_CHARS = 128
SPEED_RANGE = (0.25, 4.0)
MAX_LOGPROBS = 20  # OpenAI's top_logprobs bound (completions' logprobs: 5)
PENALTY_RANGE = (-2.0, 2.0)  # presence and frequency, as OpenAI's
BIAS_RANGE = (-100.0, 100.0)
MAX_LOGIT_BIAS = 300  # entries, as OpenAI's
MAX_TOOLS = 128  # as OpenAI's
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's function-name rule


def check_range(
    field: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise InvalidArgument(f"{field} must be in {bound}, got {value}", field=field)


def text(
    req: TextRequest,
    model: ModelConfig,
    messages_field: str = "chat.messages",
    fields: dict[str, str] | None = None,
) -> None:
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
    structure(req, fields)


def structure(req: TextRequest, fields: dict[str, str] | None = None) -> None:
    """Structured output, tools, logprobs, penalties and bias: what can be checked without the
    model (a schema's compilation and token ids are checked by the engine). `fields` renames
    a field for the front end (e.g. logprobs -> top_logprobs on chat)."""
    name = (fields or {}).get
    if req.logprobs is not None:
        check_range(name("logprobs", "logprobs"), req.logprobs, 0, MAX_LOGPROBS)
    check_range("presence_penalty", req.presence_penalty, *PENALTY_RANGE)
    check_range("frequency_penalty", req.frequency_penalty, *PENALTY_RANGE)
    check_range("repetition_penalty", req.repetition_penalty, 0.0, 2.0, low_open=True)
    if len(req.logit_bias) > MAX_LOGIT_BIAS:
        raise InvalidArgument(
            f"logit_bias has {len(req.logit_bias)} entries; at most {MAX_LOGIT_BIAS}",
            field="logit_bias",
        )
    for token, bias in req.logit_bias:
        if token < 0:
            raise InvalidArgument(f"logit_bias key {token} is not a token id", field="logit_bias")
        check_range(f"logit_bias[{token}]", bias, *BIAS_RANGE)
    if req.output_format == OutputFormat.JSON_SCHEMA:
        schema_object(req.json_schema, "response_format.json_schema.schema")
    if len(req.tools) > MAX_TOOLS:
        raise InvalidArgument(f"at most {MAX_TOOLS} tools are allowed", field="tools")
    seen: set[str] = set()
    for i, tool in enumerate(req.tools):
        if not TOOL_NAME.match(tool.name):
            raise InvalidArgument(
                f"tools[{i}].function.name must be 1 to 64 letters, digits, _ or -, "
                f"got {tool.name!r}",
                field=f"tools[{i}].function.name",
            )
        if tool.name in seen:
            raise InvalidArgument(
                f"tools[{i}].function.name {tool.name!r} is given twice",
                field=f"tools[{i}].function.name",
            )
        seen.add(tool.name)
        schema_object(tool.parameters, f"tools[{i}].function.parameters")
    if req.tool_choice in (ToolChoice.REQUIRED, ToolChoice.FUNCTION) and not req.tools:
        raise InvalidArgument("tool_choice needs tools", field="tool_choice")
    if req.tool_choice == ToolChoice.FUNCTION and req.tool_name not in seen:
        raise InvalidArgument(
            f"tool_choice names function {req.tool_name!r}, which is not in tools",
            field="tool_choice",
        )
    if req.tools and req.tool_choice != ToolChoice.NONE:
        if req.output_format != OutputFormat.TEXT:
            raise InvalidArgument(
                "response_format cannot be combined with tools (the answer is a tool call "
                "or text); set tool_choice none to use it",
                field="response_format",
            )
        if req.prompt is not None:
            raise InvalidArgument("tools need chat messages", field="tools")


def schema_object(text: str | None, field: str) -> None:
    """A JSON schema given as JSON text must be a JSON object (its keywords are checked when
    the engine compiles it)."""
    if text is None:
        raise InvalidArgument(f"{field} is required", field=field)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{field} is not JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON schema object", field=field)


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
