"""The OpenAI HTTP API on the real stack: the real `openai` client (current, and the pre-1.0
0.28.1 in its own directory) against the gateway's HTTP port, Ray Serve behind it."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import openai
import pytest

from services.image.encode import decode_png
from tests.conditions import wait_until
from tests.integration.helpers import replica_stats

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(stack: Any) -> str:
    return f"http://127.0.0.1:{stack.gateway.http_port}"


@pytest.fixture()
def oai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_and_completions(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list().data}
    assert {"tiny", "echo-text", "shapes", "speech"} <= ids
    c = oai.completions.create(model="tiny", prompt=["Hello", "A"], n=2, max_tokens=4, seed=1)
    assert [ch.index for ch in c.choices] == [0, 1, 2, 3]
    assert all(ch.finish_reason in ("stop", "length") for ch in c.choices)
    assert 0 < c.usage.completion_tokens <= 4 * 4  # 2 prompts x n=2, at most 4 tokens each
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_chat_stream_joined_equals_unary_at_temperature_0(oai: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "Hello there"}]
    unary = oai.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    chunks = list(
        oai.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=8, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == unary.choices[0].message.content
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == unary.usage.completion_tokens
    )
    assert sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1


def test_images_and_speech(oai: openai.OpenAI) -> None:
    img = oai.images.generate(model="shapes", prompt="a red circle", n=2)
    assert len(img.data) == 2
    pixels = decode_png(base64.b64decode(img.data[0].b64_json))
    assert pixels.shape[0] == pixels.shape[1] > 0
    wav = oai.audio.speech.create(model="speech", input="Hello there.", voice="")  # default voice
    with wave.open(io.BytesIO(wav.read())) as w:
        assert w.getframerate() > 0 and len(w.readframes(10**9)) > 0


def test_error_classes(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="no-such-model", prompt="x")
    with pytest.raises(openai.BadRequestError) as err:
        oai.completions.create(model="tiny", prompt="x", suffix="y")
    assert err.value.body["param"] == "suffix"


def test_disconnect_mid_stream_frees_the_replica(base: str) -> None:
    before = replica_stats("tiny", "text")["cancelled_requests_total"]
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps(
        {
            "model": "tiny",
            "prompt": "once upon a time",
            "max_tokens": 100,
            "stream": True,
            "temperature": 1.0,
            "seed": 5,
        }
    ).encode()
    head = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while b"data: " not in received:  # the first event: generation is running
            part = s.recv(4096)
            assert part, received
            received += part
    assert received.startswith(b"HTTP/1.1 200"), received

    def freed() -> bool:
        st = replica_stats("tiny", "text")
        return st["cancelled_requests_total"] > before and st["running_sequences"] == 0

    assert wait_until(freed, timeout_s=60)


def test_pre_1_0_client_snippet(base: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The seed's snippet, unchanged but for api_base, with openai==0.28.1 in its own dir."""
    target = tmp_path_factory.mktemp("openai028")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--require-hashes"),
            *("--target", str(target), "-r", str(ROOT / "requirements" / "openai-0.28.txt")),
        ],
        check=True,
        timeout=600,
    )
    snippet = f"""
import openai
openai.api_key = "sk-anything"
openai.api_base = "{base}/v1"
response = openai.Completion.create(
    engine="tiny",
    prompt="What is the capital of France?",
    max_tokens=10,
    n=1,
    stop=None,
    temperature=0.5,
)
print(response.choices[0].text.strip() or "<empty>")
print("finish:", response.choices[0].finish_reason)
"""
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "finish: " in out.stdout
    assert Path(target, "openai", "__init__.py").exists()


@pytest.fixture()
def gguf_model(stack: Any) -> str:
    from tests.assets import require_asset
    from tests.tiny_models import SMOLLM2_GGUF

    require_asset(SMOLLM2_GGUF)  # `make integration` fetches it first: fail, never skip
    return "gguf"


def test_sixteen_streams_without_deadline_are_all_served(base: str, gguf_model: str) -> None:
    """A closed loop as deep as the model's batch (16), no deadline named and no client retries:
    every stream is admitted and runs to its end on llama.cpp (none refused with 429)."""
    import asyncio

    async def one(client: openai.AsyncOpenAI, i: int) -> tuple[int, str | None]:
        stream = await client.chat.completions.create(
            model=gguf_model, messages=[{"role": "user", "content": f"Tell me about {i}."}],
            max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        tokens, finish = 0, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return tokens, finish

    async def main() -> list[tuple[int, str | None]]:
        # the client's own default timeout (600 s, sent as x-stainless-timeout): longer than
        # the default deadline, so nothing caps the queue; only the estimate could refuse
        async with openai.AsyncOpenAI(
            base_url=base + "/v1", api_key="unused", max_retries=0
        ) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(16))))

    results = asyncio.run(main())
    assert results == [(24, "length")] * 16


def test_a_stream_closed_mid_generation_frees_its_llama_cpp_sequence(
    oai: openai.OpenAI, gguf_model: str
) -> None:
    before = replica_stats(gguf_model, "text")["cancelled_requests_total"]
    stream = oai.chat.completions.create(
        model=gguf_model, messages=[{"role": "user", "content": "Write a long story."}],
        max_tokens=250, temperature=0, stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    seen = 0
    for chunk in stream:
        seen += bool(chunk.choices and chunk.choices[0].delta.content)
        if seen == 3:
            break
    assert replica_stats(gguf_model, "text")["running_sequences"] >= 1
    stream.close()

    def freed() -> bool:
        s = replica_stats(gguf_model, "text")
        return (
            s["running_sequences"] == 0
            and s["kv_cells_used"] == 0
            and s["cancelled_requests_total"] == before + 1
        )

    assert wait_until(freed, timeout_s=30)
