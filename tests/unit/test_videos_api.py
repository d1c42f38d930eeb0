"""/v1/videos without Ray: the HTTP front end over a stand-in data plane (the echo video
engine, in-process), the job store on SQLite in the test's directory, the video runner. Through
the real openai client: create_and_poll, retrieve, list, download_content (the MP4 decoded
with PyAV), delete; a job resumed by another runner after a gateway stopped; refusals by
field."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import openai
import pytest

from aigc import cli
from aigc.client import Client
from aigc.v1 import video_pb2_grpc
from core.config import parse_config
from core.types import VideoResult
from gateway.grpc_api.videos import VideoServicer
from gateway.jobs.store import JobStore
from gateway.jobs.video_jobs import VideoJobs
from gateway.jobs.video_runner import VideoRunner
from gateway.jobs.videos import VideoStore
from gateway.openai_api.app import OpenAIApi
from gateway.openai_api.videos import VideosApi
from gateway.server import http_server
from services.image.encode import decode_png
from tests.conditions import wait_until
from tests.conftest import LoopThread
from tests.standin import standin_plane

av = pytest.importorskip("av")
LABELS = ["sneaker", "bag", "ankle-boot"]


class VideoFront:
    def __init__(self, root: Path) -> None:
        self.loop = LoopThread()
        self.config = parse_config(
            {
                "gateway": {"jobs": {"state_dir": str(root), "lease_s": 1.0}},
                "models": [
                    {"name": "echo-video", "modality": "video", "engine": "echo",
                     "options": {"size": 16, "fps": 4, "max_seconds": 6, "labels": LABELS,
                                 "delay_s": 0.05}},
                    # a second of clip takes 5 s: still being made whenever a test acts on it
                    {"name": "slow-echo-video", "modality": "video", "engine": "echo",
                     "options": {"size": 16, "fps": 4, "max_seconds": 6, "delay_s": 5.0}},
                    {"name": "echo-audio", "modality": "audio", "engine": "echo"},
                ],
            },
            source="test",
        )  # fmt: skip
        self.plane, self.handles = self.loop.run(standin_plane(self.config))
        self.jobs = JobStore(self.config.gateway.jobs.url())
        self.jobs.migrate()
        self.store = VideoStore(self.jobs)
        self.videos = VideoJobs(self.config.gateway.jobs, self.plane, self.store)
        self.videos.runner = self.runner = VideoRunner(
            self.store, self.videos.make, lease_s=1.0, poll_s=0.1
        )
        routes = VideosApi(self.videos, lambda h: h).routes()
        app = OpenAIApi(self.config, self.plane, lambda: True).app(routes)
        self.server = http_server(app, "127.0.0.1", 0, None)
        self.loop.run(self._start())

    async def _start(self) -> None:
        self.grpc = grpc.aio.server()  # on the loop that serves it
        video_pb2_grpc.add_VideoGenerationServicer_to_server(
            VideoServicer(self.plane, self.videos), self.grpc
        )
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        await self.grpc.start()
        self.runner.start()
        self.task = asyncio.ensure_future(self.server.serve())
        assert await until(lambda: self.server.started)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0
        )

    def close(self) -> None:
        self.server.should_exit = True

        async def stopped() -> None:
            await self.runner.stop()
            await self.grpc.stop(0)
            await self.task

        self.loop.run(stopped(), timeout=30)
        self.loop.close()
        self.jobs.close()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VideoFront]:
    f = VideoFront(tmp_path_factory.mktemp("videos"))
    yield f
    f.close()


def decode(data: bytes) -> tuple[list[Any], Any, Any]:
    container = av.open(io.BytesIO(data))
    stream = container.streams.video[0]
    return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream, container


def test_create_poll_download(front: VideoFront) -> None:
    oai = front.client
    video = oai.videos.create_and_poll(
        model="echo-video", prompt="a sneaker turning into a bag", seconds="3", size="16x16",
        poll_interval_ms=50,
    )  # fmt: skip
    assert video.status == "completed" and video.progress == 100, video
    assert video.seconds == "3" and video.size == "16x16" and video.expires_at
    frames, stream, container = decode(oai.videos.download_content(video.id).read())
    assert len(frames) == 12 and stream.average_rate == 4
    assert (stream.width, stream.height) == (16, 16)
    assert container.duration / 1e6 == pytest.approx(3.0, abs=0.01)
    assert (frames[0] != frames[-1]).any()
    thumb = oai.videos.download_content(video.id, variant="thumbnail").read()
    assert decode_png(thumb).shape == (16, 16, 3)
    sheet = oai.videos.download_content(video.id, variant="spritesheet").read()
    assert decode_png(sheet).shape == (2 * 16, 8 * 16, 3)
    assert video.id in [v.id for v in oai.videos.list()]
    remix = oai.videos.remix(video.id, prompt="a bag turning into an ankle boot")
    assert remix.remixed_from_video_id == video.id and remix.seconds == "3"
    assert oai.videos.delete(video.id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.videos.retrieve(video.id)


def test_a_narrated_clip_has_an_audio_track_as_long_as_the_clip(front: VideoFront) -> None:
    video = front.client.videos.create_and_poll(
        model="echo-video", prompt="a bag", seconds="2", poll_interval_ms=50,
        extra_body={"narration": "A bag, and then another bag.", "voice": "tone"},
    )  # fmt: skip
    assert video.status == "completed", video
    container = av.open(io.BytesIO(front.client.videos.download_content(video.id).read()))
    audio = container.streams.audio[0]
    assert audio.codec_context.name == "aac" and audio.sample_rate > 0
    assert float(audio.duration * audio.time_base) == pytest.approx(2.0, abs=0.05)
    samples = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio)])
    assert np.abs(samples).max() > 0  # the tone, not silence
    with pytest.raises(openai.BadRequestError) as bad:
        front.client.videos.create(
            model="echo-video", prompt="a bag", extra_body={"narration": "x", "voice": "nope"}
        )
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "voice"


def test_bad_input_names_the_field(front: VideoFront) -> None:
    oai = front.client
    cases = [
        ({"seconds": "9"}, "seconds", "1 to 6"),
        ({"size": "720x1280"}, "size", "16x16"),
        ({"prompt": "a dragon turning into a bag"}, "prompt", "sneaker, bag, ankle-boot"),
    ]
    for change, field, says in cases:
        args: dict[str, Any] = {"model": "echo-video", "prompt": "a bag", **change}
        with pytest.raises(openai.BadRequestError) as bad:
            oai.videos.create(**args)
        error = bad.value.body
        assert isinstance(error, dict) and error["param"] == field, error
        assert says in error["message"]
    with pytest.raises(openai.NotFoundError):
        oai.videos.create(model="nope", prompt="a bag")
    with pytest.raises(openai.BadRequestError) as bad:
        oai.videos.download_content("video_x", variant="poster")  # type: ignore[arg-type]
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "variant"


def test_deleting_a_running_job_stops_it(front: VideoFront) -> None:
    oai = front.client
    made = front.runner.clips_made  # the front is shared by this file's tests
    video = oai.videos.create(model="slow-echo-video", prompt="a bag", seconds="6")
    assert wait_until(lambda: oai.videos.retrieve(video.id).status == "in_progress", 10, 0.02)
    oai.videos.delete(video.id)
    assert wait_until(lambda: not front.runner._jobs, 10, 0.05)  # the clip's task ended
    assert front.runner.clips_made == made  # stopped mid-clip, not made and then thrown away
    assert front.store.get(video.id) is None
    with pytest.raises(openai.NotFoundError):
        oai.videos.retrieve(video.id)


def test_a_stopped_gateway_gives_its_job_back(tmp_path: Path) -> None:
    """A gateway stopping mid-clip gives the job back; another runner makes it from the start;
    a deleted job stops its runner at the next renewal."""
    jobs = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    jobs.migrate()
    store = VideoStore(jobs)
    record = store.create("echo-video", "a sneaker", 4, "16x16", 5)
    started: list[str] = []
    clip = VideoResult("r", "echo-video", b"mp4", b"png", b"sheet", 16, 16, 4, 16, 5)

    async def stalled(job: Any, report: Any) -> Any:
        started.append(job.id)
        await report(40)
        await asyncio.sleep(60)

    async def quick(job: Any, report: Any) -> Any:
        await report(50)
        return clip

    async def scenario() -> None:
        first = VideoRunner(store, stalled, lease_s=30, poll_s=0.05, owner="first")
        first.start()
        assert await until(lambda: started == [record.id])
        assert store.get(record.id).progress == 40  # type: ignore[union-attr]
        await first.stop()
        assert store.get(record.id).owner is None  # type: ignore[union-attr]
        second = VideoRunner(store, quick, lease_s=30, poll_s=0.05, owner="second")
        second.start()
        assert await until(lambda: store.get(record.id).status == "completed")  # type: ignore[union-attr]
        done = store.get(record.id)
        assert done is not None and done.progress == 100 and done.expires_at
        assert store.content(done, "video") == b"mp4" and store.content(done, "spritesheet")
        # a deleted job: its runner's renewal fails and the clip is cancelled
        doomed = store.create("echo-video", "a bag", 4, "16x16", 1)
        third = VideoRunner(store, stalled, lease_s=0.3, poll_s=0.05, owner="third")
        await second.stop()
        third.start()
        assert await until(lambda: doomed.id in third._jobs)
        store.delete(doomed.id)
        assert await until(lambda: not third._jobs)
        await third.stop()

    asyncio.run(scenario())
    jobs.close()


async def until(predicate: Any, timeout_s: float = 10) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


def test_expired_content_is_gone(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from core.errors import NotFound
    from gateway.jobs.store import videos

    jobs = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    jobs.migrate()
    store = VideoStore(jobs)
    clips = VideoJobs(parse_config({"models": [{"name": "m", "modality": "video",
                                                "engine": "echo"}]}).gateway.jobs,
                      None, store)  # type: ignore[arg-type]  # fmt: skip
    record = store.create("echo-video", "a bag", 1, "16x16", 0)
    assert store.claim("me", 30, set()) is not None
    assert store.complete(record.id, "me", {"video": b"mp4", "thumbnail": b"t"}, ttl_s=60)
    assert asyncio.run(clips.content(record.id, "video")) == b"mp4"
    with jobs.engine.begin() as db:
        db.execute(sa.update(videos).where(videos.c.id == record.id).values(expires_at=1))
    with pytest.raises(NotFound, match="expired"):
        asyncio.run(clips.content(record.id, "video"))
    assert store.expired() == [record.id]
    store.delete(record.id)
    assert store.get(record.id) is None and not jobs.list_files(purpose="video")
    jobs.close()


def test_grpc_and_the_cli(front: VideoFront, tmp_path: Path, capsys: Any) -> None:
    """`aigc video` over gRPC: the job created, its progress drawn, the MP4 written; the
    SDK's refusals are INVALID_ARGUMENT naming the field; a remix and a delete."""
    target = f"127.0.0.1:{front.grpc_port}"
    out = tmp_path / "clip.mp4"
    argv = ["video", "a sneaker turning into a bag", "--model", "echo-video", "--seconds", "2"]
    assert (
        cli.main([*argv, "--seed", "3", "--poll", "0.05", "-o", str(out), "--target", target]) == 0
    )
    printed = capsys.readouterr().out
    assert "100% completed" in printed and f"wrote {out}" in printed
    frames, stream, _ = decode(out.read_bytes())
    assert len(frames) == 8 and (stream.width, stream.height) == (16, 16)
    with Client(target) as c:
        with pytest.raises(grpc.RpcError) as bad:
            c.create_video("a bag", model="echo-video", seconds=9)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "seconds" in bad.value.details()  # type: ignore[attr-defined]
        first = c.create_video("a bag", model="echo-video", seconds=1, seed=1)
        remix = c.create_video("a sneaker", remix_of=first.id)
        assert remix.remixed_from == first.id and remix.seconds == 1
        assert {remix.id, first.id} <= {v.id for v in c.list_videos(limit=100).videos}
        assert c.delete_video(first.id).id == first.id
        with pytest.raises(grpc.RpcError) as gone:
            c.get_video(first.id)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
