"""Image and speech through the real gateway: formats, seeds, labels, streaming."""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from typing import Any

import grpc
import numpy as np
import pytest

from services.image.encode import decode_png
from tests.conditions import wait_until
from tests.integration.helpers import scrape, total

pytestmark = pytest.mark.integration


def test_images_are_png_with_reproducible_seeds(client):
    resp = client.generate_images(count=3, seed=100)
    assert resp.model == "shapes"
    assert [i.seed for i in resp.images] == [100, 101, 102]
    for img in resp.images:
        assert img.mime_type == "image/png"
        pixels = decode_png(img.data)
        assert pixels.shape == (img.height, img.width, img.channels) == (28, 28, 1)
        assert img.label in ("circle", "square", "triangle")
    again = client.generate_images(count=1, seed=101)
    assert again.images[0].data == resp.images[1].data


def test_label_selects_the_class_and_raw_format(client):
    resp = client.generate_images(count=2, seed=7, label="square", raw=True)
    assert [i.label for i in resp.images] == ["square", "square"]
    img = resp.images[0]
    assert len(img.data) == img.width * img.height * img.channels
    other = client.generate_images(count=1, seed=7, label="circle", raw=True)
    assert other.images[0].data != img.data  # the label changes the picture


def test_unseeded_images_get_a_seed_that_reproduces_them(client):
    first = client.generate_images(count=1)
    seed = first.images[0].seed
    again = client.generate_images(count=1, seed=seed, label=first.images[0].label)
    assert again.images[0].data == first.images[0].data


def test_speech_is_a_valid_wav_and_seed_reproduces(client):
    text = "Hello there, how are you?"
    a = client.synthesize(text, seed=1)
    b = client.synthesize(text, seed=1)
    assert a.mime_type == "audio/wav" and a.sample_rate == 24000
    assert a.audio == b.audio
    with wave.open(io.BytesIO(a.audio)) as w:
        assert w.getframerate() == 24000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert abs(len(samples) / 24000 - a.duration_seconds) < 1e-3
    assert np.abs(samples).max() > 1000  # not silence
    longer = client.synthesize(text + " I am fine, thank you, and you?", seed=1)
    assert longer.duration_seconds > a.duration_seconds


def test_speech_streams_one_chunk_per_sentence(client):
    chunks = list(client.stream_speech("First sentence here. And a second one. Third!", seed=2))
    assert len(chunks) == 3
    assert [c.index for c in chunks] == [0, 1, 2]
    assert [c.last for c in chunks] == [False, False, True]
    assert all(c.sample_rate == 24000 and len(c.audio) > 0 for c in chunks)


def test_pcm16_format_for_unary(client):
    resp = client.synthesize("Short.", seed=3, pcm16=True)
    assert resp.mime_type == "audio/L16"
    assert len(resp.audio) == round(resp.duration_seconds * 24000) * 2


def test_echo_engines_route_by_model_name(client):
    img = client.generate_images(model="echo-image", count=2, seed=5)
    assert img.model == "echo-image" and len(img.images) == 2
    audio = client.synthesize("four", model="echo-audio")
    assert audio.model == "echo-audio"
    assert audio.duration_seconds == pytest.approx(0.2, abs=1e-3)  # 50 ms per character


class _Held:
    """A replica call whose result the gateway gets only once `release` is set."""

    def __init__(self, response: Any, release: asyncio.Event) -> None:
        self.response, self.release = response, release

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        await self.release.wait()  # the test sets it, always, after a bounded wait
        return await self.response

    def cancel(self) -> None:
        self.response.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.response, name)


def test_concurrent_image_requests_share_calls_but_fail_alone(stack, target, monkeypatch):
    """The gateway coalesces image requests that queue up behind its calls in flight into
    shared Serve calls; each request still gets its own result or error.

    Calls to echo-image (direct or through Serve: the replica seam, gateway.replicas) are
    counted (with the requests each carries) and held until all twelve requests are in the
    gateway, so requests certainly queue behind the first calls."""
    from aigc import Client
    from gateway.replicas import ReplicaHandle

    calls: list[int] = []  # requests per call to echo-image
    release = asyncio.Event()  # waited on by the gateway's loop, set from here through it
    unary = ReplicaHandle.unary

    def counted(replica: Any, method: Any, *args: Any, **kwargs: Any) -> Any:
        response = unary(replica, method, *args, **kwargs)
        if replica.handle.deployment_name != "echo-image":
            return response
        calls.append(len(args[0]) if isinstance(args[0], list) else 1)
        return _Held(response, release)

    monkeypatch.setattr(ReplicaHandle, "unary", counted)
    n, bad = 12, 5
    results: dict[int, object] = {}
    ready = threading.Barrier(n)

    def one(i: int) -> None:
        label = "hexagon" if i == bad else None  # echo-image has no labels: this one fails
        with Client(target, timeout=60) as c:
            c.health()
            ready.wait(60)
            try:
                resp = c.generate_images(model="echo-image", count=1, seed=1000 + i, label=label)
                results[i] = resp.images[0].data
            except grpc.RpcError as err:
                results[i] = err.code()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"
    try:
        assert wait_until(
            lambda: total(scrape(url), "aigc_inflight_requests", model="echo-image") == n
        )
    finally:
        stack.runner.loop.call_soon_threadsafe(release.set)
    for t in threads:
        t.join(60)
    monkeypatch.undo()
    assert sum(calls) == n  # every request went out once
    assert len(calls) < n and max(calls) > 1, calls  # some requests shared a call
    assert max(calls) <= 4, calls  # no call carries more than a replica batch (max_batch_size)
    assert results.pop(bad) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(results) == n - 1
    with Client(target, timeout=60) as c:
        for i in (0, 9):
            alone = c.generate_images(model="echo-image", count=1, seed=1000 + i).images[0].data
            assert alone == results[i]
