"""Video replica: one clip per request, streamed as progress and then the clip. A clip's
frames run through the generator in batches (`options.max_forward_batch`); several clips
interleave on the model's thread one forward pass at a time, up to `max_ongoing_requests`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from core.types import VideoChunk, VideoRequest
from services.replica import ReplicaBase
from services.video.engine import VideoEngine


@serve.deployment
class VideoDeployment(ReplicaBase):
    engine: VideoEngine

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        await super().__init__(model)

    async def generate_stream(self, request: VideoRequest) -> AsyncIterator[VideoChunk]:
        self.admit(request)  # a bad length or label fails before any frame is made
        async for chunk in self.engine.generate_stream(request):
            yield chunk
