"""A model-free video engine: flat frames whose colour walks away from the seed's, encoded as
the GAN engine's clips are (H.264 MP4, thumbnail, spritesheet). For front-end tests and to
measure the encoder and the job path without a model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np

from core.options import EchoVideoOptions
from core.replica import ModelFacts
from core.types import VideoChunk, VideoRequest, VideoResult
from core.video import read_labels
from services.video.encode import encode_mp4, spritesheet, thumbnail
from services.video.engine import VideoEngine


class EchoVideoEngine(VideoEngine):
    options: EchoVideoOptions

    async def _start(self) -> None:
        self.labels = tuple(self.options.labels)

    def facts(self) -> ModelFacts:
        return replace(super().facts(), image_size=self.options.size, channels=3)

    async def generate_stream(self, request: VideoRequest) -> AsyncIterator[VideoChunk]:
        o = self.options
        named = read_labels(request.prompt, self.labels, self.config.name) if self.labels else ()
        start = np.frombuffer((request.seed or 0).to_bytes(8, "little")[:3], dtype=np.uint8)
        frames = np.empty((request.seconds * o.fps, o.size, o.size, 3), dtype=np.uint8)
        for second in range(request.seconds):
            for k in range(second * o.fps, (second + 1) * o.fps):
                frames[k] = (start.astype(int) + 8 * k) % 256
            if o.delay_s:
                await asyncio.sleep(o.delay_s)
            yield VideoChunk(progress=90 * (second + 1) // request.seconds)
        audio = (request.narration, request.narration_rate) if request.narration else None
        video = await asyncio.to_thread(encode_mp4, frames, o.fps, o.crf, audio)
        yield VideoChunk(
            progress=100,
            result=VideoResult(
                request.request_id, request.model, video, thumbnail(frames),
                spritesheet(frames, o.sprite_columns, o.sprite_frames), o.size, o.size, o.fps,
                len(frames), request.seed or 0, tuple(dict.fromkeys(named)),
            ),
        )  # fmt: skip
