"""GAN generators (`services.image.networks`): one forward pass for a whole batch of requests.

Every image has its own seed (request seed + i), so a result never depends on what else was in
the batch. The forward pass runs on one worker thread; PNG encoding runs on a small pool, off
the event loop (and off the GPU's critical path when there is one).

Options (`core.options.GanImageOptions`): `dtype` float32, float16 (CUDA) or bfloat16;
`compile` (false, true, or a `torch.compile` mode) runs static shapes: each forward pass is
padded up to the smallest of `buckets` (default: powers of two up to `max_forward_batch`) that
holds it, and every bucket is compiled while the model loads, not on a client's request.
Latents are drawn in float32 from each seed whatever the dtype, so the same seed gives the same
picture up to rounding (`scripts/gpu_check.py` measures the PSNR of each dtype against float32).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from core.options import GanImageOptions
from core.replica import ModelFacts
from core.types import GeneratedImage, ImageRequest, ImageResult
from services.engine import resolve_dtype
from services.image.encode import encode_image
from services.image.engine import ImageEngine

_SEED_MOD = 2**64


class GanImageEngine(ImageEngine):
    options: GanImageOptions

    async def _start(self) -> None:
        self._encoders = self.thread_pool("png", self.options.encode_threads)
        self.model = await self.load_torch_model(self._load, "gan")

    def _load(self, weights: str) -> Any:
        from services.image.networks import load_generator

        opts = self.options
        self.dtype = resolve_dtype(opts.dtype, self.device)
        model, meta = load_generator(weights, device=self.device)
        self.model = model.to(self.dtype)
        self.meta = meta
        self.labels = tuple(meta.get("labels", []))
        self.latent_dim = int(meta["latent_dim"])
        self.size = int(meta["image_size"])
        self.channels = int(meta["channels"])
        self.buckets: list[int] = []
        self.compile_mode = self._compile_mode(opts.compile)
        if self.compile_mode:
            self._compile(opts.buckets)
        return self.model

    def _compile_mode(self, value: bool | str) -> str | None:
        if value is False:
            return None
        if value is True:
            return "reduce-overhead" if self.device.startswith("cuda") else "default"
        return value

    def _compile(self, buckets: list[int] | None) -> None:
        """torch.compile with static shapes, one graph per bucket, all built now."""
        import torch._dynamo

        max_forward = self.options.max_forward_batch
        if buckets is None:  # powers of two below max_forward_batch, then itself
            buckets = [2**i for i in range(max_forward.bit_length()) if 2**i < max_forward]
            buckets.append(max_forward)
        self.buckets = sorted(set(buckets))
        limit = len(self.buckets) + 2
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        self.model = torch.compile(  # type: ignore[assignment]
            self.model, mode=self.compile_mode, dynamic=False
        )
        graphs = self.device.startswith("cuda") and self.compile_mode != "default"
        with torch.inference_mode():
            for b in self.buckets:  # CUDA graphs are recorded on the third run of a shape
                for _ in range(3 if graphs else 1):
                    self._run(torch.zeros(b, self.latent_dim), torch.zeros(b, dtype=torch.long))

    def facts(self) -> ModelFacts:
        return replace(
            super().facts(),
            image_size=self.size,
            channels=self.channels,
            source=str(self.meta.get("source", "")),
            license=str(self.meta.get("license", "")),
            details={
                "dtype": str(self.dtype).removeprefix("torch."),
                "compile": self.compile_mode or "off",
            },
        )

    def _latents(self, requests: list[ImageRequest]) -> tuple[torch.Tensor, torch.Tensor, list]:
        zs, labels, plan = [], [], []
        for r in requests:
            for i in range(r.count):
                seed = ((r.seed or 0) + i) % _SEED_MOD
                g = torch.Generator().manual_seed(seed)
                zs.append(torch.randn(self.latent_dim, generator=g))
                if self.labels:
                    label = (
                        self.labels.index(r.label)
                        if r.label
                        else int(torch.randint(len(self.labels), (1,), generator=g))
                    )
                else:
                    label = 0
                labels.append(label)
                plan.append((seed, self.labels[label] if self.labels else None))
        return torch.stack(zs), torch.tensor(labels, dtype=torch.long), plan

    def _run(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One forward pass of `len(z)` <= max_forward_batch images -> uint8 N,H,W,C on CPU.
        A compiled model gets the batch padded to its bucket; the padding is dropped."""
        n = len(z)
        if self.buckets:
            size = next(b for b in self.buckets if b >= n)
            if size > n:
                z = torch.cat([z, z.new_zeros(size - n, z.shape[1])])
                labels = torch.cat([labels, labels.new_zeros(size - n)])
        zb = z.to(self.device, non_blocking=True).to(self.dtype)
        lb = labels.to(self.device, non_blocking=True) if self.labels else None
        images = self.model(zb, lb)[:n]
        pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu()

    @torch.inference_mode()
    def _forward(self, requests: list[ImageRequest]) -> tuple[np.ndarray, list]:
        z, labels, plan = self._latents(requests)
        step = self.options.max_forward_batch
        outs = [self._run(z[i : i + step], labels[i : i + step]) for i in range(0, len(z), step)]
        return torch.cat(outs).numpy(), plan

    async def generate_batch(self, requests: list[ImageRequest]) -> list[ImageResult | Exception]:
        pixels, plan = await self.run_model(self._forward, requests)
        formats = [r.format for r in requests for _ in range(r.count)]
        level = self.options.png_level
        encoded = await asyncio.gather(
            *[
                self.run_in(self._encoders, encode_image, pixels[i], formats[i], level)
                for i in range(len(pixels))
            ]
        )
        results: list[ImageResult | Exception] = []
        k = 0
        for r in requests:
            images = []
            for _ in range(r.count):
                (data, mime), (seed, label) = encoded[k], plan[k]
                images.append(
                    GeneratedImage(data, mime, self.size, self.size, self.channels, seed, label)
                )
                k += 1
            results.append(ImageResult(r.request_id, r.model, images))
        return results
