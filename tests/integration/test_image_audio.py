"""Image and speech through the real gateway: formats, seeds, labels, streaming."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from services.image.encode import decode_png

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


def test_concurrent_image_requests_share_calls_but_fail_alone(target):
    """The gateway coalesces queued image requests; each still gets its own result or error."""
    import threading

    import grpc

    from aigc import Client

    results: dict[int, object] = {}

    def one(i: int) -> None:
        label = "hexagon" if i == 5 else "circle"
        with Client(target, timeout=60) as c:
            try:
                results[i] = c.generate_images(count=1, seed=1000 + i, label=label).images[0].data
            except grpc.RpcError as err:
                results[i] = err.code()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.pop(5) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(results) == 15
    with Client(target, timeout=60) as c:
        for i in (0, 9):
            alone = c.generate_images(count=1, seed=1000 + i, label="circle").images[0].data
            assert alone == results[i]
