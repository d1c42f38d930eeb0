"""PCM16 and WAV encoding for synthesized speech."""

from __future__ import annotations

import numpy as np

from aigc.wav import wav_bytes

__all__ = ["to_pcm16", "wav_bytes"]


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> signed 16-bit little-endian mono."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()
