"""/v1/videos on the real stack (tests/tiny_models.py: `shapes-video`, the tiny conditional GAN
walked between the labels a prompt names), through the real openai client: create_and_poll,
download_content (the MP4 decoded with PyAV: frame count, rate, duration, size, motion),
thumbnail and spritesheet, list, remix, delete (also mid-clip: the clip stops); bad input refused
by field."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import openai
import pytest

from services.image.encode import decode_png
from tests.conditions import wait_until
from tests.integration.helpers import scrape, total

pytestmark = pytest.mark.integration
av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def oai(stack: Any) -> openai.OpenAI:
    base = f"http://127.0.0.1:{stack.gateway.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)


def test_a_label_turning_into_another(oai: openai.OpenAI, stack: Any) -> None:
    video = oai.videos.create_and_poll(
        model="shapes-video", prompt="a circle turning into a triangle", seconds="4",
        size="28x28", poll_interval_ms=100, extra_body={"seed": 11},
    )  # fmt: skip
    assert video.status == "completed" and video.progress == 100, video
    assert video.model == "shapes-video" and video.seconds == "4" and video.size == "28x28"
    assert video.expires_at and video.completed_at

    container = av.open(io.BytesIO(oai.videos.download_content(video.id).read()))
    stream = container.streams.video[0]
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert len(frames) == 32 and stream.average_rate == 8
    assert container.duration / 1e6 == pytest.approx(4.0, abs=0.01)
    assert (stream.width, stream.height) == (28, 28) and stream.codec_context.name == "h264"
    moves = np.abs(np.diff(frames.astype(int), axis=0)).mean(axis=(1, 2, 3))
    assert (moves > 0).sum() > 16 and np.abs(frames[0].astype(int) - frames[-1]).mean() > 1

    thumb = decode_png(oai.videos.download_content(video.id, variant="thumbnail").read())
    assert thumb.shape == (28, 28, 1)
    sheet = decode_png(oai.videos.download_content(video.id, variant="spritesheet").read())
    assert sheet.shape == (4 * 28, 8 * 28, 1)  # 32 frames, 8 to a row

    assert video.id in [v.id for v in oai.videos.list(limit=100)]
    remix = oai.videos.remix(video.id, prompt="a square turning into a circle")
    again = oai.videos.poll(remix.id, poll_interval_ms=100)
    assert again.status == "completed" and again.remixed_from_video_id == video.id
    for v in (video, remix):
        assert oai.videos.delete(v.id).deleted
    metrics = scrape(f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics")
    assert total(metrics, "aigc_video_clips_made_total") >= 2
    with pytest.raises(openai.NotFoundError):
        oai.videos.retrieve(video.id)


def test_a_remix_walks_the_same_path(oai: openai.OpenAI) -> None:
    """A remix keeps the source's model, length and seed (the walk's latent points) and takes a
    new prompt: with the same prompt it is the same clip, frame for frame; with other labels the
    same number of frames, other pictures."""
    video = oai.videos.create_and_poll(
        model="shapes-video", prompt="a circle turning into a triangle", seconds="2",
        poll_interval_ms=100, extra_body={"seed": 5},
    )  # fmt: skip
    same = oai.videos.poll(oai.videos.remix(video.id, prompt=video.prompt).id, poll_interval_ms=100)
    other = oai.videos.poll(
        oai.videos.remix(video.id, prompt="a square turning into a circle").id,
        poll_interval_ms=100,
    )
    clips = {}
    for v in (video, same, other):
        assert v.status == "completed" and v.seconds == "2" and v.model == "shapes-video", v
        container = av.open(io.BytesIO(oai.videos.download_content(v.id).read()))
        clips[v.id] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        oai.videos.delete(v.id)
    assert same.remixed_from_video_id == video.id == other.remixed_from_video_id
    assert np.array_equal(clips[same.id], clips[video.id])
    assert clips[other.id].shape == clips[video.id].shape == (16, 28, 28, 3)
    assert np.abs(clips[other.id].astype(int) - clips[video.id]).mean() > 1


def test_bad_input_names_the_field(oai: openai.OpenAI) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"seconds": "8"}, "seconds", "1 to 4"),
        ({"size": "720x1280"}, "size", "28x28"),
        ({"prompt": "a dragon turning into a square"}, "prompt", "circle, square, triangle"),
    ]
    for change, field, says in cases:
        args: dict[str, Any] = {"model": "shapes-video", "prompt": "a circle", **change}
        with pytest.raises(openai.BadRequestError) as bad:
            oai.videos.create(**args)
        body = bad.value.body
        assert isinstance(body, dict) and body["param"] == field and says in body["message"]


def test_a_narrated_clip(oai: openai.OpenAI) -> None:
    """The stack's speech model says the narration; the MP4 carries it as an AAC track as
    long as the clip."""
    video = oai.videos.create_and_poll(
        model="shapes-video", prompt="a square", seconds="3", poll_interval_ms=100,
        extra_body={"narration": "A square, turning slowly.", "seed": 2},
    )  # fmt: skip
    assert video.status == "completed", video
    container = av.open(io.BytesIO(oai.videos.download_content(video.id).read()))
    assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
    audio = container.streams.audio[0]
    assert float(audio.duration * audio.time_base) == pytest.approx(3.0, abs=0.05)
    samples = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio)])
    assert np.abs(samples).max() > 0.01  # speech, not silence
    oai.videos.delete(video.id)


def test_deleting_a_job_mid_clip_stops_the_clip(oai: openai.OpenAI, stack: Any) -> None:
    """DELETE while the clip is being made (`slow-video`: 8 s of clip take 8 s): the job and
    its content are gone at once, and the gateway's runner stops making the clip (its call to
    the model ends CANCELLED, not OK; no clip is counted made) instead of finishing it."""
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"

    def calls(code: str) -> float:
        return total(scrape(url), "aigc_requests_total", model="slow-video", code=code)

    def making() -> float:
        return total(scrape(url), "aigc_inflight_requests", model="slow-video")

    before = {code: calls(code) for code in ("OK", "CANCELLED")}
    made = total(scrape(url), "aigc_video_clips_made_total")
    video = oai.videos.create(model="slow-video", prompt="a clip", seconds="8")
    # frames are being made: the replica has reported at least one second of the clip
    assert wait_until(lambda: oai.videos.retrieve(video.id).progress > 0, 60)
    assert making() == 1
    deleted = oai.videos.delete(video.id)
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.NotFoundError):
        oai.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        oai.videos.download_content(video.id)
    assert video.id not in [v.id for v in oai.videos.list(limit=100)]
    # the runner learns it at its next progress report or lease renewal (every second here)
    assert wait_until(lambda: calls("CANCELLED") == before["CANCELLED"] + 1, 30, step_s=0.1)
    assert making() == 0
    assert calls("OK") == before["OK"]
    assert total(scrape(url), "aigc_video_clips_made_total") == made
