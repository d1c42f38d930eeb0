"""Request conversion without Ray: every bound names its field; in-range values convert."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from aigc.v1 import audio_pb2, common_pb2, image_pb2, text_pb2
from core.config import ModelConfig
from core.errors import InvalidArgument
from core.types import (
    AudioFormat,
    ChatMessage,
    ImageFormat,
    Priority,
)
from gateway import convert

TEXT = ModelConfig(
    name="t",
    modality="text",
    engine="echo",
    limits={"max_prompt_chars": 20, "max_tokens": 50, "max_n": 3, "max_stop": 2},
)
IMAGE = ModelConfig(
    name="i",
    modality="image",
    engine="echo",
    batching={"max_batch_size": 4},
    limits={"max_images": 4},
)
AUDIO = ModelConfig(name="a", modality="audio", engine="echo", limits={"max_text_chars": 30})


def invalid(fn: Callable[[], Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        fn()
    return err.value


def text(**fields: Any) -> Any:
    return convert.text_request(text_pb2.GenerateTextRequest(**fields), TEXT, "rid", None)


def chat(*messages: tuple[str, str], **fields: Any) -> Any:
    msgs = [text_pb2.ChatMessage(role=r, content=c) for r, c in messages]
    return text(chat=text_pb2.Chat(messages=msgs), **fields)


def image(**fields: Any) -> Any:
    return convert.image_request(image_pb2.GenerateImageRequest(**fields), IMAGE, "rid", None)


def audio(stream: bool = False, **fields: Any) -> Any:
    req = audio_pb2.SynthesizeRequest(**fields)
    return convert.audio_request(req, AUDIO, "rid", None, stream=stream)


# ---- text: bounds ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: text(), "prompt"),  # neither prompt nor chat
        (lambda: text(prompt=""), "prompt"),
        (lambda: text(prompt=" \n\t"), "prompt"),
        (lambda: text(prompt="x" * 21), "prompt"),
        (lambda: text(chat=text_pb2.Chat()), "chat.messages"),
        (lambda: chat(("user", "hi"), ("robot", "hello")), "chat.messages[1].role"),
        (lambda: chat(("", "hi")), "chat.messages[0].role"),
        (lambda: chat(("User", "hi")), "chat.messages[0].role"),  # roles are case-sensitive
        (lambda: chat(("system", ""), ("user", "  ")), "chat.messages"),  # all empty
        (lambda: chat(("system", "x" * 11), ("user", "y" * 10)), "chat.messages"),  # 21 > 20
        (lambda: text(prompt="hi", max_tokens=0), "max_tokens"),
        (lambda: text(prompt="hi", max_tokens=-1), "max_tokens"),
        (lambda: text(prompt="hi", max_tokens=51), "max_tokens"),
        (lambda: text(prompt="hi", temperature=-0.01), "temperature"),
        (lambda: text(prompt="hi", temperature=2.01), "temperature"),
        (lambda: text(prompt="hi", temperature=math.nan), "temperature"),
        (lambda: text(prompt="hi", temperature=math.inf), "temperature"),
        (lambda: text(prompt="hi", top_p=0.0), "top_p"),  # (0, 1]: zero excluded
        (lambda: text(prompt="hi", top_p=-0.5), "top_p"),
        (lambda: text(prompt="hi", top_p=1.01), "top_p"),
        (lambda: text(prompt="hi", top_p=math.nan), "top_p"),
        (lambda: text(prompt="hi", top_k=-1), "top_k"),
        (lambda: text(prompt="hi", top_k=100_001), "top_k"),
        (lambda: text(prompt="hi", n=0), "n"),
        (lambda: text(prompt="hi", n=-2), "n"),
        (lambda: text(prompt="hi", n=4), "n"),
        (lambda: text(prompt="hi", stop=["a", "b", "c"]), "stop"),  # more than max_stop
        (lambda: text(prompt="hi", stop=[""]), "stop[0]"),
        (lambda: text(prompt="hi", stop=["ok", "x" * 129]), "stop[1]"),
        (lambda: text(prompt="hi", priority=99), "priority"),  # an enum value we don't know
        (lambda: text(prompt="hi", priority=-1), "priority"),
    ],
)
def test_text_out_of_bounds_names_the_field(build, field):
    assert invalid(build).field == field


def test_chat_bad_role_is_reported_before_the_length_and_content_checks():
    err = invalid(lambda: chat(("user", ""), ("bot", "x" * 30)))
    assert err.field == "chat.messages[1].role"
    assert "'bot'" in err.message


# ---- text: in range ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "x" * 20},  # exactly max_prompt_chars
        {"prompt": "hi", "max_tokens": 1},
        {"prompt": "hi", "max_tokens": 50},
        {"prompt": "hi", "temperature": 0.0},
        {"prompt": "hi", "temperature": 2.0},
        {"prompt": "hi", "top_p": 1.0},
        {"prompt": "hi", "top_p": 1e-6},
        {"prompt": "hi", "top_k": 0},
        {"prompt": "hi", "top_k": 100_000},
        {"prompt": "hi", "n": 1},
        {"prompt": "hi", "n": 3},
        {"prompt": "hi", "stop": ["a", "x" * 128]},  # max_stop strings, the longest allowed
        {"prompt": "hi", "stop": [" "]},  # whitespace is a valid stop string
    ],
)
def test_text_bounds_are_inclusive(fields):
    assert text(**fields).model == "t"


def test_prompt_request_converts_every_field():
    req = text_pb2.GenerateTextRequest(
        model="alias-of-t",
        prompt="hello",
        max_tokens=7,
        temperature=0.5,
        top_p=0.75,
        top_k=40,
        stop=["\n", "END"],
        n=2,
        seed=2**64 - 1,
        priority=common_pb2.PRIORITY_BATCH,
    )
    out = convert.text_request(req, TEXT, "req-1", 1234.5)
    assert out.request_id == "req-1"
    assert out.model == "t"  # the served model's own name, whatever the client called it
    assert out.prompt == "hello" and out.messages == ()
    assert (out.max_tokens, out.temperature, out.top_p, out.top_k) == (7, 0.5, 0.75, 40)
    assert out.stop == ("\n", "END")
    assert out.n == 2
    assert out.seed == 2**64 - 1
    assert out.deadline == 1234.5
    assert out.priority is Priority.BATCH


def test_unset_optional_fields_stay_unset_for_the_engine_defaults():
    out = text(prompt="hello")
    assert (out.max_tokens, out.temperature, out.top_p, out.top_k, out.seed) == (None,) * 5
    assert out.n == 1 and out.stop == () and out.deadline is None
    assert out.priority is Priority.INTERACTIVE


def test_chat_request_keeps_roles_and_order():
    out = chat(("system", "be brief"), ("user", "hi"), ("assistant", ""), ("tool", "{}"))
    assert out.prompt is None
    assert out.messages == (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "hi"),
        ChatMessage("assistant", ""),  # one empty message is fine when another has content
        ChatMessage("tool", "{}"),
    )


def test_chat_total_length_may_reach_the_limit():
    out = chat(("system", "x" * 10), ("user", "y" * 10))
    assert sum(len(m.content) for m in out.messages) == TEXT.limits.max_prompt_chars


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (common_pb2.PRIORITY_UNSPECIFIED, Priority.INTERACTIVE),
        (common_pb2.PRIORITY_INTERACTIVE, Priority.INTERACTIVE),
        (common_pb2.PRIORITY_BATCH, Priority.BATCH),
    ],
)
def test_priority_mapping_for_every_modality(value, expected):
    assert text(prompt="hi", priority=value).priority is expected
    assert image(priority=value).priority is expected
    assert audio(text="hi", priority=value).priority is expected


def test_unknown_priority_is_refused_for_every_modality():
    assert invalid(lambda: image(priority=7)).field == "priority"
    assert invalid(lambda: audio(text="hi", priority=7)).field == "priority"


# ---- image -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: image(count=0), "count"),
        (lambda: image(count=-1), "count"),
        (lambda: image(count=5), "count"),  # max_images is 4
        (lambda: image(format=3), "format"),  # not an ImageFormat value
        (lambda: image(format=-1), "format"),
    ],
)
def test_image_out_of_bounds_names_the_field(build, field):
    assert invalid(build).field == field


def test_image_request_converts_every_field():
    req = image_pb2.GenerateImageRequest(
        model="whatever",
        count=4,
        seed=2**64 - 1,
        label="circle",
        format=image_pb2.IMAGE_FORMAT_RAW,
        priority=common_pb2.PRIORITY_BATCH,
    )
    out = convert.image_request(req, IMAGE, "req-2", 99.0)
    assert (out.request_id, out.model, out.count, out.seed) == ("req-2", "i", 4, 2**64 - 1)
    assert out.label == "circle" and out.format is ImageFormat.RAW
    assert out.deadline == 99.0 and out.priority is Priority.BATCH


def test_image_defaults_leave_the_seed_to_the_data_plane():
    from gateway.dataplane import seeded

    a = image()
    assert a.count == 1 and a.label is None and a.format is ImageFormat.PNG
    assert image(format=image_pb2.IMAGE_FORMAT_PNG).format is ImageFormat.PNG
    assert a.seed is None
    # the data plane draws the seed once, before the first attempt: retries repeat it
    first, second = seeded(a), seeded(a)
    assert 0 <= first.seed < 2**63 and 0 <= second.seed < 2**63
    assert first.seed != second.seed  # 63 random bits: equal only by a 2**-63 chance
    assert seeded(first) is first  # a fixed seed (the client's, or drawn) stays


# ---- audio -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: audio(), "text"),
        (lambda: audio(text=" \n"), "text"),
        (lambda: audio(text="x" * 31), "text"),
        (lambda: audio(text="hi", speed=0.0), "speed"),
        (lambda: audio(text="hi", speed=0.24), "speed"),
        (lambda: audio(text="hi", speed=4.01), "speed"),
        (lambda: audio(text="hi", speed=math.nan), "speed"),
        (lambda: audio(text="hi", speed=-math.inf), "speed"),
        (lambda: audio(text="hi", format=5), "format"),  # unary: unknown format
        # streams are PCM16 chunks: WAV (or anything else) is refused, not silently changed
        (lambda: audio(True, text="hi", format=audio_pb2.AUDIO_FORMAT_WAV), "format"),
        (lambda: audio(True, text="hi", format=5), "format"),
    ],
)
def test_audio_out_of_bounds_names_the_field(build, field):
    assert invalid(build).field == field


@pytest.mark.parametrize("speed", [0.25, 1.0, 4.0])
def test_speed_bounds_are_inclusive(speed):
    assert audio(text="hi", speed=speed).speed == speed


@pytest.mark.parametrize(
    ("stream", "fmt", "expected"),
    [
        (False, audio_pb2.AUDIO_FORMAT_UNSPECIFIED, AudioFormat.WAV),
        (False, audio_pb2.AUDIO_FORMAT_WAV, AudioFormat.WAV),
        (False, audio_pb2.AUDIO_FORMAT_PCM16, AudioFormat.PCM16),
        (True, audio_pb2.AUDIO_FORMAT_UNSPECIFIED, AudioFormat.PCM16),
        (True, audio_pb2.AUDIO_FORMAT_PCM16, AudioFormat.PCM16),
    ],
)
def test_audio_format_rule(stream, fmt, expected):
    assert audio(stream, text="hi", format=fmt).format is expected


def test_audio_request_converts_every_field():
    req = audio_pb2.SynthesizeRequest(
        model="x",
        text="x" * 30,  # exactly max_text_chars
        voice="narrator",
        speed=1.5,
        seed=12,
        format=audio_pb2.AUDIO_FORMAT_PCM16,
        priority=common_pb2.PRIORITY_BATCH,
    )
    out = convert.audio_request(req, AUDIO, "req-3", 5.0, stream=False)
    assert (out.request_id, out.model, out.text, out.voice) == ("req-3", "a", "x" * 30, "narrator")
    assert (out.speed, out.seed, out.format) == (1.5, 12, AudioFormat.PCM16)
    assert out.deadline == 5.0 and out.priority is Priority.BATCH


def test_audio_defaults():
    out = audio(text="hi")
    assert out.voice is None and out.speed == 1.0 and out.seed is None  # drawn by the plane


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, Priority.INTERACTIVE),
        ("interactive", Priority.INTERACTIVE),
        ("batch", Priority.BATCH),
    ],
)
def test_sdk_priority_names_reach_the_data_plane_as_tiers(name, expected):
    """The SDK's request builders (and so `aigc text --priority batch`) carry the tier that the
    gateway's conversion turns into the admission priority."""
    from aigc.client import image_request, speech_request, text_request

    t = convert.text_request(text_request("hi", priority=name), TEXT, "r", None)
    i = convert.image_request(image_request(priority=name), IMAGE, "r", None)
    a = convert.audio_request(speech_request("hi", priority=name), AUDIO, "r", None, stream=False)
    assert t.priority is expected and i.priority is expected and a.priority is expected
    with pytest.raises(ValueError, match="priority"):
        text_request("hi", priority="urgent")
