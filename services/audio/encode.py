"""PCM16 and WAV encoding for synthesized speech."""

from __future__ import annotations

import io
import wave

import numpy as np


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> signed 16-bit little-endian mono."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def wav_bytes(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return buf.getvalue()
