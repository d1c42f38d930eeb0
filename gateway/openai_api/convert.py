"""OpenAI JSON <-> domain conversion (shapes as in OpenAI's API reference)."""

from __future__ import annotations

import json
import re
from typing import Any

from core.config import ModelConfig
from core.errors import InvalidArgument
from core.replica import ModelFacts
from core.types import (
    AudioFormat,
    AudioRequest,
    ChatMessage,
    ImageFormat,
    ImageRequest,
    OutputFormat,
    Priority,
    TextRequest,
    Tool,
    ToolCall,
    ToolChoice,
)
from gateway import validate
from gateway.openai_api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    ImageGenerationRequest,
    Message,
    SpeechRequest,
    _Sampling,
)

ROLES = {"developer": "system"}  # OpenAI's newer name for the system role


def priority(tier: str | None) -> Priority:
    return Priority.BATCH if tier == "flex" else Priority.INTERACTIVE


# ---- text ------------------------------------------------------------------------------
def _text_request(
    body: _Sampling,
    model: ModelConfig,
    request_id: str,
    deadline: float | None,
    *,
    prompt: str | None = None,
    messages: tuple[ChatMessage, ...] = (),
    max_tokens: int | None,
    messages_field: str = "messages",
    structure: dict[str, Any] | None = None,
    fields: dict[str, str] | None = None,
) -> TextRequest:
    body.refuse_unsupported()
    request = TextRequest(
        request_id=request_id,
        model=model.name,
        prompt=prompt,
        messages=messages,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=body.stops,
        n=body.n,
        seed=body.seed,
        deadline=deadline,
        priority=priority(body.service_tier),
        ignore_eos=body.ignore_eos,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
        logit_bias=body.bias,
        **(structure or {}),
    )
    validate.text(request, model, messages_field=messages_field, fields=fields)
    return request


def completion_requests(
    body: CompletionRequest, model: ModelConfig, request_id: str, deadline: float | None
) -> list[TextRequest]:
    """One domain request per prompt; their choices are numbered prompt-major."""
    prompts = body.prompts
    return [
        _text_request(
            body, model, request_id if len(prompts) == 1 else f"{request_id}-{i}", deadline,
            prompt=p, max_tokens=body.max_tokens,
            structure={"logprobs": body.logprobs, "echo": body.echo},
        )
        for i, p in enumerate(prompts)
    ]  # fmt: skip


def _content(message: Message, i: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for k, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise InvalidArgument(
                f"messages[{i}].content[{k}]: only text parts are supported, got {part.type!r}",
                field=f"messages[{i}].content[{k}].type",
            )
        texts.append(part.text)
    return "".join(texts)


def _message(m: Message, i: int) -> ChatMessage:
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ())
    if m.role == "tool" and not m.tool_call_id:
        raise InvalidArgument(
            f"messages[{i}].tool_call_id is required for a tool message",
            field=f"messages[{i}].tool_call_id",
        )
    return ChatMessage(ROLES.get(m.role, m.role), _content(m, i), calls, m.tool_call_id, m.name)


def _json_text(value: dict[str, Any] | None, default: str) -> str:
    return default if value is None else json.dumps(value)


def structure(body: ChatCompletionRequest) -> dict[str, Any]:
    """The chat request's structured output, tools and logprobs, as TextRequest fields."""
    out: dict[str, Any] = {}
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        out["output_format"] = OutputFormat.JSON_OBJECT
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise InvalidArgument(
                "response_format.json_schema.schema is required for type json_schema",
                field="response_format.json_schema.schema",
            )
        out["output_format"] = OutputFormat.JSON_SCHEMA
        out["json_schema"] = json.dumps(fmt.json_schema.schema_)
    tools = []
    for i, tool in enumerate(body.tools or ()):
        if not tool.function.name:
            raise InvalidArgument(
                f"tools[{i}].function.name is required", field=f"tools[{i}].function.name"
            )
        parameters = _json_text(tool.function.parameters, '{"type": "object"}')
        tools.append(Tool(tool.function.name, tool.function.description, parameters))
    out["tools"] = tuple(tools)
    choice = body.tool_choice
    if isinstance(choice, str):
        out["tool_choice"] = ToolChoice(choice)
    elif choice is not None:
        out["tool_choice"] = ToolChoice.FUNCTION
        out["tool_name"] = choice.function.name
    elif not tools:
        out["tool_choice"] = ToolChoice.NONE
    out["parallel_tool_calls"] = body.parallel_tool_calls
    if body.logprobs:
        out["logprobs"] = body.top_logprobs or 0
    return out


def chat_request(
    body: ChatCompletionRequest, model: ModelConfig, request_id: str, deadline: float | None
) -> TextRequest:
    messages = tuple(_message(m, i) for i, m in enumerate(body.messages))
    return _text_request(
        body, model, request_id, deadline, messages=messages, max_tokens=body.limit,
        structure=structure(body), fields={"logprobs": "top_logprobs"},
    )  # fmt: skip


# ---- images ----------------------------------------------------------------------------
def _label_of(prompt: str, labels: list[str]) -> str | None:
    """The one label a prompt names (case-insensitive, as a whole word or phrase)."""
    text = prompt.strip().lower()
    exact = [label for label in labels if label.lower() == text]
    if exact:
        return exact[0]
    found = [
        label
        for label in labels
        if re.search(rf"(?<![\w-]){re.escape(label.lower())}(?![\w-])", text)
    ]
    if len(found) > 1:
        raise InvalidArgument(
            f"prompt names several labels ({', '.join(found)}); name one", field="prompt"
        )
    return found[0] if found else None


def image_request(
    body: ImageGenerationRequest,
    model: ModelConfig,
    facts: ModelFacts,
    request_id: str,
    deadline: float | None,
) -> ImageRequest:
    if body.response_format != "b64_json":
        raise InvalidArgument(
            "response_format must be b64_json (PNG bytes in the response); "
            "this server keeps no image URLs",
            field="response_format",
        )
    native = facts.image_size
    if body.size is not None and native and body.size != f"{native}x{native}":
        raise InvalidArgument(
            f"size {body.size!r} is not served by {model.name!r}; sizes: {native}x{native}",
            field="size",
        )
    labels = list(facts.labels)
    label = None
    if labels:
        label = _label_of(body.prompt, labels)
        if label is None:
            raise InvalidArgument(
                f"model {model.name!r} draws one of these labels; name one in the prompt: "
                + ", ".join(labels),
                field="prompt",
            )
    request = ImageRequest(
        request_id=request_id,
        model=model.name,
        count=body.n,
        seed=body.seed,  # None: the data plane draws one
        label=label,
        format=ImageFormat.PNG,
        deadline=deadline,
        priority=priority(body.service_tier),
    )
    validate.image(request, model, count_field="n")
    return request


# ---- speech ----------------------------------------------------------------------------
SPEECH_FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm"}


def speech_request(
    body: SpeechRequest, model: ModelConfig, request_id: str, deadline: float | None
) -> AudioRequest:
    if body.response_format not in SPEECH_FORMATS:
        raise InvalidArgument(
            f"response_format {body.response_format!r} is not supported; use one of "
            + ", ".join(SPEECH_FORMATS),
            field="response_format",
        )
    request = AudioRequest(
        request_id=request_id,
        model=model.name,
        text=body.input,
        voice=body.voice or None,
        speed=body.speed,
        seed=body.seed,  # None: the data plane draws one
        format=AudioFormat.PCM16,
        deadline=deadline,
        priority=priority(body.service_tier),
    )
    validate.audio(request, model, text_field="input")
    return request
