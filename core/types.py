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


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


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


@dataclass
class TextChunk:
    """A delta of one completion. `finish_reason` is set on its last chunk."""

    index: int
    delta: str
    token_count: int = 0  # tokens this delta represents
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0  # set on the final chunk of each completion


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
