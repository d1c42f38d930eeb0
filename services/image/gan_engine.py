"""GAN generators (`services.image.networks`): one forward pass for a whole batch of requests.

Every image has its own seed (request seed + i), so a result never depends on what else was in
the batch. The forward pass runs on one worker thread; PNG encoding runs on a small pool, off
the event loop (and off the GPU's critical path when there is one).

Options:
- `max_forward_batch`: images per forward pass (default 256).
- `dtype`: `float32` (default), `float16` (CUDA only) or `bfloat16`. Latents are drawn in
  float32 from each seed whatever the dtype, so the same seed gives the same picture up to
  rounding (`scripts/gpu_check.py` measures the PSNR of each dtype against float32).
- `compile`: `false` (default), `true`, or a `torch.compile` mode (`default`,
  `reduce-overhead` = CUDA graphs, `max-autotune`); `true` is `reduce-overhead` on CUDA and
  `default` on CPU. A compiled generator runs static shapes: each forward pass is padded up to
  the smallest of `buckets` (default: powers of two up to `max_forward_batch`) that holds it,
  and every bucket is compiled while the model loads, not on a client's request.
- `encode_threads` (default 2), `png_level` (zlib level, default 1).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import numpy as np
import torch

from services.engine import resolve_device, resolve_dtype
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
        opts = self.config.options
        if "half" in opts:
            raise ValueError("option half was replaced by dtype: use `dtype: float16`")
        self.dtype = resolve_dtype(str(opts.get("dtype", "float32")), self.device)
        model, meta = load_generator(self.config.weights, device=self.device)
        self.model = model.to(self.dtype)
        self.meta = meta
        self.labels = list(meta.get("labels", []))
        self.latent_dim = int(meta["latent_dim"])
        self.size = int(meta["image_size"])
        self.channels = int(meta["channels"])
        self.parameters = sum(p.numel() for p in model.parameters())
        self.buckets: list[int] = []
        self.compile_mode = self._compile_mode(opts.get("compile", False))
        if self.compile_mode:
            self._compile(opts.get("buckets"))

    def _compile_mode(self, value: Any) -> str | None:
        modes = ("default", "reduce-overhead", "max-autotune")
        if value is False or value is None:
            return None
        if value is True:
            return "reduce-overhead" if self.device.startswith("cuda") else "default"
        if value not in modes:
            raise ValueError(f"option compile must be true, false or one of {list(modes)}")
        return str(value)

    def _compile(self, buckets: Any) -> None:
        """torch.compile with static shapes, one graph per bucket, all built now."""
        import torch._dynamo

        if buckets is None:
            buckets, b = [], 1
            while b < self.max_forward:
                buckets.append(b)
                b *= 2
            buckets.append(self.max_forward)
        self.buckets = sorted({int(b) for b in buckets})
        if not self.buckets or self.buckets[0] < 1 or self.buckets[-1] < self.max_forward:
            raise ValueError("option buckets must be positive and reach max_forward_batch")
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

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "compile": self.compile_mode or "off",
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
        step = self.max_forward
        outs = [self._run(z[i : i + step], labels[i : i + step]) for i in range(0, len(z), step)]
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
