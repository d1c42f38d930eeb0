"""The VideoGeneration service (aigc.v1, video.proto): proto -> the video jobs
(gateway/jobs/video_jobs.py, the same checks and jobs as /v1/videos) -> proto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aigc.v1 import video_pb2, video_pb2_grpc
from core.config import Modality
from gateway.calls import Call
from gateway.dataplane import DataPlane
from gateway.grpc_api.servicers import _Servicer, rpc
from gateway.jobs.video_jobs import VideoJobs
from gateway.jobs.videos import MEDIA, VideoRecord

CHUNK = 1 << 20  # content messages of at most 1 MiB


def video_message(r: VideoRecord) -> video_pb2.Video:
    error = r.error or {}
    return video_pb2.Video(
        id=r.id, model=r.model, status=r.status, progress=r.progress, prompt=r.prompt,
        seconds=r.seconds, size=r.size, created_at=r.created_at,
        completed_at=r.completed_at or 0, expires_at=r.expires_at or 0,
        error_code=error.get("code") or "", error_message=error.get("message") or "",
        error_field=error.get("param") or "", remixed_from=r.remixed_from or "",
    )  # fmt: skip


class VideoServicer(_Servicer, video_pb2_grpc.VideoGenerationServicer):
    modality = Modality.VIDEO

    def __init__(self, plane: DataPlane, jobs: VideoJobs) -> None:
        super().__init__(plane)
        self.jobs = jobs

    @rpc("CreateVideo")
    async def CreateVideo(self, request: Any, context: Any, call: Call) -> Any:
        source = await self.jobs.get(request.remix_of) if request.remix_of else None
        body = {
            "model": request.model,
            "prompt": request.prompt,
            "seconds": request.seconds or None,
            "size": request.size,
            "seed": request.seed if request.HasField("seed") else None,
            "narration": request.narration,
            "voice": request.voice,
        }
        return video_message(await self.jobs.create(body, source))

    @rpc("GetVideo")
    async def GetVideo(self, request: Any, context: Any, call: Call) -> Any:
        return video_message(await self.jobs.get(request.id))

    @rpc("ListVideos")
    async def ListVideos(self, request: Any, context: Any, call: Call) -> Any:
        limit = min(request.limit or 20, 100)
        records = await asyncio.to_thread(self.jobs.store.page, request.after or None, limit)
        return video_pb2.ListVideosResponse(videos=[video_message(r) for r in records])

    @rpc("DeleteVideo")
    async def DeleteVideo(self, request: Any, context: Any, call: Call) -> Any:
        return video_message(await self.jobs.delete(request.id))

    @rpc("GetVideoContent")
    async def GetVideoContent(self, request: Any, context: Any, call: Call) -> AsyncIterator[Any]:
        variant = request.variant or "video"
        data = await self.jobs.content(request.id, variant)
        for k in range(0, max(len(data), 1), CHUNK):
            mime = MEDIA[variant] if k == 0 else ""
            yield video_pb2.VideoContent(data=data[k : k + CHUNK], mime_type=mime)
