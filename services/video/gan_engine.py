"""Clips from a GAN generator (`services.image.networks`): a seeded walk through its latent
space, at its native size, `seconds` x `fps` frames, encoded H.264 in MP4.

The walk: seeded points z_0, z_1, ... (seed + i each, so a clip depends on its seed alone) with
spherical interpolation between neighbours (a Gaussian latent's norm stays where the
generator was trained). An unconditional model passes a point every `seconds_per_point`; a
conditional one passes one point per label its prompt names ("a sneaker turning into a bag":
two), blending the two labels' embeddings along the way, or, for a single label, walks within
that label. Frames run through the generator `max_forward_batch` at a time on the model's
thread; the MP4, thumbnail and spritesheet are encoded on another thread.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.options import GanVideoOptions
from core.types import VideoChunk, VideoRequest, VideoResult
from core.video import read_labels
from services.video.encode import encode_mp4, spritesheet, thumbnail
from services.video.engine import VideoEngine

_SEED_MOD = 2**64
FRAMES_SHARE = 90  # progress while frames are made; encoding takes the rest


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows `a` to `b` (N, D) by `t` (N,); linear where they are
    (nearly) parallel."""
    na, nb = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.arccos((na * nb).sum(dim=1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None]
    so = torch.sin(omega)
    t = t[:, None]
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so
    linear = (1 - t) * a + t * b
    return torch.where(so.abs() < 1e-4, linear, spherical)


@dataclass
class Walk:
    """Per frame: the latent, and the two labels it lies between with the blend (0: from)."""

    z: torch.Tensor  # (N, latent_dim)
    src: torch.Tensor  # (N,) label index
    dst: torch.Tensor  # (N,)
    blend: torch.Tensor  # (N,)


def plan_walk(frames: int, seed: int, latent_dim: int, keys: list[int], points: int) -> Walk:
    """`points` seeded latents, one per entry of `keys` (its label index), evenly spaced over
    the clip; every frame interpolated between its two neighbours."""
    zs = torch.stack(
        [
            torch.randn(latent_dim, generator=torch.Generator().manual_seed((seed + i) % _SEED_MOD))
            for i in range(points)
        ]
    )
    labels = torch.tensor(keys, dtype=torch.long)
    # frame k sits at k / (frames - 1) of the way along the points
    pos = torch.linspace(0, points - 1, frames) if frames > 1 else torch.zeros(1)
    lo = pos.floor().long().clamp(max=points - 2) if points > 1 else torch.zeros_like(pos).long()
    hi = (lo + 1).clamp(max=points - 1)
    t = pos - lo.float()
    # ease the turn between two labels in and out; the latent moves evenly
    eased = t * t * (3 - 2 * t)
    return Walk(slerp(zs[lo], zs[hi], t), labels[lo], labels[hi], eased)


class GanVideoEngine(VideoEngine):
    options: GanVideoOptions

    async def _start(self) -> None:
        self._encoder = self.thread_pool("video-encode")
        self.model = await self.load_torch_model(self._load, "gan-video")

    def _load(self, weights: str) -> Any:
        from services.image.networks import load_generator

        model, meta = load_generator(weights, device=self.device)
        self.meta = meta
        self.labels = tuple(meta.get("labels", []))
        self.latent_dim = int(meta["latent_dim"])
        self.size = int(meta["image_size"])
        self.channels = int(meta["channels"])
        if self.labels and not hasattr(model, "blend"):
            raise ValueError(
                f"model {self.config.name}: a conditional generator needs `blend` to turn one "
                "label into another (services.image.networks.CGAN28Generator has it)"
            )
        return model

    def facts(self) -> Any:
        from dataclasses import replace

        return replace(
            super().facts(),
            image_size=self.size,
            channels=self.channels,
            source=str(self.meta.get("source", "")),
            license=str(self.meta.get("license", "")),
        )

    def walk(self, request: VideoRequest) -> tuple[Walk, tuple[str, ...]]:
        o = self.options
        frames = request.seconds * o.fps
        seed = request.seed or 0
        if self.labels:
            named = read_labels(request.prompt, self.labels, self.config.name)
            if len(named) == 1:  # within one label: a point every seconds_per_point
                named = named * (max(1, round(request.seconds / o.seconds_per_point)) + 1)
            keys = [self.labels.index(label) for label in named]
        else:
            named = ()
            keys = [0] * (max(1, round(request.seconds / o.seconds_per_point)) + 1)
        walk = plan_walk(frames, seed, self.latent_dim, keys, len(keys))
        return walk, tuple(dict.fromkeys(named))

    @torch.inference_mode()
    def _frames(self, walk: Walk, lo: int, hi: int) -> np.ndarray:
        z = walk.z[lo:hi].to(self.device)
        if self.labels:
            out = self.model.blend(
                z, walk.src[lo:hi].to(self.device), walk.dst[lo:hi].to(self.device),
                walk.blend[lo:hi].to(self.device),
            )  # fmt: skip
        else:
            out = self.model(z)
        pixels = ((out.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()  # type: ignore[no-any-return]

    def _encode(
        self, frames: np.ndarray, audio: tuple[bytes, int] | None
    ) -> tuple[bytes, bytes, bytes]:
        o = self.options
        return (
            encode_mp4(frames, o.fps, o.crf, audio),
            thumbnail(frames),
            spritesheet(frames, o.sprite_columns, o.sprite_frames),
        )

    async def generate_stream(self, request: VideoRequest) -> AsyncIterator[VideoChunk]:
        walk, named = self.walk(request)
        total = len(walk.z)
        step = self.options.max_forward_batch
        parts: list[np.ndarray] = []
        for lo in range(0, total, step):
            parts.append(await self.run_model(self._frames, walk, lo, min(lo + step, total)))
            yield VideoChunk(progress=math.floor(FRAMES_SHARE * min(lo + step, total) / total))
        frames = np.concatenate(parts)
        audio = (request.narration, request.narration_rate) if request.narration else None
        video, thumb, sheet = await self.run_in(self._encoder, self._encode, frames, audio)
        height, width = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
        yield VideoChunk(
            progress=100,
            result=VideoResult(
                request_id=request.request_id,
                model=request.model,
                video=video,
                thumbnail=thumb,
                spritesheet=sheet,
                width=width,
                height=height,
                fps=self.options.fps,
                frames=total,
                seed=request.seed or 0,
                labels=named,
            ),
        )
