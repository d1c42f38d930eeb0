"""Train the conditional VAE ``fashion-vae`` on Fashion-MNIST and judge its samples.

Encoder q(z | x, y) is a two-layer MLP (``--encoder conv``: two strided convolutions); the
decoder p(x | z, y) is ``cvae28conv`` in ``services/image/networks.py`` (Linear -> 7x7 -> two
transposed convolutions to 28x28, the label embedding fed to every layer; ``--arch cvae28``: the
earlier two-layer MLP decoder). The latent is Gaussian, the pixels Bernoulli, and the loss is
reconstruction (binary cross-entropy summed over pixels) + beta x KL(q(z | x, y) || N(0, I)),
per image (beta = 1: the negative ELBO).

Sampling. N(0, I) is the prior the KL term pulls towards, but the encoder does not fill it:
samples drawn from it land partly where the decoder saw few images of the label. With
``--label-prior`` the script fits, after training, one Gaussian per label to the aggregate
posterior of that label's training images (ex-post density estimation, as in Ghosh et al.
2020), kept in the artifact (``services.image.networks.LabelPrior``) and used by the engine.
``--prior-margin M`` fits it only to the images the VAE itself finds typical of their label:
their ELBO under it beats every other label's by M nats (the VAE as a Bayes classifier; no
outside classifier is involved).

Only the decoder (with its prior) is saved (``models/fashion-vae/``, the image artifact format);
``eval.json`` records the held-out negative ELBO and the share of sampled images that the
independent classifier of ``train_fashion_gan.py`` (``models/fashion-classifier/``) assigns to
the requested label, at the temperatures T the engine's ``temperature`` option offers, and with
the plain N(0, I) prior for comparison.

    python scripts/demo_models/train_fashion_vae.py --arch cvae28conv --base 96 --beta 0.5 \
        --encoder mlp --steps 6000 --threads 1 --label-prior --prior-margin 5  # committed

Data loading, labels and the judge are those of ``train_fashion_gan.py``. Training stops at
``--minutes`` of wall time or after ``--steps`` steps when given (bit-for-bit reproducible on CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_fashion_gan import (  # noqa: E402
    LABELS,
    artifact_config,
    ensure_dataset,
    judged_accuracy,
    load_split,
    save_artifact,
)

from services.image.networks import (  # noqa: E402
    GENERATORS,
    CVAEDecoder,
    LabelPrior,
    load_classifier,
)

SOURCE = "scripts/demo_models/train_fashion_vae.py on Debian package dataset-fashion-mnist"
TEMPERATURES = (0.5, 0.8, 1.0)


class Encoder(nn.Module):
    """q(z | x, y): an MLP from [pixels, embed(label)] to the mean and log-variance of z."""

    def __init__(self, latent_dim: int, num_labels: int, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_labels, embed_dim)
        self.net = nn.Sequential(
            nn.Linear(28 * 28 + embed_dim, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
        )
        self.mean = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(torch.cat([x.flatten(1), self.embed(labels)], dim=1))
        return self.mean(h), self.logvar(h)


class ConvEncoder(nn.Module):
    """q(z | x, y) for ``cvae28conv``: two strided convolutions over [image, label maps] (28 ->
    14 -> 7), then a hidden layer with the label again, to the mean and log-variance of z."""

    def __init__(
        self, latent_dim: int, num_labels: int, embed_dim: int, base: int, hidden: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_labels, embed_dim)
        self.conv = nn.Sequential(
            nn.Conv2d(1 + embed_dim, base // 2, 4, 2, 1),  # 14x14
            nn.ReLU(True),
            nn.Conv2d(base // 2, base, 4, 2, 1),  # 7x7
            nn.ReLU(True),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(base * 7 * 7 + embed_dim, hidden), nn.ReLU(True))
        self.mean = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        e = self.embed(labels)
        maps = e[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = self.fc(torch.cat([self.conv(torch.cat([x, maps], dim=1)), e], dim=1))
        return self.mean(h), self.logvar(h)


def kl_terms(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per image and latent dimension, in nats."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp())


def negative_elbo(
    encoder: nn.Module, decoder: CVAEDecoder, x: Tensor, y: Tensor, gen: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Per-image reconstruction and KL terms (nats), each averaged over the batch."""
    mean, logvar = encoder(x, y)
    eps = torch.randn(mean.shape, generator=gen)
    z = mean + eps * (0.5 * logvar).exp()
    target = (x + 1) / 2  # pixels in [0, 1] as Bernoulli means
    recon = F.binary_cross_entropy_with_logits(decoder.logits(z, y), target, reduction="sum") / len(
        x
    )
    kl = kl_terms(mean, logvar).sum() / len(x)
    return recon, kl


