"""The playground: a static page on the HTTP front end at `/` (files in `playground/`).

The page is plain HTML/CSS/JS modules with no build step and nothing fetched from elsewhere; it
talks to the gateway only through the public OpenAI-compatible routes and `/metrics`, sending
the API key the user types as a bearer token. The files themselves need no key: they hold no
data, and the page must load to ask for one.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

FILES = Path(__file__).resolve().parent / "playground"
INDEX = FILES / "index.html"
PREFIX = "/playground"
# Only this origin's scripts, styles and API; images and audio are data:/blob: URLs the page
# builds from API responses.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


async def index(request: Request) -> Response:
    return FileResponse(
        INDEX,
        media_type="text/html; charset=utf-8",
        headers={"content-security-policy": CSP, "cache-control": "no-cache"},
    )


class _Static(StaticFiles):
    """Revalidated on every load (ETag), so a new gateway's page is never mixed with old
    cached modules."""

    def file_response(
        self, full_path: PathLike[str] | str, stat_result: os.stat_result, scope: Scope,
        status_code: int = 200,
    ) -> Response:  # fmt: skip
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = "no-cache"
        return response


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Mount(PREFIX, app=_Static(directory=FILES), name="playground"),
    ]
