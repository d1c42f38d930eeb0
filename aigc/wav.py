"""WAV (RIFF, PCM16) headers and files with the standard library alone: the one writer the
SDK's CLI, the audio engines and the OpenAI front end's streamed speech all use."""

from __future__ import annotations

import struct

UNKNOWN_SIZE = 0xFFFFFFFF  # what streamed WAV writers put where the sizes go


def wav_header(sample_rate: int, data_bytes: int | None = None, channels: int = 1) -> bytes:
    """The 44-byte header before `data_bytes` of PCM16; None: a stream of unknown length."""
    data_size = UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    block = 2 * channels
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block,
                                block, 16)
        + b"data" + struct.pack("<I", data_size)
    )  # fmt: skip


def wav_bytes(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """A complete WAV file of signed 16-bit little-endian samples."""
    return wav_header(sample_rate, len(pcm16), channels) + pcm16
