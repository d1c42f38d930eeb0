"""Evaluate the demo models from their saved artifacts and write ``models/eval-report.json``.

- fortune: held-out perplexity (recomputed from ``heldout.txt``) vs the add-one unigram baseline
  recorded at training time on the same tokens, plus two samples;
- fashion (GAN) and fashion-vae (conditional VAE): per-label share of generated samples that the
  independent classifier assigns to the requested label (``--grid PATH``: a PNG of both);
- faces (when fetched): per-channel mean/std of the reference batch vs ``faces-reference.json``.

    python scripts/demo_models/eval_demo_models.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services.image.networks import load_classifier, load_generator  # noqa: E402


def read_heldout(path: Path) -> list[str]:
    return path.read_text().removesuffix("\n").split("\n%\n")


@torch.no_grad()
def eval_fortune(path: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "right"  # scoring: positions start at 0 in every row
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    trained = json.loads((path / "eval.json").read_text())
    texts = read_heldout(path / "heldout.txt")
    nll, count = 0.0, 0
    texts.sort(key=len)  # batches of similar lengths: little padding
    for start in range(0, len(texts), 32):
        batch = [f"{t}{tokenizer.eos_token}" for t in texts[start : start + 32]]
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        logits = model(**enc).logits.float()
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        nll += float(
            torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="sum"
            )
        )
        count += int((labels[:, 1:] != -100).sum())
    tokenizer.padding_side = "left"  # generation
    torch.manual_seed(0)
    prompts = tokenizer(["A computer is", "Love is"], return_tensors="pt", padding=True)
    samples = tokenizer.batch_decode(
        model.generate(**prompts, max_new_tokens=32), skip_special_tokens=True
    )
    ppl = math.exp(nll / count)
    return {
        "heldout_quotes": len(texts),
        "heldout_tokens": count,
        "perplexity": ppl,
        "unigram_perplexity": trained["unigram_perplexity"],
        "ratio": ppl / trained["unigram_perplexity"],
        "samples": samples,
    }


@torch.no_grad()
def eval_fashion(models: Path, per_label: int, seed: int, name: str = "fashion") -> dict[str, Any]:
    """Share of `per_label` samples per label that the judge assigns to the requested label
    (z ~ N(0, I): the GAN's prior, and the VAE's at its default temperature 1)."""
    generator, config = load_generator(models / name)
    classifier, _ = load_classifier(models / "fashion-classifier")
    gen = torch.Generator().manual_seed(seed)
    accuracy = {}
    for label, name in enumerate(config["labels"]):
        z = torch.randn(per_label, config["latent_dim"], generator=gen)
        images = generator(z, torch.full((per_label,), label, dtype=torch.long))
        accuracy[name] = float((classifier(images).argmax(1) == label).float().mean())
    return {
        "samples_per_label": per_label,
        "seed": seed,
        "per_label": accuracy,
        "mean": sum(accuracy.values()) / len(accuracy),
    }


@torch.no_grad()
def fashion_grid(models: Path, out: Path, columns: int = 8, seed: int = 0, scale: int = 2) -> None:
    """One PNG: `fashion` (GAN) left, `fashion-vae` right; a row per label, a column per seed
    (the serving engines' latents: z = randn(latent_dim) from torch.Generator().manual_seed)."""
    import numpy as np

    from services.image.encode import encode_png

    panels = []
    for name in ("fashion", "fashion-vae"):
        generator, config = load_generator(models / name)
        rows = []
        for label in range(len(config["labels"])):
            z = torch.stack(
                [
                    torch.randn(
                        config["latent_dim"], generator=torch.Generator().manual_seed(seed + i)
                    )
                    for i in range(columns)
                ]
            )
            images = generator(z, torch.full((columns,), label, dtype=torch.long))
            pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
            rows.append(torch.cat(list(pixels), dim=1))
        panels.append(torch.cat(rows, dim=0).numpy())
    gap = np.full((panels[0].shape[0], 14), 255, dtype=np.uint8)
    grid = np.concatenate([panels[0], gap, panels[1]], axis=1)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    out.write_bytes(encode_png(grid[:, :, None], 9))
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")


@torch.no_grad()
def eval_faces(models: Path) -> dict[str, Any]:
    if not (models / "faces" / "model.safetensors").exists():
        return {"skipped": "models/faces/ missing: run scripts/demo_models/fetch_faces.py"}
    reference = json.loads((models / "faces-reference.json").read_text())
    generator, config = load_generator(models / "faces")
    gen = torch.Generator().manual_seed(reference["seed"])
    z = torch.randn(reference["samples"], config["latent_dim"], generator=gen)
    images = generator(z, None)
    mean = images.mean(dim=(0, 2, 3)).tolist()
    std = images.std(dim=(0, 2, 3)).tolist()
    expected = reference["mean"] + reference["std"]
    diffs = [abs(a - b) for a, b in zip(mean + std, expected, strict=True)]
    return {
        "shape": list(images.shape),
        "mean": mean,
        "std": std,
        "reference_mean": reference["mean"],
        "reference_std": reference["std"],
        "max_abs_diff": max(diffs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--per-label", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--grid", type=Path, help="also write the GAN vs VAE sample grid here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.grid:
        fashion_grid(args.models, args.grid)

    t0 = time.monotonic()
    report: dict[str, Any] = {
        "fortune": eval_fortune(args.models / "fortune"),
        "fashion": eval_fashion(args.models, args.per_label, args.seed),
        "fashion-vae": eval_fashion(args.models, args.per_label, args.seed, "fashion-vae"),
        "faces": eval_faces(args.models),
    }
    report["seconds"] = round(time.monotonic() - t0, 1)

    text = report["fortune"]
    print("fortune (held-out quotes)")
    print(f"  tokens              {text['heldout_tokens']}")
    print(f"  perplexity          {text['perplexity']:.1f}")
    print(f"  unigram perplexity  {text['unigram_perplexity']:.1f}")
    print(f"  ratio               {text['ratio']:.3f}")
    for sample in text["samples"]:
        print("  sample:", sample.replace("\n", " / "))
    gan, vae = report["fashion"], report["fashion-vae"]
    print(
        f"fashion (GAN) and fashion-vae (VAE, temperature 1), judged by "
        f"models/fashion-classifier, {gan['samples_per_label']}/label, seed {gan['seed']}"
    )
    for name, acc in gan["per_label"].items():
        print(f"  {name:<11} {acc:.3f}  {vae['per_label'][name]:.3f}")
    print(f"  {'mean':<11} {gan['mean']:.3f}  {vae['mean']:.3f}")
    faces = report["faces"]
    print("faces")
    if "skipped" in faces:
        print(f"  skipped: {faces['skipped']}")
    else:
        for i, channel in enumerate("RGB"):
            print(
                f"  {channel} mean {faces['mean'][i]:+.4f} (ref {faces['reference_mean'][i]:+.4f})"
                f"  std {faces['std'][i]:.4f} (ref {faces['reference_std'][i]:.4f})"
            )
        print(f"  max |diff| {faces['max_abs_diff']:.2e}")
    out = args.models / "eval-report.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
