"""The seam between the gateway and the model replicas: one Protocol per modality, and the
facts a replica reports about its model.

The Serve deployments (`services/<modality>/deployment.py`) implement these; the data plane
calls them through `gateway.replicas.ReplicaHandle`, which names each method by the protocol's
attribute, never by a string; the front-end tests' stand-in (`tests/standin.py`) implements the
same protocols over the echo engines. `tests/unit/test_replica_protocol.py` checks them
against these signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core.types import (
    AudioChunk,
    AudioRequest,
    AudioResult,
    ImageRequest,
    ImageResult,
    TextChunk,
    TextRequest,
    TextResult,
    VideoChunk,
    VideoRequest,
)

Detail = str | int | float | bool


@dataclass(frozen=True)
class ModelFacts:
    """What a loaded model is, as its replica reports it (ListModels, /v1/models, and the
    checks that depend on the weights: an image request's label and size, a voice).

    What the config already says (aliases, limits, batching, scaling) stays in `ModelConfig`.
    """

    parameters: int = 0
    device: str = ""  # e.g. "cpu", "cuda:0"
    load_seconds: float = 0.0
    source: str = ""  # where the weights came from (`<weights>/source.json`, an engine's own)
    license: str = ""
    labels: tuple[str, ...] = ()  # image, video: the classes a request may name
    voices: tuple[str, ...] = ()  # audio: the voices a request may name
    image_size: int | None = None  # image, video: the native (square) size in pixels
    channels: int | None = None  # image: 1, 3 or 4
    sample_rate: int | None = None  # audio: Hz
    max_context: int | None = None  # text: prompt + completion tokens one sequence may hold
    # Engine-specific facts shown as they are (dtype, compile mode, prompt format, GGUF name).
    details: Mapping[str, Detail] = field(default_factory=dict)


class Replica(Protocol):
    async def describe(self) -> ModelFacts: ...


class TextReplica(Replica, Protocol):
    async def generate(self, request: TextRequest) -> TextResult: ...

    def generate_stream(self, request: TextRequest) -> AsyncIterator[TextChunk]: ...


class ImageReplica(Replica, Protocol):
    async def generate(self, request: ImageRequest) -> ImageResult: ...

    async def generate_many(self, requests: list[ImageRequest]) -> list[ImageResult | Exception]:
        """Several requests in one call (the gateway coalesces them); each fails alone: an
        item's error comes back in its place."""
        ...


class AudioReplica(Replica, Protocol):
    async def synthesize(self, request: AudioRequest) -> AudioResult: ...

    def synthesize_stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]: ...


class VideoReplica(Replica, Protocol):
    def generate_stream(self, request: VideoRequest) -> AsyncIterator[VideoChunk]:
        """Progress as the frames are made, then the encoded clip (the last chunk)."""
        ...