@torch.no_grad()
def heldout(encoder: nn.Module, decoder: CVAEDecoder, x: Tensor, y: Tensor) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    recon, kl, n = 0.0, 0.0, 0
    for i in range(0, len(x), 1000):
        r, k = negative_elbo(encoder, decoder, x[i : i + 1000], y[i : i + 1000], gen)
        b = len(x[i : i + 1000])
        recon, kl, n = recon + float(r) * b, kl + float(k) * b, n + b
    return {"reconstruction": recon / n, "kl": kl / n, "negative_elbo": (recon + kl) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training wall-time budget")
    parser.add_argument("--steps", type=int, default=0, help="exact step count (overrides time)")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--arch", choices=("cvae28", "cvae28conv"), default="cvae28")
    parser.add_argument("--hidden", type=int, default=512, help="MLP width (encoder head)")
    parser.add_argument("--base", type=int, default=64, help="cvae28conv: channels at 7x7")
    parser.add_argument("--encoder", choices=("mlp", "conv"), default="mlp", help="q(z | x, y)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight (1: the plain ELBO)")
    parser.add_argument(
        "--kl-warmup", type=float, default=0.0, help="share of training with the KL weight 0->beta"
    )
    parser.add_argument(
        "--label-prior",
        action="store_true",
        help="after training, fit a Gaussian per label to the aggregate posterior and sample "
        "from it (services.image.networks.LabelPrior) instead of N(0, I)",
    )
    parser.add_argument(
        "--prior-margin",
        type=float,
        default=5.0,
        help="--label-prior: fit it only to training images whose ELBO under their own label "
        "beats every other label's by this many nats (negative: every image)",
    )
    parser.add_argument(
        "--encoder-out", type=Path, help="also save the trained encoder q(z | x, y) here"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    folder = ensure_dataset()
    x_train, y_train = load_split(folder, "train")
    x_test, y_test = load_split(folder, "t10k")
    print(f"Fashion-MNIST from {folder}: {len(x_train)} train, {len(x_test)} test", flush=True)
    classifier, _ = load_classifier(args.models / "fashion-classifier")

    encoder: nn.Module
    kwargs: dict[str, int | bool]
    if args.arch == "cvae28":
        kwargs = {"embed_dim": 16, "hidden": args.hidden}
    else:
        kwargs = {"embed_dim": 16, "base": args.base}
    if args.label_prior:
        kwargs["label_prior"] = True
    if args.encoder == "mlp":
        encoder = Encoder(args.latent_dim, len(LABELS), 16, args.hidden)
    else:
        encoder = ConvEncoder(args.latent_dim, len(LABELS), 16, args.base, args.hidden)
    decoder = GENERATORS[args.arch](
        latent_dim=args.latent_dim, channels=1, num_labels=len(LABELS), **kwargs
    )
    assert isinstance(decoder, CVAEDecoder)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.lr)
    budget_s = args.minutes * 60.0
    total = args.steps or None
    bar = tqdm(
        total=total or int(budget_s), desc="vae", unit="step" if total else "s", mininterval=5
    )
    step, t0, progress = 0, time.monotonic(), 0.0
    while progress < 1.0:
        # Cosine learning-rate decay over the budget (steps, or elapsed time).
        for group in optimizer.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())
        idx = torch.randint(0, len(x_train), (args.batch,), generator=gen)
        recon, kl = negative_elbo(encoder, decoder, x_train[idx], y_train[idx], gen)
        warm = min(1.0, progress / args.kl_warmup) if args.kl_warmup > 0 else 1.0
        loss = recon + args.beta * warm * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        elapsed = time.monotonic() - t0
        progress = step / args.steps if args.steps else elapsed / budget_s
        bar.update(1 if total else int(elapsed) - bar.n)
        bar.set_postfix(step=step, recon=f"{recon.item():.1f}", kl=f"{kl.item():.1f}")
    bar.close()
    train_s = time.monotonic() - t0
    encoder.eval()
    decoder.eval()

    if args.encoder_out:
        args.encoder_out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": encoder.state_dict(), "args": vars(args)}, args.encoder_out)
    test = heldout(encoder, decoder, x_test, y_test)
    print(
        f"vae: {step} steps in {train_s:.0f} s; held-out -ELBO {test['negative_elbo']:.1f} nats "
        f"(reconstruction {test['reconstruction']:.1f} + KL {test['kl']:.1f})"
    )
    judged: dict[str, dict[str, Any]] = {}
    standard_normal = None
    kept: list[int] = []
    if args.label_prior:
        # What N(0, I) would have given, for the record; then the fitted prior is what serves.
        decoder.prior = None
        standard = judged_accuracy(_Scaled(decoder, 1.0), classifier, args.latent_dim, 200, 1234)
        standard_normal = sum(standard.values()) / len(standard)
        print(f"  N(0, I), temperature 1.0: judged accuracy {standard_normal:.4f}")
        decoder.prior, kept = fit_label_prior(encoder, decoder, x_train, y_train, args.prior_margin)
        print(f"  label prior fitted to {sum(kept)} training images: {kept}")
    for t in TEMPERATURES:
        scaled = _Scaled(decoder, t)
        per_label = judged_accuracy(scaled, classifier, args.latent_dim, 200, seed=1234)
        judged[str(t)] = {"mean": sum(per_label.values()) / len(per_label), "per_label": per_label}
        print(f"  temperature {t}: judged accuracy {judged[str(t)]['mean']:.4f}")
    for name, acc in judged["1.0"]["per_label"].items():
        print(f"  {name:<11} {acc:.3f}")

    config = {**artifact_config(args.arch, args.latent_dim, kwargs), "source": SOURCE}
    out = args.models / "fashion-vae"
    save_artifact(out, decoder, config)
    report = {
        "judged_accuracy": judged["1.0"]["mean"],
        "judged_accuracy_per_label": judged["1.0"]["per_label"],
        "judged_accuracy_by_temperature": {str(t): judged[str(t)]["mean"] for t in TEMPERATURES},
        "sampling": "fitted label prior" if args.label_prior else "N(0, I)",
        "prior_margin_nats": args.prior_margin if args.label_prior else None,
        "prior_images_per_label": dict(zip(LABELS, kept, strict=True))
        if args.label_prior
        else None,
        "judged_accuracy_standard_normal": standard_normal,
        "samples_per_label": 200,
        "sample_seed": 1234,
        "heldout_test_images": len(x_test),
        "heldout_nats_per_image": test,
        "steps": step,
        "batch": args.batch,
        "latent_dim": args.latent_dim,
        "beta": args.beta,
        "kl_warmup": args.kl_warmup,
        "architecture": args.arch,
        "encoder": args.encoder,
        "train_seconds": round(train_s, 1),
        "decoder_parameters": sum(p.numel() for p in decoder.parameters()),
        "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
        "seed": args.seed,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


@torch.no_grad()
def label_scores(encoder: nn.Module, decoder: CVAEDecoder, x: Tensor) -> Tensor:
    """The VAE as a Bayes classifier over labels: the ELBO of each image under each label
    (posterior mean as z), shape (images, labels), in nats."""
    scores = torch.empty(len(x), len(LABELS))
    for label in range(len(LABELS)):
        for i in range(0, len(x), 2000):
            xb = x[i : i + 2000]
            yb = torch.full((len(xb),), label, dtype=torch.long)
            mu, logvar = encoder(xb, yb)
            target = (xb + 1) / 2
            recon = F.binary_cross_entropy_with_logits(
                decoder.logits(mu, yb), target, reduction="none"
            ).flatten(1)
            kl = kl_terms(mu, logvar).sum(1)
            scores[i : i + 2000, label] = -(recon.sum(1) + kl)
    return scores


@torch.no_grad()
def fit_label_prior(
    encoder: nn.Module, decoder: CVAEDecoder, x: Tensor, y: Tensor, margin: float
) -> tuple[LabelPrior, list[int]]:
    """Per label, the Gaussian with the mean and covariance of that label's aggregate posterior
    (the mixture of q(z | x, y) over its training images): cov = Cov(mu) + E[diag(sigma^2)].
    With `margin` >= 0, only images the VAE itself finds typical of their label count: their
    ELBO under it beats every other label's by `margin` nats (`label_scores`; no outside
    classifier). Returns the prior and the images kept per label."""
    latent_dim = decoder.latent_dim
    if margin >= 0:
        scores = label_scores(encoder, decoder, x)
        rows = torch.arange(len(y))
        own = scores[rows, y].clone()
        scores[rows, y] = -torch.inf
        keep = own - scores.max(1).values >= margin
        x, y = x[keep], y[keep]
    prior = LabelPrior(len(LABELS), latent_dim)
    kept = []
    for label in range(len(LABELS)):
        xs = x[y == label]
        ys = y[y == label]
        kept.append(len(xs))
        mus, variances = [], []
        for i in range(0, len(xs), 1000):
            mu, logvar = encoder(xs[i : i + 1000], ys[i : i + 1000])
            mus.append(mu)
            variances.append(logvar.exp())
        mu_all = torch.cat(mus)
        cov = torch.cov(mu_all.T) + torch.diag(torch.cat(variances).mean(0))
        prior.mean[label] = mu_all.mean(0)
        prior.scale_tril[label] = torch.linalg.cholesky(cov + 1e-6 * torch.eye(latent_dim))
    return prior, kept


class _Scaled(nn.Module):
    """The decoder with z scaled by a sampling temperature (what the engine option does)."""

    def __init__(self, decoder: nn.Module, temperature: float) -> None:
        super().__init__()
        self.decoder, self.temperature = decoder, temperature

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        out: Tensor = self.decoder(z * self.temperature, labels)
        return out


if __name__ == "__main__":
    main()
