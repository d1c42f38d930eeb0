"""OpenAI request bodies (field names and defaults as in OpenAI's API reference).

Types are strict: a wrong type is a 400 naming the field. Unknown fields are accepted and
ignored (clients send ones we do not know, e.g. `store`, `metadata`), but fields that change
what a model returns and that we do not implement are refused by name (`unsupported`), never
silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidArgument


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str | None = None  # the pre-1.0 engine routes take it from the path
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None
    logit_bias: dict[str, int | float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # Extensions that vLLM's and llama-server's OpenAI servers accept (`extra_body` in the
    # openai client): top-k sampling, generating exactly max_tokens (benchmarks), and the
    # repetition penalty (vLLM's rule: over the prompt and the tokens so far, 1 is off).
    top_k: int | None = None
    ignore_eos: bool = False
    repetition_penalty: float | None = None

    def refuse_unsupported(self) -> None:
        if self.stream_options is not None and not self.stream:
            raise InvalidArgument(
                "stream_options is only allowed with stream: true", field="stream_options"
            )

    @property
    def bias(self) -> tuple[tuple[int, float], ...]:
        """logit_bias as (token id, bias); a key that is not a token id is a 400."""
        out = []
        for key, value in (self.logit_bias or {}).items():
            if not key.strip().isdigit():
                raise InvalidArgument(
                    f"logit_bias keys are token ids; {key!r} is not one", field="logit_bias"
                )
            out.append((int(key), float(value)))
        return tuple(out)

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs is not None and not 0 <= self.logprobs <= 5:
            raise InvalidArgument(
                f"logprobs must be in [0, 5], got {self.logprobs}", field="logprobs"
            )
        if self.suffix:
            unsupported("suffix")
        if self.best_of is not None and self.best_of != self.n:
            unsupported("best_of", "only best_of equal to n is supported")

    @property
    def prompts(self) -> list[str]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and not all(isinstance(x, str) for x in p):
            raise InvalidArgument("token-id prompts are not supported; send text", field="prompt")
        if not p:
            raise InvalidArgument("prompt must not be empty", field="prompt")
        return [str(x) for x in p]


class ContentPart(_Body):
    type: str
    text: str | None = None


class FunctionCall(_Body):
    name: str
    arguments: str = "{}"


class ToolCallBody(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Body):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallBody] | None = None  # an assistant's calls
    tool_call_id: str | None = None  # a tool message: the call it answers


class FunctionBody(_Body):
    name: str | None = None
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolBody(_Body):
    type: Literal["function"] = "function"
    function: FunctionBody


class NamedFunction(_Body):
    name: str


class NamedTool(_Body):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaBody(_Body):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaBody | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[Message]
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[ToolBody] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: bool = True
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: ResponseFormat | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        for name in ("functions", "function_call"):
            if getattr(self, name):
                unsupported(name, "it is deprecated; send tools and tool_choice instead")
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidArgument("top_logprobs needs logprobs: true", field="top_logprobs")

    @property
    def limit(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )


class ImageGenerationRequest(_Body):
    model: str | None = None
    prompt: str = ""
    n: int = 1
    size: str | None = None
    response_format: str = "b64_json"
    seed: int | None = None  # an extension (as in vLLM): reproducible images
    user: str | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None


class SpeechRequest(_Body):
    model: str | None = None
    input: str
    voice: str | None = None
    response_format: str = "wav"
    speed: float = Field(1.0)
    seed: int | None = None  # an extension: reproducible speech
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None


def unsupported(field: str, why: str = "") -> None:
    raise InvalidArgument(
        f"{field} is not supported by this server" + (f": {why}" if why else ""), field=field
    )
