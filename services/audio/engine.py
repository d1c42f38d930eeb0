"""The speech engine protocol: batches of requests (unary) and per-sentence streams."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import replace

from core.errors import InvalidArgument
from core.options import AudioOptions
from core.replica import ModelFacts
from core.types import AudioChunk, AudioFormat, AudioRequest, AudioResult
from services.audio.encode import wav_bytes
from services.engine import Engine


class AudioEngine(Engine):
    options: AudioOptions
    voices: tuple[str, ...] = ()
    sample_rate: int = 24_000

    @property
    def default_voice(self) -> str:
        return self.options.default_voice or (self.voices or [""])[0]

    def validate(self, request: AudioRequest) -> None:
        if request.voice and request.voice not in self.voices:
            raise InvalidArgument(
                f"unknown voice {request.voice!r} for model {self.config.name!r}; "
                f"valid voices: {', '.join(self.voices)}",
                field="voice",
            )

    @abc.abstractmethod
    async def generate_pcm(self, requests: list[AudioRequest]) -> list[bytes | Exception]:
        """PCM16 audio for each request of a batch, in order; an item that fails alone is an
        exception in its place, so its neighbours in the batch still succeed."""

    @abc.abstractmethod
    def stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        """PCM16 chunks as they are ready (e.g. one per sentence); the last has last=True."""

    async def generate_batch(self, requests: list[AudioRequest]) -> list[AudioResult | Exception]:
        """The batch's audio in each request's format; a failed item is its exception."""
        results: list[AudioResult | Exception] = []
        for r, pcm in zip(requests, await self.generate_pcm(requests), strict=True):
            if isinstance(pcm, Exception):
                results.append(pcm)
                continue
            wav = r.format == AudioFormat.WAV
            results.append(
                AudioResult(
                    request_id=r.request_id,
                    model=r.model,
                    audio=wav_bytes(pcm, self.sample_rate) if wav else pcm,
                    mime_type="audio/wav" if wav else "audio/L16",
                    sample_rate=self.sample_rate,
                    duration_s=len(pcm) / 2 / self.sample_rate,
                    seed=r.seed or 0,
                )
            )
        return results

    def facts(self) -> ModelFacts:
        return replace(super().facts(), voices=self.voices, sample_rate=self.sample_rate)
