"""A model-free speech engine: a tone, 50 ms per character of text by default. Measures overhead."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from core.options import EchoAudioOptions
from core.types import AudioChunk, AudioRequest
from services.audio.encode import to_pcm16
from services.audio.engine import AudioEngine


class EchoAudioEngine(AudioEngine):
    """Options: `core.options.EchoAudioOptions` (`voices`, `seconds_per_char`)."""

    options: EchoAudioOptions

    async def _start(self) -> None:
        self.voices = tuple(self.options.voices)

    def _tone(self, text: str, speed: float) -> bytes:
        n = int(len(text) * self.options.seconds_per_char / speed * self.sample_rate)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        return to_pcm16(0.2 * np.sin(2 * np.pi * 220.0 * t))

    async def generate_pcm(self, requests: list[AudioRequest]) -> list[bytes | Exception]:
        return [self._tone(r.text, r.speed) for r in requests]

    async def stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        words = request.text.split() or [""]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield AudioChunk(i, self._tone(word, request.speed), self.sample_rate, last)
