"""Hugging Face VITS checkpoints (e.g. `kakao-enterprise/vits-ljs`, `facebook/mms-tts-eng`).

A batch runs as one padded forward pass; each waveform is trimmed to its own length with
`sequence_lengths`. VITS draws its sampling noise for the whole batch, so a seed reproduces
audio exactly only for the same batch; `noise_scale: 0` and `noise_scale_duration: 0` make
output fully deterministic. Requests of different speeds run in separate passes (the speaking
rate is one number per forward).

Options: `core.options.VitsAudioOptions`; a reduced `dtype` (`float16` on CUDA, `bfloat16`)
runs under autocast over float32 weights (`scripts/gpu_check.py` measures each against float32).
Not compiled: text lengths vary and the output length depends on the predicted durations, so a
static-shape graph would not hold.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from core.options import VitsAudioOptions
from core.replica import ModelFacts
from core.types import AudioChunk, AudioRequest
from services.audio.encode import to_pcm16
from services.audio.engine import AudioEngine
from services.engine import resolve_dtype

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class VitsAudioEngine(AudioEngine):
    options: VitsAudioOptions

    async def _start(self) -> None:
        self._encoder = self.thread_pool("pcm")
        self.model = await self.load_torch_model(self._load, "vits")

    def _load(self, weights: str) -> Any:
        from transformers import AutoTokenizer, VitsModel

        opts = self.options
        self.tokenizer = AutoTokenizer.from_pretrained(weights)
        self.dtype = resolve_dtype(opts.dtype, self.device)
        # weights stay float32: a reduced `dtype` runs under autocast, which keeps the
        # durations, their cumulative sum and the alignment in float32 (cast with the model,
        # they lose whole frames past 256 in bfloat16, 2048 in float16)
        model = VitsModel.from_pretrained(weights).to(self.device).eval()  # type: ignore[arg-type]
        for key in ("noise_scale", "noise_scale_duration"):
            value = getattr(opts, key)
            if value is not None:  # VitsModel copies these from its config when it is built
                setattr(model, key, value)
                setattr(model.config, key, value)
        self.autocast = self.dtype != torch.float32
        self.sample_rate = int(model.config.sampling_rate)
        speakers = int(getattr(model.config, "num_speakers", 1) or 1)
        self.voices = (
            ("default",) if speakers <= 1 else tuple(f"speaker-{i}" for i in range(speakers))
        )
        return model

    def facts(self) -> ModelFacts:
        dtype = str(self.dtype).removeprefix("torch.")
        return replace(super().facts(), source=self.config.weights or "", details={"dtype": dtype})

    @torch.inference_mode()
    def _forward(self, texts: list[str], speed: float, seed: int, voice: str) -> list[np.ndarray]:
        """Waveforms (float32, trimmed) on the CPU: one device-to-host copy per forward pass;
        PCM conversion is left to the encoder thread, off the model's (the GPU's) path."""
        out: list[np.ndarray] = []
        step = self.options.max_forward_batch
        for start in range(0, len(texts), step):
            batch = self.tokenizer(texts[start : start + step], return_tensors="pt", padding=True)
            kwargs: dict[str, Any] = {k: v.to(self.device) for k, v in batch.items()}
            if voice.startswith("speaker-"):
                sid = int(voice.removeprefix("speaker-"))
                kwargs["speaker_id"] = sid
            torch.manual_seed(seed % 2**63)
            with torch.autocast(self.device.split(":")[0], self.dtype, enabled=self.autocast):
                result = self.model(**kwargs, speaking_rate=speed)
            waves = result.waveform.float().cpu().numpy()
            lengths = result.sequence_lengths.tolist()  # one copy, not one sync per item
            out.extend(w[:n] for w, n in zip(waves, lengths, strict=True))
        return out

    async def _pcm(self, waves: list[np.ndarray]) -> list[bytes]:
        return await self.run_in(self._encoder, lambda: [to_pcm16(w) for w in waves])

    async def generate_pcm(self, requests: list[AudioRequest]) -> list[bytes | Exception]:
        groups: dict[tuple[float, str], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.speed, r.voice or self.default_voice), []).append(i)
        pcm: list[bytes | Exception] = [b""] * len(requests)
        for (speed, voice), idx in groups.items():
            texts = [requests[i].text for i in idx]
            seed = requests[idx[0]].seed or 0
            waves = await self.run_model(self._forward, texts, speed, seed, voice)
            for i, w in zip(idx, await self._pcm(waves), strict=True):
                pcm[i] = w
        return pcm

    async def stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        sentences = [s for s in _SENTENCE_END.split(request.text.strip()) if s.strip()] or [""]
        voice = request.voice or self.default_voice
        for i, sentence in enumerate(sentences):
            waves = await self.run_model(
                self._forward, [sentence], request.speed, (request.seed or 0) + i, voice
            )
            (pcm,) = await self._pcm(waves)
            yield AudioChunk(i, pcm, self.sample_rate, last=i == len(sentences) - 1)
