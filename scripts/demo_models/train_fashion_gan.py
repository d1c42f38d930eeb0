"""Train the class-conditional GAN ``fashion`` and its independent judge on Fashion-MNIST.

1. A small CNN classifier is trained on the real training images and saved to
   ``models/fashion-classifier/`` (not served; it judges generated samples).
2. A conditional GAN is trained and its generator saved to ``models/fashion/`` in the image
   artifact format of ``services/image/networks.py``, with ``eval.json`` holding the judged
   per-label accuracy. Recipe: AC-GAN (the discriminator's class head learns from real images
   only; the generator is rewarded when its samples are classified as the requested label), a
   minibatch-std feature and a mode-seeking term (MSGAN) against collapse to one image per label.

    python scripts/demo_models/train_fashion_gan.py --minutes 4

Training stops at ``--minutes`` of wall time or after ``--steps`` steps when given (use ``--steps``
for a bit-for-bit reproducible run; the time budget depends on the CPU's speed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services.image.networks import (  # noqa: E402
    CONFIG_FILE,
    GENERATORS,
    WEIGHTS_FILE,
    FashionClassifier,
    load_classifier,
)

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
PACKAGE = "dataset-fashion-mnist"
LABELS = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
LICENSE = "MIT (Fashion-MNIST, Copyright 2017 Zalando SE); weights trained by aigc-serve"
SOURCE = "scripts/demo_models/train_fashion_gan.py on Debian package dataset-fashion-mnist"


def ensure_dataset() -> Path:
    """Install the Debian package when missing; return the folder holding the idx files."""

    def listed() -> list[Path]:
        out = subprocess.run(["dpkg", "-L", PACKAGE], capture_output=True, text=True, check=False)
        return [Path(line) for line in out.stdout.splitlines() if line.endswith("idx3-ubyte.gz")]

    files = listed()
    if not files:
        print(f"installing Debian package {PACKAGE!r} ...", flush=True)
        if subprocess.run(["apt-get", "install", "-y", PACKAGE], check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(["apt-get", "install", "-y", PACKAGE], check=True)
        files = listed()
    return files[0].parent if files else DATA_DIR


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(folder: Path, split: str) -> tuple[Tensor, Tensor]:
    """Images as float32 (N, 1, 28, 28) in [-1, 1] and int64 labels."""
    images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


class Discriminator(nn.Module):
    """AC-GAN discriminator: a real/fake logit and class logits."""

    def __init__(self, num_labels: int, width: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),  # 14x14
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),  # 7x7
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
        )
        self.adv = nn.Linear(width * 2 * 49 + 49, 1)
        self.cls = nn.Linear(width * 2 * 49, num_labels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        # Minibatch standard deviation (ProGAN): lets the real/fake head see a collapsed batch.
        spread = h.view(len(h), -1, 49).std(dim=0).mean(dim=0, keepdim=True).expand(len(h), 49)
        return self.adv(torch.cat([h, spread], dim=1)).squeeze(1), self.cls(h)


def save_artifact(path: Path, module: nn.Module, config: dict[str, Any]) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE))
    (path / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600 files
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    preds = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((preds == y).float().mean())


def train_classifier(x: Tensor, y: Tensor, epochs: int, gen: torch.Generator) -> FashionClassifier:
    model = FashionClassifier(num_classes=len(LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    bar = tqdm(total=steps, desc="classifier", unit="step", mininterval=5)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // 128):
            idx = order[i * 128 : (i + 1) * 128]
            batch = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
            loss = F.cross_entropy(model(batch), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, latent_dim: int, gen: torch.Generator) -> None:
    """Replace the running BN statistics with exact averages for the final weights."""
    bns = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    generator.train()
    for _ in range(50):
        z = torch.randn(256, latent_dim, generator=gen)
        generator(z, torch.randint(0, len(LABELS), (256,), generator=gen))
    for bn in bns:
        bn.momentum = 0.1
    generator.eval()


@torch.no_grad()
def judged_accuracy(
    generator: nn.Module, classifier: nn.Module, latent_dim: int, per_label: int, seed: int
) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    result = {}
    for label, name in enumerate(LABELS):
        z = torch.randn(per_label, latent_dim, generator=gen)
        images = generator(z, torch.full((per_label,), label, dtype=torch.long))
        result[name] = float((classifier(images).argmax(1) == label).float().mean())
    return result


def artifact_config(architecture: str, latent_dim: int, kwargs: dict) -> dict:
    """config.json of a 28x28 Fashion-MNIST image artifact (services/image/networks.py)."""
    return {
        "architecture": architecture,
        "latent_dim": latent_dim,
        "image_size": 28,
        "channels": 1,
        "labels": LABELS,
        "kwargs": kwargs,
        "license": LICENSE,
        "source": SOURCE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="GAN training wall-time budget")
    parser.add_argument(
        "--steps", type=int, default=0, help="exact GAN step count (overrides time)"
    )
    parser.add_argument("--classifier-epochs", type=int, default=2)
    parser.add_argument(
        "--reuse-classifier", action="store_true", help="judge with the saved classifier"
    )
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--base", type=int, default=96, help="generator width")
    parser.add_argument("--mode-seeking", type=float, default=1.0, help="MSGAN weight")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    folder = ensure_dataset()
    x_train, y_train = load_split(folder, "train")
    x_test, y_test = load_split(folder, "t10k")
    print(f"Fashion-MNIST from {folder}: {len(x_train)} train, {len(x_test)} test", flush=True)

    t0 = time.monotonic()
    clf_path = args.models / "fashion-classifier"
    if args.reuse_classifier:
        classifier, _ = load_classifier(clf_path)
    else:
        classifier = train_classifier(x_train, y_train, args.classifier_epochs, gen)
    clf_s = time.monotonic() - t0
    test_acc = classifier_accuracy(classifier, x_test, y_test)
    print(f"classifier: test accuracy {test_acc:.4f} in {clf_s:.0f} s", flush=True)
    clf_config = {
        "architecture": "fashion-cnn",
        "image_size": 28,
        "channels": 1,
        "labels": LABELS,
        "kwargs": {"width": 32},
        "test_accuracy": round(test_acc, 4),
        "license": LICENSE,
        "source": SOURCE,
    }
    if not args.reuse_classifier:
        save_artifact(clf_path, classifier, clf_config)

    kwargs = {"embed_dim": 32, "base": args.base}
    generator = GENERATORS["cgan28"](
        latent_dim=args.latent_dim, channels=1, num_labels=len(LABELS), **kwargs
    )
    disc = Discriminator(len(LABELS))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    budget_s = args.minutes * 60.0
    total = args.steps if args.steps else None
    bar = tqdm(
        total=total or int(budget_s), desc="gan", unit="step" if total else "s", mininterval=5
    )
    step = 0
    t0 = time.monotonic()
    while (step < args.steps) if args.steps else (time.monotonic() - t0 < budget_s):
        idx = torch.randint(0, len(x_train), (args.batch,), generator=gen)
        real, real_y = x_train[idx], y_train[idx]
        z = torch.randn(args.batch, args.latent_dim, generator=gen)
        half = torch.randint(0, len(LABELS), (args.batch // 2,), generator=gen)
        fake_y = torch.cat([half, half])  # pairs with the same label for the mode-seeking term
        fake = generator(z, fake_y)

        adv_real, cls_real = disc(real)
        adv_fake, _ = disc(fake.detach())
        loss_d = (
            F.binary_cross_entropy_with_logits(adv_real, torch.full_like(adv_real, 0.9))
            + F.binary_cross_entropy_with_logits(adv_fake, torch.zeros_like(adv_fake))
            # The class head learns from real images only: also classifying fakes lets the
            # generator collapse to one easy-to-classify image per label.
            + F.cross_entropy(cls_real, real_y)
        )
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        adv_fake, cls_fake = disc(fake)
        # Mode seeking (MSGAN): different z for the same label must give different images.
        h = args.batch // 2
        spread = (fake[:h] - fake[h:]).abs().mean() / (z[:h] - z[h:]).abs().mean()
        loss_g = (
            F.binary_cross_entropy_with_logits(adv_fake, torch.ones_like(adv_fake))
            + F.cross_entropy(cls_fake, fake_y)
            + args.mode_seeking / (spread + 1e-5)
        )
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        step += 1
        bar.update(1 if total else int(time.monotonic() - t0) - bar.n)
        bar.set_postfix(
            step=step, d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}", ms=f"{spread:.3f}"
        )
    bar.close()
    gan_s = time.monotonic() - t0
    recalibrate_batchnorm(generator, args.latent_dim, gen)

    per_label = judged_accuracy(generator, classifier, args.latent_dim, 200, seed=1234)
    mean_acc = sum(per_label.values()) / len(per_label)
    print(f"gan: {step} steps in {gan_s:.0f} s; judged accuracy {mean_acc:.4f}")
    for name, acc in per_label.items():
        print(f"  {name:<11} {acc:.3f}")

    config = artifact_config("cgan28", args.latent_dim, kwargs)
    out = args.models / "fashion"
    save_artifact(out, generator, config)
    report = {
        "judged_accuracy": mean_acc,
        "judged_accuracy_per_label": per_label,
        "samples_per_label": 200,
        "sample_seed": 1234,
        "classifier_test_accuracy": test_acc,
        "classifier_seconds": round(clf_s, 1),
        "gan_steps": step,
        "gan_seconds": round(gan_s, 1),
        "generator_parameters": sum(p.numel() for p in generator.parameters()),
        "seed": args.seed,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} and {args.models / 'fashion-classifier'}")


if __name__ == "__main__":
    main()
