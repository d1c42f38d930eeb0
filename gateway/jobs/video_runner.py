"""The video runner: each gateway runs one, and makes the clips of the video jobs it holds a
lease on (gateway/jobs/videos.py), `concurrency` at a time, through the data plane on the
batch tier (admission, metrics and cancellation apply as to any request).

As the batch runner: a job is claimed with a lease renewed every third of `lease_s`; a renewal
that fails (the job was deleted, or another gateway took it over after this one stalled)
cancels the clip, which cancels the replica's stream. A refusal for overload waits its retry
hint and tries again (the job stays queued), a lost replica is tried again a few times; any
other error fails the job with its code and message (a 400-class refusal names its field, as
the API would). A gateway that stops gives
its unfinished jobs back, so a restarted gateway (or another) resumes them at once; one that
dies holds them until its leases expire. Completed jobs past `expires_at` are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from core.types import VideoResult
from gateway.errors import classify, client_failure
from gateway.jobs.videos import VideoRecord, VideoStore

logger = logging.getLogger(__name__)

# makes one clip: (job, report progress 0-100) -> the clip; raises what the data plane raises
Make = Callable[[VideoRecord, Callable[[int], Awaitable[None]]], Awaitable[VideoResult]]
RETRY_S = (0.05, 2.0)
PURGE_S = 60.0
UNAVAILABLE_TRIES = 3  # a clip whose replica was lost is made again, this many times


class VideoRunner:
    def __init__(
        self,
        store: VideoStore,
        make: Make,
        *,
        lease_s: float = 30.0,
        concurrency: int = 2,
        ttl_s: int = 24 * 3600,
        poll_s: float = 1.0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.make = make
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.owner = owner or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._purged = 0.0
        self.clips_made = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="video-runner")

    async def stop(self) -> None:
        """Stops claiming, cancels the clips in flight and gives their jobs back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        jobs = list(self._jobs.items())
        for _, task in jobs:
            task.cancel()
        await asyncio.gather(*(t for _, t in jobs), return_exceptions=True)
        for video_id, _ in jobs:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, video_id, self.owner)

    def wake(self) -> None:
        self._wake.set()

    def _forget(self, video_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._jobs.pop(video_id, None)

        return forget

    async def _run(self) -> None:
        while True:
            try:
                while len(self._jobs) < self.concurrency:
                    job = await asyncio.to_thread(
                        self.store.claim, self.owner, self.lease_s, set(self._jobs)
                    )
                    if job is None:
                        break
                    task = asyncio.get_running_loop().create_task(self._work(job))
                    self._jobs[job.id] = task
                    task.add_done_callback(self._forget(job.id))
                if time.monotonic() - self._purged > PURGE_S:
                    self._purged = time.monotonic()
                    for video_id in await asyncio.to_thread(self.store.expired):
                        await asyncio.to_thread(self.store.delete, video_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away, say: try again at the next poll
                logger.exception("video runner step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def _work(self, job: VideoRecord) -> None:
        clip = asyncio.get_running_loop().create_task(self._make(job))
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(job.id, clip))
        try:
            await clip
        except asyncio.CancelledError:
            if not clip.cancelled():
                raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self.wake()  # room for the next job

    async def _keep_lease(self, video_id: str, clip: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = await asyncio.to_thread(self.store.renew, video_id, self.owner, self.lease_s)
            if not held:  # deleted, or taken over: stop making the clip
                clip.cancel()
                return

    async def _make(self, job: VideoRecord) -> None:
        await asyncio.to_thread(self.store.progress, job.id, self.owner, job.progress)
        last = [-1]

        async def report(progress: int) -> None:
            if progress != last[0]:
                last[0] = progress
                if not await asyncio.to_thread(self.store.progress, job.id, self.owner, progress):
                    raise asyncio.CancelledError  # deleted meanwhile

        lost = 0
        while True:
            try:
                result = await self.make(job, report)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify(exc)
                if failure.code == "RESOURCE_EXHAUSTED":  # the model is busy: wait, again
                    wait = failure.retry_after_s or RETRY_S[0]
                    await asyncio.sleep(min(max(wait, RETRY_S[0]), RETRY_S[1]))
                    continue
                if failure.code == "UNAVAILABLE" and lost < UNAVAILABLE_TRIES:  # replica lost
                    lost += 1
                    await asyncio.sleep(RETRY_S[1])
                    continue
                failure = client_failure(exc, job.id)
                code = "invalid_request" if failure.http_status == 400 else failure.code.lower()
                await asyncio.to_thread(
                    self.store.fail, job.id, self.owner, code, failure.message, failure.field
                )
                return
        outputs = {
            "video": result.video,
            "thumbnail": result.thumbnail,
            "spritesheet": result.spritesheet,
        }
        if await asyncio.to_thread(self.store.complete, job.id, self.owner, outputs, self.ttl_s):
            self.clips_made += 1
