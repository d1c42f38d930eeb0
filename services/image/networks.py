"""Generator networks for the image service, and the artifact format they load from.

An image model artifact is a directory holding ``config.json`` and ``model.safetensors``.
``config.json`` names the architecture (a key of :data:`GENERATORS`), ``latent_dim``,
``image_size``, ``channels``, ``labels`` (empty for unconditional models), ``kwargs`` passed to
the class, plus ``license`` and ``source``. Every generator maps ``z`` of shape
``(N, latent_dim)`` (and optional integer ``labels`` of shape ``(N,)``) to images
``(N, channels, image_size, image_size)`` in ``[-1, 1]``.

Importing this module has no side effects: nothing is loaded until :func:`load_generator`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class DCGAN64Generator(nn.Module):
    """Unconditional 64x64 DCGAN generator (the PyTorch DCGAN tutorial layout).

    The module names (``main.0`` ... ``main.12``) match the gan-face-generate checkpoint, so its
    state dict loads with ``strict=True``.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 3,
        num_labels: int = 0,
        ngf: int = 64,
        **_: Any,
    ) -> None:
        super().__init__()
        if num_labels:
            raise ValueError("dcgan64 is unconditional: num_labels must be 0")
        self.latent_dim = latent_dim
        self.main = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, ngf * 8, 4, 1, 0, bias=False),  # 4x4
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # 8x8
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 16x16
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # 32x32
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False),  # 64x64
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``labels`` is accepted for a uniform call signature and ignored."""
        out: Tensor = self.main(z.reshape(z.shape[0], self.latent_dim, 1, 1))
        return out


class CGAN28Generator(nn.Module):
    """Class-conditional 28x28 generator: [z, embed(label)] -> 7x7 -> 14x14 -> 28x28."""

    def __init__(
        self,
        latent_dim: int = 64,
        channels: int = 1,
        num_labels: int = 10,
        embed_dim: int = 32,
        base: int = 128,
        **_: Any,
    ) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError("cgan28 is conditional: num_labels must be >= 1")
        self.latent_dim = latent_dim
        self.num_labels = num_labels
        self.base = base
        self.embed = nn.Embedding(num_labels, embed_dim)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + embed_dim, base * 7 * 7, bias=False),
            nn.BatchNorm1d(base * 7 * 7),
            nn.ReLU(True),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(base, base // 2, 4, 2, 1, bias=False),  # 14x14
            nn.BatchNorm2d(base // 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(base // 2, channels, 4, 2, 1),  # 28x28
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("cgan28 needs labels: an int64 tensor of shape (N,)")
        return self._decode(z, self.embed(labels.long()))

    def blend(self, z: Tensor, a: Tensor, b: Tensor, t: Tensor) -> Tensor:
        """Images between label ``a`` and label ``b`` (each ``(N,)``): the label embeddings
        mixed by ``t`` (``(N,)``, 0 = a, 1 = b), so a clip can turn one label into another."""
        mixed = torch.lerp(self.embed(a.long()), self.embed(b.long()), t[:, None].to(z.dtype))
        return self._decode(z, mixed)

    def _decode(self, z: Tensor, condition: Tensor) -> Tensor:
        h = torch.cat([z.reshape(z.shape[0], self.latent_dim), condition.to(z.dtype)], dim=1)
        out: Tensor = self.up(self.fc(h).view(-1, self.base, 7, 7))
        return out


class LabelPrior(nn.Module):
    """A Gaussian per label over the latent space, fitted after training to the aggregate
    posterior of that label's training images (ex-post density estimation, Ghosh et al. 2020,
    "From Variational to Deterministic Autoencoders"). Maps ``eps ~ N(0, I)`` to
    ``mean[y] + scale_tril[y] @ eps``, so samples land where the decoder saw that label's
    images rather than where N(0, I) puts them. Identity until fitted."""

    mean: Tensor  # (labels, latent_dim)
    scale_tril: Tensor  # (labels, latent_dim, latent_dim), lower triangular

    def __init__(self, num_labels: int, latent_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_labels, latent_dim))
        eye = torch.eye(latent_dim).expand(num_labels, latent_dim, latent_dim)
        self.register_buffer("scale_tril", eye.clone())

    def forward(self, eps: Tensor, labels: Tensor) -> Tensor:
        labels = labels.long()
        scaled = torch.bmm(self.scale_tril[labels], eps.unsqueeze(2)).squeeze(2)
        out: Tensor = self.mean[labels] + scaled
        return out


class CVAEDecoder(nn.Module):
    """What the conditional VAE decoders share: ``logits(z, labels)`` for training (z from the
    posterior), ``forward(eps, labels)`` for sampling (``eps ~ N(0, T^2 I)``, mapped through
    the fitted :class:`LabelPrior` when the artifact has one, ``label_prior: true`` in its
    kwargs), returning the Bernoulli mean in ``[-1, 1]`` (``tanh(logits / 2)``)."""

    name = "cvae"
    latent_dim: int
    prior: LabelPrior | None

    def _init_prior(self, label_prior: bool, num_labels: int) -> None:
        self.prior = LabelPrior(num_labels, self.latent_dim) if label_prior else None

    def logits(self, z: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError(f"{self.name} needs labels: an int64 tensor of shape (N,)")
        z = z.reshape(z.shape[0], self.latent_dim)
        if self.prior is not None:
            z = self.prior(z, labels)
        return torch.tanh(self.logits(z, labels) / 2)


class CVAE28Decoder(CVAEDecoder):
    """Decoder of a conditional VAE, 28x28: an MLP from [z, embed(label)] to pixel logits.

    Trained by ``scripts/demo_models/train_fashion_vae.py`` (which holds the encoder); returns the
    Bernoulli mean mapped to ``[-1, 1]`` (``tanh(logits / 2) = 2 * sigmoid(logits) - 1``), so it
    serves like any generator. ``logits`` is what training scores with binary cross-entropy.
    """

    name = "cvae28"

    def __init__(
        self,
        latent_dim: int = 16,
        channels: int = 1,
        num_labels: int = 10,
        embed_dim: int = 16,
        hidden: int = 512,
        image_size: int = 28,
        label_prior: bool = False,
        **_: Any,
    ) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError("cvae28 is conditional: num_labels must be >= 1")
        self.latent_dim = latent_dim
        self._init_prior(label_prior, num_labels)
        self.shape = (channels, image_size, image_size)
        self.embed = nn.Embedding(num_labels, embed_dim)
        self.net = nn.Sequential(
            nn.Linear(latent_dim + embed_dim, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, channels * image_size * image_size),
        )

    def logits(self, z: Tensor, labels: Tensor) -> Tensor:
        h = torch.cat([z.reshape(z.shape[0], self.latent_dim), self.embed(labels.long())], dim=1)
        out: Tensor = self.net(h).view(-1, *self.shape)
        return out


class CVAE28ConvDecoder(CVAEDecoder):
    """Convolutional decoder of a conditional VAE, 28x28, the label fed to every layer.

    ``[z, embed(label)]`` -> Linear -> ``base`` x 7x7 -> ConvTranspose -> ``base/2`` x 14x14 ->
    3x3 conv -> ConvTranspose -> pixel logits 28x28; before each convolution the label
    embedding is appended as ``embed_dim`` constant feature maps, so the label conditions every
    stage, not only the first. Same interface as :class:`CVAE28Decoder` (``logits`` for
    training, ``forward`` in ``[-1, 1]``); trained by ``scripts/demo_models/train_fashion_vae.py``.
    """

    name = "cvae28conv"

    def __init__(
        self,
        latent_dim: int = 16,
        channels: int = 1,
        num_labels: int = 10,
        embed_dim: int = 16,
        base: int = 64,
        image_size: int = 28,
        label_prior: bool = False,
        **_: Any,
    ) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError("cvae28conv is conditional: num_labels must be >= 1")
        if image_size != 28:
            raise ValueError("cvae28conv makes 28x28 images")
        self.latent_dim = latent_dim
        self._init_prior(label_prior, num_labels)
        self.base = base
        self.embed = nn.Embedding(num_labels, embed_dim)
        self.fc = nn.Sequential(nn.Linear(latent_dim + embed_dim, base * 7 * 7), nn.ReLU(True))
        half = base // 2
        self.up1 = nn.ConvTranspose2d(base + embed_dim, half, 4, 2, 1)  # 14x14
        self.mid = nn.Conv2d(half + embed_dim, half, 3, 1, 1)
        self.up2 = nn.ConvTranspose2d(half + embed_dim, channels, 4, 2, 1)  # 28x28

    @staticmethod
    def _with_label(h: Tensor, e: Tensor) -> Tensor:
        maps = e[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        return torch.cat([h, maps], dim=1)

    def logits(self, z: Tensor, labels: Tensor) -> Tensor:
        e = self.embed(labels.long())
        h = self.fc(torch.cat([z.reshape(z.shape[0], self.latent_dim), e], dim=1))
        h = h.view(-1, self.base, 7, 7)
        h = torch.relu(self.up1(self._with_label(h, e)))
        h = torch.relu(self.mid(self._with_label(h, e)))
        out: Tensor = self.up2(self._with_label(h, e))
        return out


GENERATORS: dict[str, type[nn.Module]] = {
    "dcgan64": DCGAN64Generator,
    "cgan28": CGAN28Generator,
    "cvae28": CVAE28Decoder,
    "cvae28conv": CVAE28ConvDecoder,
}


class FashionClassifier(nn.Module):
    """Small CNN judge for 28x28 grayscale images in [-1, 1]; returns logits (N, num_classes)."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(width, width * 2, 3, padding=1),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(True),
            nn.MaxPool2d(2),  # 7x7
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(width * 2 * 7 * 7, 128),
            nn.ReLU(True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


def read_config(path: str | Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((Path(path) / CONFIG_FILE).read_text())
    return config


def build_generator(config: dict[str, Any]) -> nn.Module:
    """Instantiate (untrained) the generator a config describes."""
    arch = config["architecture"]
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator architecture {arch!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[arch](
        latent_dim=int(config["latent_dim"]),
        channels=int(config["channels"]),
        num_labels=len(config.get("labels", [])),
        **config.get("kwargs", {}),
    )


def load_generator(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load an artifact directory; returns the generator in eval mode and its parsed config."""
    config = read_config(path)
    model = build_generator(config)
    model.load_state_dict(load_file(str(Path(path) / WEIGHTS_FILE)), strict=True)
    return model.to(device).eval(), config


def load_classifier(
    path: str | Path, device: str = "cpu"
) -> tuple[FashionClassifier, dict[str, Any]]:
    """Load the fashion judge saved by ``scripts/demo_models/train_fashion_gan.py``."""
    config = read_config(path)
    model = FashionClassifier(num_classes=len(config["labels"]), **config.get("kwargs", {}))
    model.load_state_dict(load_file(str(Path(path) / WEIGHTS_FILE)), strict=True)
    return model.to(device).eval(), config
