"""Response conversion without Ray: domain results and chunks to aigc.v1 messages, every field
kept."""

from __future__ import annotations

import pytest

from aigc.v1 import text_pb2
from core.types import (
    AudioChunk,
    AudioResult,
    Completion,
    FinishReason,
    GeneratedImage,
    ImageResult,
    TextChunk,
    TextResult,
)
from gateway import convert


def test_text_response_carries_completions_and_usage():
    result = TextResult(
        request_id="r",
        model="t",
        completions=[
            Completion(0, "ab", FinishReason.LENGTH, 2),
            Completion(1, "c", FinishReason.STOP, 1),
        ],
        prompt_tokens=5,
    )
    pb = convert.text_response(result)
    assert (pb.id, pb.model) == ("r", "t")
    assert [(c.index, c.text, c.completion_tokens) for c in pb.completions] == [
        (0, "ab", 2),
        (1, "c", 1),
    ]
    assert [c.finish_reason for c in pb.completions] == [
        text_pb2.FINISH_REASON_LENGTH,
        text_pb2.FINISH_REASON_STOP,
    ]
    assert (pb.usage.prompt_tokens, pb.usage.completion_tokens, pb.usage.total_tokens) == (5, 3, 8)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (None, text_pb2.FINISH_REASON_UNSPECIFIED),
        (FinishReason.LENGTH, text_pb2.FINISH_REASON_LENGTH),
        (FinishReason.STOP, text_pb2.FINISH_REASON_STOP),
        (FinishReason.CANCELLED, text_pb2.FINISH_REASON_CANCELLED),
    ],
)
def test_text_chunk_and_finish_reasons(reason, expected):
    pb = convert.text_chunk(TextChunk(1, "tok", 1, reason, 4), "r", "t")
    assert (pb.id, pb.model, pb.index, pb.delta) == ("r", "t", 1, "tok")
    assert pb.finish_reason == expected
    assert not pb.HasField("usage")  # the servicer adds usage to the last chunk only


def test_image_response_keeps_every_image_field():
    images = [
        GeneratedImage(b"png", "image/png", 28, 28, 1, 7, "circle"),
        GeneratedImage(b"raw", "application/octet-stream", 8, 8, 3, 2**64 - 1, None),
    ]
    pb = convert.image_response(ImageResult("r", "i", images))
    assert (pb.id, pb.model) == ("r", "i")
    first, second = pb.images
    assert (first.data, first.mime_type, first.width, first.height, first.channels) == (
        b"png",
        "image/png",
        28,
        28,
        1,
    )
    assert (first.seed, first.label) == (7, "circle")
    assert (second.seed, second.label, second.channels) == (2**64 - 1, "", 3)


def test_audio_response_and_chunk():
    pb = convert.audio_response(AudioResult("r", "a", b"RIFF", "audio/wav", 24000, 0.5, 3))
    assert (pb.id, pb.model, pb.audio, pb.mime_type) == ("r", "a", b"RIFF", "audio/wav")
    assert (pb.sample_rate, pb.channels, pb.duration_seconds, pb.seed) == (24000, 1, 0.5, 3)
    chunk = convert.audio_chunk(AudioChunk(2, b"\x00\x01" * 8000, 16000, last=True), "r", "a")
    assert (chunk.id, chunk.model, chunk.index, chunk.sample_rate, chunk.last) == (
        "r",
        "a",
        2,
        16000,
        True,
    )
    assert chunk.audio == b"\x00\x01" * 8000
    assert chunk.duration_seconds == 0.5  # 8000 samples at 16 kHz
