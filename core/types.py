"""Domain objects passed between the gateway and the replicas (no gRPC, no torch).

They are plain dataclasses so they pickle cheaply through Ray handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Priority(StrEnum):
    """Admission tier: interactive work goes first; batch work uses idle capacity."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


class FinishReason(StrEnum):
    LENGTH = "length"
    STOP = "stop"
    CANCELLED = "cancelled"
    TOOL_CALLS = "tool_calls"  # the answer is the completion's tool calls


@dataclass(frozen=True)
class ToolCall:
    """A call of one of the request's tools: in an assistant message of the history, or as a
    completion made it. `arguments` is JSON text (an object), as OpenAI sends it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None


@dataclass(frozen=True)
class Tool:
    """A function the model may call: `parameters` is its arguments' JSON schema, as JSON text
    (so the request stays hashable and cheap to pickle)."""

    name: str
    description: str = ""
    parameters: str = '{"type": "object"}'


class ToolChoice(StrEnum):
    NONE = "none"  # the tools are not offered
    AUTO = "auto"  # the model answers or calls tools
    REQUIRED = "required"  # the model calls at least one tool
    FUNCTION = "function"  # the model calls `TextRequest.tool_name`


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON matching `TextRequest.json_schema`


@dataclass(frozen=True)
class TextRequest:
    request_id: str
    model: str
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None
    deadline: float | None = None  # time.time() by which the client stops waiting
    priority: Priority = Priority.INTERACTIVE
    ignore_eos: bool = False  # generate exactly max_tokens (benchmarks, as vLLM's ignore_eos)
    # Structured output: decoding is constrained to the format (a grammar), never checked after.
    output_format: OutputFormat = OutputFormat.TEXT
    json_schema: str | None = None  # JSON text of the schema (output_format JSON_SCHEMA)
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice.AUTO
    tool_name: str | None = None  # tool_choice FUNCTION: the function to call
    parallel_tool_calls: bool = True
    # Logprobs: None is off; k >= 0 gives each sampled token's logprob and its k most likely
    # alternatives, from the model's raw distribution (before temperature, penalties, bias
    # and grammar, as vLLM's default `raw_logprobs`).
    logprobs: int | None = None
    echo: bool = False  # completions: the prompt comes first in the text (as OpenAI's echo)
    # Penalties over the tokens generated so far (OpenAI's definitions), vLLM's
    # repetition_penalty over prompt and generated tokens, and a bias per token id.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def shapes_logits(self) -> bool:
        """Whether sampling needs more than temperature, top-k and top-p."""
        return bool(
            self.presence_penalty
            or self.frequency_penalty
            or self.repetition_penalty != 1.0
            or self.logit_bias
        )


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token (or an alternative to it): its text, UTF-8 bytes and logprob."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TokenLogprob, ...] = ()  # the most likely tokens at its position, best first


@dataclass
class ToolCallDelta:
    """A piece of a completion's tool call `index`: its first piece has the id and name, then
    pieces of the arguments' JSON text follow (as OpenAI streams them)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class TextChunk:
    """A delta of one completion. `finish_reason` is set on its last chunk."""

    index: int
    delta: str
    token_count: int = 0  # tokens this delta represents
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0  # set on the final chunk of each completion
    logprobs: list[TokenLogprob] | None = None  # the tokens of this delta (request.logprobs)
    tool_calls: list[ToolCallDelta] | None = None


@dataclass
class StreamUsage:
    """Token counts of a text stream, from its chunks: the one rule every front end, the data
    plane's metrics and the load harness's baselines use. Completion tokens: every chunk's
    `token_count`. Prompt tokens: once per prompt (its n completions share it), from the final
    chunks. `add(chunk, prompt)` returns True when that chunk ends the stream's last completion.
    """

    completions: int = 1  # n x prompts: final chunks to expect
    completion_tokens: int = 0
    finished: int = 0
    _prompt: dict[int, int] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        return sum(self._prompt.values())

    def add(self, chunk: TextChunk, prompt: int = 0) -> bool:
        self.completion_tokens += chunk.token_count
        if chunk.finish_reason is None:
            return False
        self._prompt[prompt] = chunk.prompt_tokens
        self.finished += 1
        return self.finished == self.completions


@dataclass
class Completion:
    index: int
    text: str
    finish_reason: FinishReason
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class TextResult:
    request_id: str
    model: str
    completions: list[Completion]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.completions)


class ImageFormat(StrEnum):
    PNG = "png"
    RAW = "raw"


@dataclass(frozen=True)
class ImageRequest:
    request_id: str
    model: str
    count: int = 1
    # None: the data plane draws one before the first attempt, so a retry reproduces the same
    # images (an engine called directly reads None as 0)
    seed: int | None = None
    label: str | None = None
    format: ImageFormat = ImageFormat.PNG
    deadline: float | None = None
    priority: Priority = Priority.INTERACTIVE


@dataclass
class GeneratedImage:
    data: bytes
    mime_type: str
    width: int
    height: int
    channels: int
    seed: int
    label: str | None = None


@dataclass
class ImageResult:
    request_id: str
    model: str
    images: list[GeneratedImage] = field(default_factory=list)


class AudioFormat(StrEnum):
    WAV = "wav"
    PCM16 = "pcm16"


@dataclass(frozen=True)
class AudioRequest:
    request_id: str
    model: str
    text: str
    voice: str | None = None
    speed: float = 1.0
    seed: int | None = None  # as ImageRequest.seed
    format: AudioFormat = AudioFormat.WAV
    deadline: float | None = None
    priority: Priority = Priority.INTERACTIVE


@dataclass
class AudioChunk:
    """PCM16 mono samples of one piece (e.g. one sentence)."""

    index: int
    pcm16: bytes
    sample_rate: int
    last: bool = False

    @property
    def duration_s(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate


@dataclass
class AudioResult:
    request_id: str
    model: str
    audio: bytes
    mime_type: str
    sample_rate: int
    duration_s: float
    seed: int


@dataclass(frozen=True)
class VideoRequest:
    """A clip: a walk through the model's latent space, `seconds` long at the model's frame
    rate. `prompt` names the labels to pass through, in order ("a sneaker turning into a
    bag"), for a conditional model; an unconditional one walks between seeded points."""

    request_id: str
    model: str
    prompt: str
    seconds: int
    seed: int | None = None  # as ImageRequest.seed: the walk's points
    deadline: float | None = None
    priority: Priority = Priority.INTERACTIVE
    # the clip's audio track: PCM16 mono (the gateway has the speech model say the narration),
    # cut or padded with silence to the clip's length; empty: no audio track
    narration: bytes = b""
    narration_rate: int = 0


@dataclass
class VideoResult:
    request_id: str
    model: str
    video: bytes  # H.264 in MP4
    thumbnail: bytes  # PNG, the middle frame
    spritesheet: bytes  # PNG, a grid of frames
    width: int
    height: int
    fps: int
    frames: int
    seed: int
    labels: tuple[str, ...] = ()  # the labels the walk passed through

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


@dataclass
class VideoChunk:
    """A clip's progress (0-100) while it is made; the last one carries the result."""

    progress: int
    result: VideoResult | None = None
