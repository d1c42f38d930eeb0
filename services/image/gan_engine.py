"""GAN generators (`services.image.networks`): one forward pass for a whole batch of requests.

Every image has its own seed (request seed + i), so a result never depends on what else was in
the batch. The forward pass runs on one worker thread; PNG encoding runs on a small pool, off
the event loop (and off the GPU's critical path when there is one).

Options: `max_forward_batch` (images per forward pass, default 256), `half` (fp16 on CUDA),
`encode_threads` (default 2), `png_level` (zlib level, default 1).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import numpy as np
import torch

from services.engine import resolve_device
from services.image.encode import encode_png
from services.image.engine import ImageEngine
from services.types import GeneratedImage, ImageFormat, ImageRequest, ImageResult

_SEED_MOD = 2**64


class GanImageEngine(ImageEngine):
    async def _start(self) -> None:
        self.device = resolve_device(self.config.device)
        opts = self.config.options
        self.max_forward = int(opts.get("max_forward_batch", 256))
        self.png_level = int(opts.get("png_level", 1))
        self._model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gan")
        self._encoders = concurrent.futures.ThreadPoolExecutor(
            int(opts.get("encode_threads", 2)), thread_name_prefix="png"
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._model_thread, self._load)

    def _load(self) -> None:
        from services.image.networks import load_generator

        torch.set_num_threads(self.config.resources.torch_threads)
        if not self.config.weights:
            raise ValueError(f"model {self.config.name}: 'weights' is required")
        model, meta = load_generator(self.config.weights, device=self.device)
        self.half = bool(self.config.options.get("half", False)) and self.device.startswith("cuda")
        self.model = model.half() if self.half else model
        self.meta = meta
        self.labels = list(meta.get("labels", []))
        self.latent_dim = int(meta["latent_dim"])
        self.size = int(meta["image_size"])
        self.channels = int(meta["channels"])
        self.parameters = sum(p.numel() for p in model.parameters())

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "image_size": self.size,
            "channels": self.channels,
            "source": self.meta.get("source", ""),
            "license": self.meta.get("license", ""),
        }

    def _latents(self, requests: list[ImageRequest]) -> tuple[torch.Tensor, torch.Tensor, list]:
        zs, labels, plan = [], [], []
        for r in requests:
            for i in range(r.count):
                seed = (r.seed + i) % _SEED_MOD
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

    @torch.inference_mode()
    def _forward(self, requests: list[ImageRequest]) -> tuple[np.ndarray, list]:
        z, labels, plan = self._latents(requests)
        outs = []
        for start in range(0, len(z), self.max_forward):
            zb = z[start : start + self.max_forward].to(self.device)
            if self.half:
                zb = zb.half()
            lb = labels[start : start + self.max_forward].to(self.device) if self.labels else None
            images = self.model(zb, lb)
            pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            outs.append(pixels.permute(0, 2, 3, 1).cpu())  # N, H, W, C
        return torch.cat(outs).numpy(), plan

    def _encode(self, pixels: np.ndarray, fmt: ImageFormat) -> bytes:
        if fmt == ImageFormat.RAW:
            return pixels.tobytes()
        return encode_png(pixels, self.png_level)

    async def generate_batch(self, requests: list[ImageRequest]) -> list[ImageResult]:
        loop = asyncio.get_running_loop()
        pixels, plan = await loop.run_in_executor(self._model_thread, self._forward, requests)
        formats = [r.format for r in requests for _ in range(r.count)]
        blobs = await asyncio.gather(
            *[
                loop.run_in_executor(self._encoders, self._encode, pixels[i], formats[i])
                for i in range(len(pixels))
            ]
        )
        results, k = [], 0
        for r in requests:
            images = []
            for _ in range(r.count):
                seed, label = plan[k]
                mime = "image/png" if r.format == ImageFormat.PNG else "application/octet-stream"
                images.append(
                    GeneratedImage(blobs[k], mime, self.size, self.size, self.channels, seed, label)
                )
                k += 1
            results.append(ImageResult(r.request_id, r.model, images))
        return results

    async def stop(self) -> None:
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self._encoders.shutdown(wait=False, cancel_futures=True)
