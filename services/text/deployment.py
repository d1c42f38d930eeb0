"""Text replica: unary and streaming generation; the engine batches sequences itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve

from core.types import TextChunk, TextRequest, TextResult
from services.replica import ReplicaBase
from services.text.engine import TextEngine, collect


@serve.deployment
class TextDeployment(ReplicaBase):
    engine: TextEngine

    async def generate(self, request: TextRequest) -> TextResult:
        self.admit(request)
        return await collect(request, self.engine.respond(request))

    async def generate_stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        self.admit(request)
        async for chunk in self.engine.respond(request):
            yield chunk
