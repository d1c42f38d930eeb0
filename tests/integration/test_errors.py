"""Bad requests get a clear status naming the field; nothing reaches the client as a traceback."""

from __future__ import annotations

import grpc
import pytest

from aigc.v1 import audio_pb2, text_pb2
from tests.integration.helpers import bad_fields, rpc_error

pytestmark = pytest.mark.integration
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "hi", "max_tokens": -5}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 10_000}, "max_tokens"),
        ({"prompt": "hi", "temperature": -1.0}, "temperature"),
        ({"prompt": "hi", "temperature": float("nan")}, "temperature"),
        ({"prompt": "hi", "top_p": 0.0}, "top_p"),
        ({"prompt": "hi", "top_k": -1}, "top_k"),
        ({"prompt": "hi", "n": 0}, "n"),
        ({"prompt": "hi", "n": 99}, "n"),
        ({"prompt": "hi", "stop": [""]}, "stop[0]"),
        ({"prompt": "x" * 20_000}, "prompt"),
        ({"messages": [("wizard", "hi")]}, "chat.messages[0].role"),
        ({"messages": []}, "chat.messages"),
    ],
)
def test_invalid_text_requests_name_the_field(client, kwargs, field):
    prompt = kwargs.pop("prompt", None)
    for call in (client.generate_text, client.stream_text):
        err = rpc_error(lambda call=call: call(prompt, **kwargs))
        assert err.code() == INVALID, err.details()
        assert field.split("[")[0] in err.details()
        assert bad_fields(err) == [field]


def test_missing_input_is_invalid(client):
    err = rpc_error(lambda: client.stubs.text.Generate(text_pb2.GenerateTextRequest(), timeout=10))
    assert err.code() == INVALID and "prompt" in err.details()


def test_prompt_longer_than_the_model_context(client):
    err = rpc_error(lambda: client.generate_text("fox " * 2000, max_tokens=5))
    assert err.code() == INVALID and "tokens" in err.details() and bad_fields(err) == ["prompt"]


def test_unknown_model_is_not_found_and_lists_the_served_ones(client):
    for call in (
        lambda: client.generate_text("hi", model="gpt-9"),
        lambda: client.stream_text("hi", model="gpt-9"),
        lambda: client.generate_images(model="gpt-9"),
        lambda: client.synthesize("hi", model="gpt-9"),
    ):
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert "gpt-9" in err.details() and bad_fields(err) == ["model"]
    err = rpc_error(lambda: client.generate_text("hi", model="shapes"))
    assert "image model" in err.details() and "tiny" in err.details()


def test_image_count_over_the_limit_and_unknown_label(client):
    err = rpc_error(lambda: client.generate_images(count=17))
    assert err.code() == INVALID and bad_fields(err) == ["count"] and "16" in err.details()
    err = rpc_error(lambda: client.generate_images(count=0))
    assert err.code() == INVALID and bad_fields(err) == ["count"]
    err = rpc_error(lambda: client.generate_images(label="hexagon"))
    assert err.code() == INVALID and bad_fields(err) == ["label"]
    assert "circle, square, triangle" in err.details()  # lists the valid labels
    err = rpc_error(lambda: client.generate_images(model="echo-image", label="cat"))
    assert err.code() == INVALID and "unconditional" in err.details()


def test_invalid_speech_requests(client):
    cases = [
        (lambda: client.synthesize(""), "text"),
        (lambda: client.synthesize("x" * 501), "text"),
        (lambda: client.synthesize("hi", speed=0.0), "speed"),
        (lambda: client.synthesize("hi", speed=10.0), "speed"),
        (lambda: client.synthesize("hi", voice="nobody"), "voice"),
        (lambda: client.stream_speech("hi", voice="nobody"), "voice"),
        (lambda: client.synthesize("\x1b\u00b9"), "text"),  # hibari cannot normalise it
        (lambda: client.stream_speech("\x1b\u00b9"), "text"),
    ]
    for call, field in cases:
        err = rpc_error(call)
        assert err.code() == INVALID, (field, err.details())
        assert bad_fields(err) == [field]
    req = audio_pb2.SynthesizeRequest(text="hi", format=audio_pb2.AUDIO_FORMAT_WAV)
    err = rpc_error(lambda: client.stubs.audio.SynthesizeStream(req, timeout=10))
    assert err.code() == INVALID and "PCM16" in err.details()


def test_unknown_enum_value_is_rejected(client):
    req = audio_pb2.SynthesizeRequest(text="hi", format=99)
    err = rpc_error(lambda: client.stubs.audio.Synthesize(req, timeout=10))
    assert err.code() == INVALID and bad_fields(err) == ["format"]
