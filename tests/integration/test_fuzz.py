"""Fuzzing the gRPC API on the real stack: any request gets a clear status, never INTERNAL,
and undecodable bytes leave the server healthy."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigc.v1 import audio_pb2, image_pb2, text_pb2
from tests.integration.helpers import rpc_error

pytestmark = pytest.mark.integration
# What a fuzzed request may end with: anything else (INTERNAL above all) is a bug.
OK_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


_text = st.text(max_size=300) | st.sampled_from(["", " ", "x" * 20_000, "\x00", "🙂" * 50])
_int = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    prompt=_text,
    model=st.sampled_from(["", "tiny", "echo-text", "nope", "shapes"]),
    max_tokens=st.none() | _int,
    temperature=st.none() | st.floats(allow_nan=True, allow_infinity=True, width=32),
    top_p=st.none() | st.floats(allow_nan=True, width=32),
    n=st.none() | st.integers(-5, 10),
    stop=st.lists(_text, max_size=10),
)
def test_fuzz_text(client, prompt, model, max_tokens, temperature, top_p, n, stop):
    req = text_pb2.GenerateTextRequest(model=model, prompt=prompt, stop=stop)
    for name, value in (("max_tokens", max_tokens), ("temperature", temperature),
                        ("top_p", top_p), ("n", n)):  # fmt: skip
        if value is not None:
            setattr(req, name, value)
    if max_tokens is not None and max_tokens > 8:
        req.max_tokens = 8  # keep it quick; out-of-range values are still tried below 8
    for call in (client.stubs.text.Generate, client.stubs.text.GenerateStream):
        try:
            result = call(req, timeout=30)
            if not isinstance(result, text_pb2.GenerateTextResponse):
                list(result)
        except grpc.RpcError as err:
            assert err.code() in OK_CODES, (err.code(), err.details())


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    model=st.sampled_from(["", "shapes", "echo-image", "tiny", "nope"]),
    count=st.none() | st.integers(-3, 40),
    seed=st.none() | st.integers(0, 2**64 - 1),
    label=_text,
    fmt=st.integers(-1, 5),
    text=_text,
    voice=_text,
    speed=st.none() | st.floats(allow_nan=True, width=32),
)
def test_fuzz_image_and_audio(client, model, count, seed, label, fmt, text, voice, speed):
    img = image_pb2.GenerateImageRequest(model=model, label=label, format=fmt)
    if count is not None:
        img.count = count
    if seed is not None:
        img.seed = seed
    audio = audio_pb2.SynthesizeRequest(text=text[:200], voice=voice, format=fmt)
    if speed is not None:
        audio.speed = speed
    if seed is not None:
        audio.seed = seed
    calls = [
        lambda: client.stubs.image.Generate(img, timeout=30),
        lambda: client.stubs.audio.Synthesize(audio, timeout=30),
        lambda: list(client.stubs.audio.SynthesizeStream(audio, timeout=30)),
    ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as err:
            assert err.code() in OK_CODES, (err.code(), err.details())


def test_undecodable_bytes_are_invalid_argument_and_server_stays_healthy(target):
    bad = b"\x12\x03\xff\xfe\xfd"  # field 2 with invalid UTF-8
    with grpc.insecure_channel(target) as channel:
        for method in ("/aigc.v1.TextGeneration/Generate", "/aigc.v1.AudioSynthesis/Synthesize"):
            raw = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            err = rpc_error(lambda raw=raw: raw(bad, timeout=10))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in err.details()
        stream = channel.unary_stream(
            "/aigc.v1.TextGeneration/GenerateStream",
            request_serializer=None,
            response_deserializer=None,
        )
        err = rpc_error(lambda: list(stream(bad, timeout=10)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        health = health_pb2_grpc.HealthStub(channel)
        resp = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
