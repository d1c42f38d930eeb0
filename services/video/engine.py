"""The video engine protocol: one request in, progress and then the encoded clip out."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import replace

from core.errors import InvalidArgument
from core.options import VideoOptions
from core.replica import ModelFacts
from core.types import VideoChunk, VideoRequest
from core.video import read_labels
from services.engine import Engine


class VideoEngine(Engine):
    options: VideoOptions
    labels: tuple[str, ...] = ()

    def validate(self, request: VideoRequest) -> None:
        """The clip's length, and for a conditional model the labels its prompt names."""
        o = self.options
        if not o.min_seconds <= request.seconds <= o.max_seconds:
            raise InvalidArgument(
                f"seconds must be {o.min_seconds} to {o.max_seconds} for model "
                f"{self.config.name!r}, got {request.seconds}",
                field="seconds",
            )
        if self.labels:
            read_labels(request.prompt, self.labels, self.config.name)

    @abc.abstractmethod
    def generate_stream(self, request: VideoRequest) -> AsyncIterator[VideoChunk]:
        """Progress (0-100) while the frames are made and encoded; the last chunk carries the
        result. Stops between forward passes when the consumer goes away."""

    def facts(self) -> ModelFacts:
        o = self.options
        return replace(
            super().facts(),
            labels=self.labels,
            details={
                "fps": o.fps,
                "min_seconds": o.min_seconds,
                "max_seconds": o.max_seconds,
                "codec": "h264",
            },
        )
