"""The OpenAI HTTP front end without Ray: the real `openai` client and uvicorn against the data
plane over stand-in handles (tests/standin.py) that run the real echo engines in-process."""

from __future__ import annotations

import base64
import io
import json
import socket
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from services.image.encode import decode_png
from tests.conditions import wait_until
from tests.standin import HttpFront as Front
from tests.standin import counted_cancel, settle

KEY = "k" * 24


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    f = Front()
    yield f
    f.close()


def post(
    front: Front, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    req = urllib.request.Request(
        front.base + path,
        data=body,
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_models_list_names_and_aliases(front: Front) -> None:
    ids = [m.id for m in front.client().models.list().data]
    assert {"echo-text", "text-davinci-002", "echo-image", "echo-audio"} <= set(ids)
    assert front.client().models.retrieve("text-davinci-002").id == "text-davinci-002"
    with pytest.raises(openai.NotFoundError):
        front.client().models.retrieve("nope")


def admitted(front: Front) -> float:
    return front.metric("aigc_admitted_requests_total", model="echo-text", tier="interactive")


def test_completion_list_prompt_and_n(front: Front) -> None:
    before = admitted(front)
    c = front.client().completions.create(
        model="echo-text", prompt=["a b c", "d e"], n=2, max_tokens=5, seed=1
    )
    assert admitted(front) == before + 1  # two prompts, one request: admitted as one
    assert [ch.index for ch in c.choices] == [0, 1, 2, 3]
    assert [ch.text for ch in c.choices] == ["a b c", "a b c", "d e", "d e"]
    assert c.usage.completion_tokens == 10 and c.object == "text_completion"
    one = front.client().completions.create(
        model="text-davinci-002", prompt="x y z w", max_tokens=2
    )
    assert one.choices[0].text == "x y" and one.choices[0].finish_reason == "length"
    assert one.model == "text-davinci-002"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": 2}, "logprobs"),
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"temperature": 3.0}, "temperature"),
        ({"n": 99}, "n"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_completion_refuses_what_it_does_not_do(
    front: Front, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        front.client().completions.create(model="echo-text", prompt="a b", **extra)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param


def test_completion_echo_puts_each_prompt_first(front: Front) -> None:
    c = front.client().completions.create(
        model="echo-text", prompt=["a b", "c d"], max_tokens=1, echo=True
    )
    assert [ch.text for ch in c.choices] == ["a ba", "c dc"]
    stream = front.client().completions.create(
        model="echo-text", prompt="a b", max_tokens=2, echo=True, stream=True
    )
    assert "".join(ch.choices[0].text for ch in stream) == "a ba b"


def test_streamed_list_prompt_is_admitted_once_and_counts_usage_per_prompt(front: Front) -> None:
    before = admitted(front)
    stream = front.client().completions.create(
        model="echo-text", prompt=["a b c", "d e f g"], n=2, max_tokens=3, seed=1, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert admitted(front) == before + 1
    texts: dict[int, str] = {}
    for ch in chunks[:-1]:
        for choice in ch.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {0: "a b c", 1: "a b c", 2: "d e f", 3: "d e f"}
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12  # 4 completions x 3 tokens
    assert usage.prompt_tokens == 7  # each prompt once (3 + 4 words), not once per completion


def test_chat_stream_shapes_with_n_and_usage(front: Front) -> None:
    stream = front.client().chat.completions.create(
        model="echo-text", messages=[{"role": "user", "content": "one two three"}], n=2,
        stream=True, stream_options={"include_usage": True}, seed=3,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])
    texts: dict[int, str] = {0: "", 1: ""}
    first_role: dict[int, str | None] = {}
    finishes: dict[int, list[str]] = {0: [], 1: []}
    for c in chunks[:-1]:
        (choice,) = c.choices
        first_role.setdefault(choice.index, choice.delta.role)
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finishes[choice.index].append(choice.finish_reason)
    assert first_role == {0: "assistant", 1: "assistant"}
    assert finishes == {0: ["stop"], 1: ["stop"]}
    unary = front.client().chat.completions.create(
        model="echo-text", messages=[{"role": "user", "content": "one two three"}], n=2, seed=3
    )
    assert [texts[0], texts[1]] == [ch.message.content for ch in unary.choices]


def test_images_b64_png_of_native_size(front: Front) -> None:
    r = front.client().images.generate(model="echo-image", prompt="a sneaker", n=2, size="8x8")
    assert len(r.data) == 2
    img = decode_png(base64.b64decode(r.data[0].b64_json))
    assert img.shape[:2] == (8, 8)
    for kw, param in [
        ({"size": "256x256"}, "size"),
        ({"response_format": "url"}, "response_format"),
        ({"prompt": "a cat"}, "prompt"),
    ]:
        args = {"model": "echo-image", "prompt": "sneaker", **kw}
        with pytest.raises(openai.BadRequestError) as err:
            front.client().images.generate(**args)
        assert err.value.body["param"] == param
        if param == "prompt":
            assert "sneaker" in err.value.body["message"]


def test_speech_wav_and_pcm(front: Front) -> None:
    wav = (
        front.client()
        .audio.speech.create(model="echo-audio", input="Hello there. Bye.", voice="tone")
        .read()
    )
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        frames = w.readframes(10**9)
    pcm = front.client().audio.speech.with_raw_response.create(
        model="echo-audio",
        input="Hello there. Bye.",
        voice="tone",
        response_format="pcm",
        extra_body={"seed": 1},
    )
    assert pcm.headers["x-sample-rate"] == str(w.getframerate())
    assert len(pcm.content) == len(frames) and len(frames) > 0
    with pytest.raises(openai.BadRequestError) as err:
        front.client().audio.speech.create(
            model="echo-audio", input="hi", voice="tone", response_format="mp3"
        )
    assert err.value.body["param"] == "response_format"


def test_error_bodies_for_routes_json_and_size(front: Front) -> None:
    status, headers, body = post(front, "/v1/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, _, body = post(front, "/v1/nowhere", b"{}")
    assert status == 404 and "nowhere" in body["error"]["message"]
    with socket.create_connection(("127.0.0.1", front.port)) as s:  # refused before the body
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n"
        )
        reply = b""
        while b'"}}' not in reply:  # headers, then the JSON error body
            part = s.recv(65536)
            assert part, reply
            reply += part
    assert reply.startswith(b"HTTP/1.1 413") and b'"type":"invalid_request_error"' in reply
    status, headers, body = post(
        front,
        "/v1/completions",
        json.dumps({"model": "zzz", "prompt": "a"}).encode(),
        {"x-request-id": "rid-7"},
    )
    assert (
        status == 404 and body["error"]["param"] == "model" and headers["x-request-id"] == "rid-7"
    )


def test_disconnect_mid_stream_cancels_the_model_call(front: Front) -> None:
    text = front.handles["echo-text"]
    before = text.stats["cancelled"]

    def cancelled_calls() -> float:
        return front.metric(
            "aigc_requests_total", modality="text", model="echo-text",
            method="/v1/completions", code="CANCELLED", protocol="http",
        )  # fmt: skip

    calls_before = cancelled_calls()
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as s:
        body = json.dumps(
            {
                "model": "echo-text",
                "prompt": " ".join(["w"] * 200),
                "max_tokens": 200,
                "stream": True,
            }
        ).encode()
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data: " not in received:  # the first event: the stream is running
            part = s.recv(4096)
            assert part, received
            received += part

    assert front.loop.run(counted_cancel(text, before))
    front.loop.run(settle(front.handles))
    assert text.stats["cancelled"] == before + 1
    # the call is counted CANCELLED once, as its handler ends (bounded wait on the count)
    assert wait_until(lambda: cancelled_calls() > calls_before, timeout_s=10), calls_before
    assert cancelled_calls() == calls_before + 1


def test_auth_and_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGC_TEST_OPENAI_KEYS", f"alice:{KEY}")  # unset again after the test
    f = Front(
        security={
            "api_keys_env": "AIGC_TEST_OPENAI_KEYS",
            "rate_limit_per_s": 0.001,
            "rate_limit_burst": 1,
        }
    )
    try:
        with pytest.raises(openai.AuthenticationError):
            f.client(api_key="wrong" * 5).models.list()
        assert f.client(api_key=KEY).models.list().data
        with pytest.raises(openai.RateLimitError) as err:
            f.client(api_key=KEY).models.list()
        assert int(err.value.response.headers["retry-after"]) >= 1
        # counted by the data plane with the labels the gRPC front end's refusals get
        rejected = "aigc_rejected_requests_total"
        assert f.metric(rejected, reason="unauthenticated", protocol="http") == 1
        assert f.metric(rejected, reason="rate_limited", protocol="http") == 1
    finally:
        f.close()
