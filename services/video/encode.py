"""A clip's frames to what `/v1/videos` hands out: H.264 in MP4 (PyAV, FFmpeg's libx264), a
PNG thumbnail and a PNG spritesheet (a grid of frames)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from services.image.encode import encode_png


def _rgb(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 with C 1, 3 or 4 -> (N, H', W', 3) with even sides (yuv420p needs
    them: an odd edge is repeated once)."""
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    elif frames.shape[-1] == 4:
        frames = frames[..., :3]
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def encode_mp4(
    frames: np.ndarray, fps: int, crf: int = 18, audio: tuple[bytes, int] | None = None
) -> bytes:
    """H.264 (yuv420p, the profile every browser plays) in MP4 with the index first
    (`faststart`: a player starts before the whole file arrives); one frame per 1/fps s.
    `audio` (PCM16 mono, sample rate): an AAC track, cut or padded to the clip's length."""
    rgb = _rgb(frames)
    # faststart rewrites the file once written, which needs a real file, not a BytesIO
    with tempfile.TemporaryDirectory(prefix="aigc-video-") as folder:
        path = Path(folder) / "clip.mp4"
        _write(path, rgb, fps, crf, audio)
        return path.read_bytes()


def _write(
    path: Path, rgb: np.ndarray, fps: int, crf: int, audio: tuple[bytes, int] | None
) -> None:
    import av

    _, height, width, _ = rgb.shape
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.codec_context.thread_count = 1
        sound = None
        if audio is not None and audio[1] > 0:  # every stream is added before the first packet
            sound = out.add_stream("aac", rate=audio[1])
            sound.layout = "mono"  # type: ignore[union-attr]
        for pixels in rgb:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None and audio is not None:
            pcm, rate = audio
            samples = np.frombuffer(pcm, dtype=np.int16)
            length = len(rgb) * rate // fps
            samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
            chunk = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
            chunk.sample_rate, chunk.pts = rate, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))


def thumbnail(frames: np.ndarray) -> bytes:
    """The middle frame, as PNG."""
    return encode_png(np.ascontiguousarray(frames[len(frames) // 2]))


def spritesheet(frames: np.ndarray, columns: int = 8, most: int = 32) -> bytes:
    """Up to `most` frames spread evenly over the clip, `columns` to a row, as one PNG."""
    n = min(most, len(frames))
    picked = frames[np.linspace(0, len(frames) - 1, n).round().astype(int)]
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    _, h, w, c = frames.shape
    sheet = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for k, frame in enumerate(picked):
        r, q = divmod(k, columns)
        sheet[r * h : (r + 1) * h, q * w : (q + 1) * w] = frame
    return encode_png(sheet)
