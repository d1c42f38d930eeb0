"""The conditional VAE: committed weights judged by the independent classifier, and the `vae`
engine (seeded, labelled, batched like the GANs, temperature option). No Ray; a few seconds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from core.config import ModelConfig
from core.options import VaeImageOptions
from core.registry import engine_class
from core.types import ImageFormat, ImageRequest
from services.image.networks import (
    CVAE28ConvDecoder,
    LabelPrior,
    load_classifier,
    load_generator,
)
from services.image.vae_engine import VaeImageEngine

MODELS = Path(__file__).resolve().parents[2] / "models"
VAE = MODELS / "fashion-vae"


def _engine(**options: object) -> VaeImageEngine:
    cfg = ModelConfig(
        name="fashion-vae",
        modality="image",
        engine="vae",
        weights=str(VAE),
        device="cpu",
        options=options,
        batching={"max_batch_size": 64},
    )
    return VaeImageEngine(cfg)


def _run(engine: VaeImageEngine, requests: list[ImageRequest]) -> list[list[np.ndarray]]:
    async def main():
        await engine.start()
        try:
            return await engine.generate_batch(requests)
        finally:
            await engine.stop()

    results = asyncio.run(main())
    return [[np.frombuffer(i.data, np.uint8).reshape(28, 28) for i in r.images] for r in results]


@torch.no_grad()
def test_vae_samples_are_judged_on_label() -> None:
    """The committed decoder's samples (eps ~ N(0, I) through its fitted label prior) mostly show
    the requested label to the classifier trained on real images: 0.876 recorded at temperature
    1 (chance: 0.10; the GAN: 0.93; the issue's goal: 0.85)."""
    decoder, config = load_generator(VAE)
    classifier, _ = load_classifier(MODELS / "fashion-classifier")
    gen = torch.Generator().manual_seed(99)
    per_label = 50
    hits = 0
    for label in range(len(config["labels"])):
        z = torch.randn(per_label, config["latent_dim"], generator=gen)
        images = decoder(z, torch.full((per_label,), label, dtype=torch.long))
        assert images.shape == (per_label, 1, 28, 28)
        assert -1 <= float(images.min()) and float(images.max()) <= 1
        hits += int((classifier(images).argmax(1) == label).sum())
    accuracy = hits / (per_label * len(config["labels"]))
    assert accuracy >= 0.65
    recorded = json.loads((VAE / "eval.json").read_text())
    assert accuracy == pytest.approx(recorded["judged_accuracy"], abs=0.06)


def test_vae_engine_is_registered_and_seeded_per_image() -> None:
    assert engine_class("image", "vae") is VaeImageEngine
    raw = ImageFormat.RAW
    alone = _run(
        _engine(), [ImageRequest("a", "fashion-vae", 3, seed=7, label="sneaker", format=raw)]
    )
    mixed = _run(
        _engine(),
        [
            ImageRequest("b", "fashion-vae", 2, seed=1, label="bag", format=raw),
            ImageRequest("a", "fashion-vae", 3, seed=7, label="sneaker", format=raw),
        ],
    )
    # same seed and label, whatever else is in the batch: the same pixels
    assert all(np.array_equal(x, y) for x, y in zip(alone[0], mixed[1], strict=True))
    # a different seed per image: different images
    assert not np.array_equal(alone[0][0], alone[0][1])
    # another label from the same seed: another picture
    bag = _run(_engine(), [ImageRequest("c", "fashion-vae", 1, seed=7, label="bag", format=raw)])
    assert not np.array_equal(alone[0][0], bag[0][0])


def test_vae_temperature_scales_the_latent() -> None:
    """Temperature 0 would be the mean image; a lower temperature moves samples towards it, so
    the spread across seeds shrinks, and the option is reported."""
    req = [ImageRequest("a", "fashion-vae", 16, seed=3, label="dress", format=ImageFormat.RAW)]
    spread = {}
    for t in (0.3, 1.0):
        engine = _engine(temperature=t)
        images = np.stack(_run(engine, req)[0]).astype(float)
        spread[t] = float(images.std(axis=0).mean())
        assert engine.facts().details["temperature"] == t
        assert engine.facts().source.startswith("scripts/demo_models/train_fashion_vae.py")
    assert spread[0.3] < 0.7 * spread[1.0]


@pytest.mark.parametrize(
    "options",
    [{"temperature": 0}, {"temperature": -1}, {"temprature": 0.5}, {"half": True}],
)
def test_vae_rejects_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        VaeImageOptions.model_validate(options)
    with pytest.raises(ValidationError):
        asyncio.run(_engine(**options).start())


def _artifact(path: Path, architecture: str, kwargs: dict[str, int]) -> Path:
    """A freshly initialised decoder saved in the image artifact format (config + weights)."""
    from safetensors.torch import save_file

    from services.image.networks import build_generator

    config = json.loads((VAE / "config.json").read_text())
    config = {**config, "architecture": architecture, "latent_dim": 8, "kwargs": kwargs}
    torch.manual_seed(0)
    model = build_generator(config)
    path.mkdir()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors")
    )
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("architecture", "kwargs"),
    [("cvae28", {"embed_dim": 4, "hidden": 32}), ("cvae28conv", {"embed_dim": 4, "base": 16})],
)
def test_vae_decoders_build_load_and_serve(
    tmp_path: Path, architecture: str, kwargs: dict[str, int]
) -> None:
    """Both decoders (the MLP `cvae28` and the convolutional `cvae28conv`) build from a
    config.json, load strictly, and serve seeded, labelled batches through the `vae` engine."""
    path = _artifact(tmp_path / architecture, architecture, kwargs)
    decoder, config = load_generator(path)
    assert config["architecture"] == architecture
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(5)
    with torch.no_grad():
        images = decoder(z, labels)
        assert images.shape == (5, 1, 28, 28)
        assert -1 <= float(images.min()) and float(images.max()) <= 1
        assert decoder.logits(z, labels).shape == (5, 1, 28, 28)  # type: ignore[operator]
        # the label reaches the pixels: same z, another label, another image
        assert not torch.equal(images, decoder(z, (labels + 1) % 10))
    with pytest.raises(ValueError, match="needs labels"):
        decoder(z, None)

    cfg = ModelConfig(
        name="fashion-vae",
        modality="image",
        engine="vae",
        weights=str(path),
        device="cpu",
        batching={"max_batch_size": 64},
    )
    raw = ImageFormat.RAW

    def run(requests: list[ImageRequest]) -> list[list[np.ndarray]]:
        return _run(VaeImageEngine(cfg), requests)

    alone = run([ImageRequest("a", "fashion-vae", 2, seed=5, label="coat", format=raw)])
    mixed = run(
        [
            ImageRequest("b", "fashion-vae", 3, seed=1, label="shirt", format=raw),
            ImageRequest("a", "fashion-vae", 2, seed=5, label="coat", format=raw),
        ]
    )
    assert len(mixed[0]) == 3
    assert all(np.array_equal(x, y) for x, y in zip(alone[0], mixed[1], strict=True))
    assert not np.array_equal(alone[0][0], alone[0][1])


