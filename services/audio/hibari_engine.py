"""hibari-tts (Apache-2.0): ONNX acoustic model + DSP vocoder, English voices, 24 kHz.

Only voices present offline (inside the wheel, or already in hibari's cache) are served; the
engine never downloads. The ONNX graph takes one utterance at a time, so a batch runs its
items back to back on the worker threads: batching saves the per-request trips, not FLOPs.

Options: `core.options.HibariAudioOptions` (`voices`, `default_voice`, `workers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np

from core.errors import InvalidArgument
from core.options import HibariAudioOptions
from core.replica import ModelFacts
from core.types import AudioChunk, AudioRequest
from services.audio.encode import to_pcm16
from services.audio.engine import AudioEngine


class HibariAudioEngine(AudioEngine):
    options: HibariAudioOptions

    async def _start(self) -> None:
        self._pool = self.thread_pool("tts", self.options.workers)
        await self.run_in(self._pool, self._load)

    def _load(self) -> None:
        from hibari import Hibari
        from hibari.voices import VOICES, voice_path

        wanted = self.options.voices
        offline = []
        for name in VOICES:
            try:
                voice_path(name, download_missing=False)
                offline.append(name)
            except FileNotFoundError:
                continue
        missing = sorted(set(wanted or []) - set(offline))
        if missing:
            raise ValueError(f"voices not available offline: {missing}; offline: {offline}")
        self.voices = tuple(wanted or offline)
        threads = self.config.resources.torch_threads
        self._tts = {v: Hibari(voice=v, threads=threads) for v in self.voices}
        self.sample_rate = int(next(iter(self._tts.values())).sample_rate)
        self.device = "cpu"

    def facts(self) -> ModelFacts:
        return replace(super().facts(), source="hibari-tts 0.2.1 (PyPI)", license="Apache-2.0")

    @staticmethod
    def _phonemes(tts: Any, text: str) -> list[str]:
        """hibari's text normaliser rejects some inputs (e.g. stray superscripts): that is the
        client's text, so it is INVALID_ARGUMENT, not a server error."""
        try:
            return list(tts.phonemize(text))
        except Exception as exc:
            raise InvalidArgument(
                f"text cannot be read aloud ({type(exc).__name__}: {exc}); "
                "remove unusual characters",
                field="text",
            ) from None

    def _synthesize(self, r: AudioRequest) -> bytes:
        """Same as hibari's `tts(text, speed, seed)`, with the text step checked first."""
        tts = self._tts[r.voice or self.default_voice]
        rng = np.random.default_rng(r.seed or 0)
        parts = [tts.from_ids(tts.ids(ps), r.speed, rng) for ps in self._phonemes(tts, r.text)]
        return to_pcm16(np.concatenate(parts) if parts else np.zeros(0, np.float32))

    async def generate_pcm(self, requests: list[AudioRequest]) -> list[bytes | Exception]:
        results = await asyncio.gather(
            *[self.run_in(self._pool, self._synthesize, r) for r in requests],
            return_exceptions=True,
        )
        return [r if isinstance(r, bytes | Exception) else Exception(str(r)) for r in results]

    async def stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        tts = self._tts[request.voice or self.default_voice]
        sentences = await self.run_in(self._pool, self._phonemes, tts, request.text)
        rng = np.random.default_rng(request.seed or 0)
        if not sentences:
            yield AudioChunk(0, b"", self.sample_rate, last=True)
            return
        for i, phonemes in enumerate(sentences):
            samples = await self.run_in(
                self._pool, tts.from_ids, tts.ids(phonemes), request.speed, rng
            )
            yield AudioChunk(i, to_pcm16(samples), self.sample_rate, last=i == len(sentences) - 1)
