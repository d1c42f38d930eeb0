"""Conditional VAE (`engine: vae`): samples eps ~ N(0, T^2 I) and decodes it with the label.

When the artifact carries a fitted label prior (``label_prior: true`` in its kwargs; see
`services.image.networks.LabelPrior`), the decoder maps eps to that label's Gaussian over the
latent space before decoding; otherwise z = eps, the N(0, I) prior the VAE was trained with.

The decoder (``cvae28conv`` or ``cvae28`` in `services.image.networks`, trained by
``scripts/demo_models/train_fashion_vae.py``) is an image artifact like a GAN generator's, so
this engine is the GAN engine with scaled latents: the same per-image seeds (request seed + i),
labels, batching, dtype/compile and PNG encoding off the event loop.

Options: `core.options.VaeImageOptions` (`temperature`, default 1.0: the prior the VAE was
trained with, plus the GAN engine's options).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from core.options import VaeImageOptions
from core.replica import ModelFacts
from core.types import ImageRequest
from services.image.gan_engine import GanImageEngine


class VaeImageEngine(GanImageEngine):
    options: VaeImageOptions

    def _latents(self, requests: list[ImageRequest]) -> tuple[torch.Tensor, torch.Tensor, list]:
        z, labels, plan = super()._latents(requests)
        return z * self.options.temperature, labels, plan

    def facts(self) -> ModelFacts:
        base = super().facts()
        return replace(base, details={**base.details, "temperature": self.options.temperature})
