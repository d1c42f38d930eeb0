"""The OpenAI Videos API (`/v1/videos`): create (JSON, or the multipart form the openai client
sends), retrieve, list, delete, content (`variant` video | thumbnail | spritesheet), remix (the
same walk, a new prompt). Converts only: the checks and the jobs are gateway/jobs/video_jobs.py's
(each refusal a 400 naming its field), the clips the video runner's.

Our extensions: `seed` (a clip is a function of model, prompt, seconds and seed), `narration`
and `voice` (an audio track the speech model says). `input_reference` is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.errors import InvalidArgument
from gateway.jobs.video_jobs import VideoJobs
from gateway.jobs.videos import MEDIA, VideoRecord
from gateway.openai_api import http

POLL_AFTER_MS = "250"  # the openai client's create_and_poll reads it


class VideosApi:
    def __init__(self, jobs: VideoJobs, authorize: Callable[[str | None], object]) -> None:
        self.jobs = jobs
        self.authorize = authorize

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos", self.videos, methods=["GET", "POST"]),
            Route("/v1/videos/{video_id}", self.video, methods=["GET", "DELETE"]),
            Route("/v1/videos/{video_id}/content", self.content, methods=["GET"]),
            Route("/v1/videos/{video_id}/remix", self.remix, methods=["POST"]),
        ]

    async def _guarded(self, request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
        return await http.guarded(request, self.authorize, work)

    # ---- create, list --------------------------------------------------------------------
    async def videos(self, request: Request) -> Response:
        async def work() -> Response:
            if request.method == "POST":
                return await self._create(await _body(request))
            q = request.query_params
            limit = _limit(q.get("limit"))
            order = q.get("order", "desc")
            if order not in ("asc", "desc"):
                raise InvalidArgument(f"order must be asc or desc, got {order!r}", field="order")
            records = await asyncio.to_thread(self.jobs.store.page, q.get("after"), limit, order)
            data = [r.openai() for r in records]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                    "has_more": len(data) == limit,
                }
            )

        return await self._guarded(request, work)

    async def _create(self, body: dict[str, Any], source: VideoRecord | None = None) -> Response:
        if body.get("input_reference") not in (None, ""):
            raise InvalidArgument("input_reference is not supported here", field="input_reference")
        return _polled(JSONResponse((await self.jobs.create(body, source)).openai()))

    async def remix(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]

        async def work() -> Response:
            source = await self.jobs.get(video_id)
            body = await _body(request)
            return await self._create({"prompt": body.get("prompt")}, source)

        return await self._guarded(request, work)

    # ---- one video -----------------------------------------------------------------------
    async def video(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]

        async def work() -> Response:
            if request.method == "DELETE":
                await self.jobs.delete(video_id)
                return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})
            return _polled(JSONResponse((await self.jobs.get(video_id)).openai()))

        return await self._guarded(request, work)

    async def content(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]

        async def work() -> Response:
            variant = request.query_params.get("variant", "video")
            data = await self.jobs.content(video_id, variant)
            return Response(data, media_type=MEDIA[variant])

        return await self._guarded(request, work)


async def _body(request: Request) -> dict[str, Any]:
    """JSON, or a form (multipart or urlencoded: what the openai client sends)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=2**20)
        except Exception as exc:
            raise InvalidArgument(f"the body is not a readable form: {exc}", "prompt") from None
        try:
            return {k: (v if isinstance(v, str) else "<file>") for k, v in form.multi_items()}
        finally:
            await form.close()
    return await http.read_json(request, 2**20)


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidArgument(f"limit must be 1 to 100, got {raw!r}", field="limit")
    return int(raw)


def _polled(response: Response) -> Response:
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response