@torch.no_grad()
def test_label_prior_maps_noise_per_label() -> None:
    """`LabelPrior`: identity until fitted (a decoder with it samples exactly as without it);
    fitted, each label's noise becomes mean[y] + scale_tril[y] @ eps, and the artifact
    round-trips it through safetensors like any weight."""
    torch.manual_seed(0)
    plain = CVAE28ConvDecoder(latent_dim=4, num_labels=3, embed_dim=4, base=8)
    with_prior = CVAE28ConvDecoder(
        latent_dim=4, num_labels=3, embed_dim=4, base=8, label_prior=True
    )
    with_prior.load_state_dict({**with_prior.state_dict(), **plain.state_dict()})
    eps = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(plain(eps, labels), with_prior(eps, labels))

    prior = with_prior.prior
    assert isinstance(prior, LabelPrior)
    prior.mean[1] = torch.tensor([1.0, -2.0, 0.5, 3.0])
    prior.scale_tril[1] = torch.diag(torch.tensor([2.0, 1.0, 0.5, 0.1]))
    z = prior(eps, labels)
    assert torch.equal(z[labels != 1], eps[labels != 1])  # identity for labels not fitted
    expected = prior.mean[1] + eps[labels == 1] * torch.tensor([2.0, 1.0, 0.5, 0.1])
    assert torch.allclose(z[labels == 1], expected)
    assert not torch.equal(plain(eps, labels), with_prior(eps, labels))

    reloaded = CVAE28ConvDecoder(latent_dim=4, num_labels=3, embed_dim=4, base=8, label_prior=True)
    reloaded.load_state_dict(with_prior.state_dict(), strict=True)
    assert torch.equal(reloaded(eps, labels), with_prior(eps, labels))
