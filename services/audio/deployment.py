"""Speech replica: unary requests batched by `@serve.batch` (`Replica.batcher`); streams go
sentence by sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from core.types import AudioChunk, AudioRequest, AudioResult
from services.audio.engine import AudioEngine
from services.engine import check_deadline
from services.replica import ReplicaBase


@serve.deployment
class AudioDeployment(ReplicaBase):
    engine: AudioEngine

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        await super().__init__(model)
        self._batched = self.batcher(self.engine.generate_batch)

    async def synthesize(self, request: AudioRequest) -> AudioResult:
        self.admit(request)
        return await self._batched(request)  # an item's own failure (unreadable text) raises

    async def synthesize_stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        self.admit(request)
        async for chunk in self.engine.stream(request):
            yield chunk
            if not chunk.last:  # the next sentence is work: only while the client waits
                check_deadline(request.deadline, "during the stream")
