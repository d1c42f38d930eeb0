"""Speech replica: unary requests batched by `@serve.batch` (`Replica.batcher`); streams go
sentence by sentence."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from services.audio.engine import AudioEngine
from services.replica import Replica
from services.types import AudioChunk, AudioRequest, AudioResult

_Queued = tuple[AudioRequest, float]


@serve.deployment
class AudioReplica(Replica):
    engine: AudioEngine

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        await super().__init__(model)
        self._batched = self.batcher(self._run_batch)

    async def synthesize(self, request: AudioRequest) -> AudioResult:
        self.check_deadline(request.deadline)
        self.engine.validate(request)
        result = await self._batched((request, time.perf_counter()))
        if isinstance(result, Exception):  # this item failed alone (e.g. unreadable text)
            raise result
        return result

    async def synthesize_stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        self.engine.validate(request)
        async for chunk in self.engine.stream(request):
            yield chunk

    async def _run_batch(self, items: list[_Queued]) -> list[AudioResult | Exception]:
        started = time.perf_counter()
        for _, enqueued in items:
            self.engine.observer.queue_wait(started - enqueued)
        results = await self.engine.synthesize_batch([request for request, _ in items])
        self.engine.observer.batch(len(items), time.perf_counter() - started)
        return results
