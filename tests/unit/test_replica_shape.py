"""One engine shape behind every Serve deployment (services/replica.py): each request method
first refuses work whose deadline passed and what only the model can refuse
(`Engine.validate`), and a speech stream stops at its deadline between sentences. The
deployment classes run here without Ray (their methods are plain coroutines; Serve only wraps
the class). A batch's per-item errors: tests/integration/test_image_audio.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core.config import ModelConfig
from core.errors import DeadlineExceeded, InvalidArgument
from core.registry import REPLICAS, engine_class, load_object
from core.types import AudioRequest, ImageRequest, TextRequest


def replica(modality: str, engine: str = "echo", **options: Any) -> Any:
    """A deployment object over a started echo engine, built without Serve."""
    cls = load_object(REPLICAS[modality]).func_or_class
    obj = cls.__new__(cls)
    obj.config = ModelConfig(name="m", modality=modality, engine=engine, options=options)
    obj.engine = engine_class(modality, engine)(obj.config)
    asyncio.run(obj.engine.start())
    return obj


def test_a_speech_stream_stops_at_its_deadline_between_sentences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio = replica("audio")
    now = time.time()
    request = AudioRequest("r", "m", text="one two three four", deadline=now + 60)

    async def run() -> list[int]:
        got = []
        with pytest.raises(DeadlineExceeded, match="during the stream"):
            async for chunk in audio.synthesize_stream(request):
                got.append(chunk.index)
                monkeypatch.setattr(time, "time", lambda: now + 120)  # the deadline passes
        return got

    assert asyncio.run(run()) == [0]  # the sentence in hand is sent; no more work after it


@pytest.mark.parametrize(
    ("modality", "method", "request_"),
    [
        ("text", "generate", TextRequest("r", "m", prompt="hi", deadline=1.0)),
        ("text", "generate_stream", TextRequest("r", "m", prompt="hi", deadline=1.0)),
        ("image", "generate", ImageRequest("r", "m", deadline=1.0)),
        ("audio", "synthesize", AudioRequest("r", "m", text="hi", deadline=1.0)),
        ("audio", "synthesize_stream", AudioRequest("r", "m", text="hi", deadline=1.0)),
    ],
)
def test_every_request_method_refuses_a_passed_deadline_before_work(
    modality: str, method: str, request_: Any
) -> None:
    obj = replica(modality)

    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the engine ran a request whose deadline had passed")

    obj.engine.generate = obj.engine.generate_batch = obj.engine.stream = no_work

    async def call() -> None:
        result = getattr(obj, method)(request_)
        if hasattr(result, "__anext__"):
            await anext(result)
        else:
            await result

    with pytest.raises(DeadlineExceeded, match="before the request reached the model"):
        asyncio.run(call())


def test_what_only_the_model_can_refuse_is_refused_before_work() -> None:
    image = replica("image", labels=["cat"])
    with pytest.raises(InvalidArgument, match="unknown label 'dog'"):
        image.admit(ImageRequest("r", "m", label="dog"))
    audio = replica("audio", voices=["alice"])
    with pytest.raises(InvalidArgument, match="unknown voice 'bob'"):
        audio.admit(AudioRequest("r", "m", text="hi", voice="bob"))
