"""Do llama.cpp and transformers compute the same model? SmolLM2's F16 GGUF (models/smollm2-f16,
what `make up` serves on the llamacpp engine) and the transformers folder (models/smollm2,
`make assets-transformers`: the same Q4_1 tensors dequantized, stored as bfloat16, computed
here in float32), teacher-forced on one fixed English text of about 300 tokens: at every
position, the top-1 next token of each. Goal: they agree at >= 95 % of positions.

The text is tokenized once, with the GGUF's tokenizer, and the same ids go to both (so a
tokenizer difference cannot count as disagreement). llama.cpp computes the logits of every
position in one decode (`Llama(logits_all=True)`, one thread); transformers in one forward
pass (float32, one thread). Also printed: where they disagree, how close the two best
candidates were (a near tie flips on rounding), and the largest absolute logit difference.
Prints MISSED with the figure when the goal is missed (exit status 0); a missing model folder
or a load failure exits non-zero.

    python scripts/demo_models/agreement.py
    python scripts/demo_models/agreement.py --gguf models/smollm2-gguf   # the Q4_1 file as shipped
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

GOAL = 0.95
# Fixed, plain English prose (written for this check): ~300 SmolLM2 tokens.
TEXT = (
    "The river that runs through the old market town is wide and slow in summer. In the early "
    "morning, before the shops open, fishermen stand on the stone bridge and watch the water "
    "for the silver flash of a trout. The baker is always the first to arrive. He unlocks the "
    "heavy wooden door, lights the ovens and begins to shape the bread that the town will eat "
    "for breakfast. By seven o'clock the smell of warm loaves has drifted down every street, "
    "and a short queue has formed outside his window.\n\n"
    "Across the square, the library keeps its own slower rhythm. The librarian, a tall woman "
    "who has worked there for thirty years, arrives at nine. She waters the plants on the "
    "windowsill, sorts the returned books into neat piles and checks the list of requests "
    "that came in the day before. Children visit after school to borrow adventure stories, "
    "while older readers prefer history, gardening and travel. On Thursday evenings a small "
    "group meets in the reading room to talk about a novel they have all agreed to finish.\n\n"
    "In the afternoon the market fills with voices. Farmers sell apples, cheese and honey from "
    "long tables, and a man with a cart offers to sharpen knives while you wait. When the sun "
    "begins to set, the stalls are packed away, the lamps along the river are lit, and the "
    "town grows quiet again, waiting for the baker to open his door the next morning."
)


def llamacpp_logits(gguf: Path, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of `ids` (one decode), float32 [n, vocab]."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf), n_ctx=max(512, len(ids) + 8), n_batch=max(512, len(ids)),
        n_ubatch=max(512, len(ids)), n_threads=1, n_threads_batch=1, logits_all=True,
        verbose=False,
    )  # fmt: skip
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def transformers_logits(folder: Path, ids: list[int]) -> np.ndarray:
    """transformers' logits at every position of `ids` (float32, one forward), [n, vocab]."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.inference_mode():
        out = model(torch.tensor([ids], dtype=torch.long))
    logits: np.ndarray = out.logits[0].float().numpy()
    return logits


def tokenize(gguf: Path, text: str) -> list[int]:
    from llama_cpp import Llama

    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        add_bos = bool(vocab.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true")
        return list(vocab.tokenize(text.encode(), add_bos=add_bos, special=False))
    finally:
        vocab.close()


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement of two [n, vocab] logit arrays, and what the disagreements look like."""
    if a.shape != b.shape:
        raise SystemExit(f"logits differ in shape: llama.cpp {a.shape}, transformers {b.shape}")
    top_a, top_b = a.argmax(-1), b.argmax(-1)
    agree = top_a == top_b
    # For each disagreement: the gap, in transformers' logits, between its best token and
    # llama.cpp's choice (small: a near tie that rounding can flip).
    rows = np.nonzero(~agree)[0]
    gaps = [float(b[i, top_b[i]] - b[i, top_a[i]]) for i in rows]
    return {
        "positions": int(a.shape[0]),
        "agree": int(agree.sum()),
        "rate": float(agree.mean()),
        "disagree_positions": [int(i) for i in rows],
        "disagree_gap_max": max(gaps, default=0.0),
        "max_abs_logit_diff": float(np.abs(a - b).max()),
        "mean_abs_logit_diff": float(np.abs(a - b).mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--gguf", type=Path, default=REPO / "models" / "smollm2-f16",
        help="a .gguf file or its folder (default: the F16 file served)",
    )  # fmt: skip
    parser.add_argument("--transformers", type=Path, default=REPO / "models" / "smollm2")
    args = parser.parse_args()
    from services.text.llamacpp_model import gguf_file

    if not args.gguf.exists():
        raise SystemExit(f"{args.gguf} missing: run `make assets`")
    if not (args.transformers / "config.json").exists():
        raise SystemExit(f"{args.transformers} missing: run `make assets-transformers`")
    gguf = gguf_file(str(args.gguf))
    ids = tokenize(gguf, TEXT)
    a = llamacpp_logits(gguf, ids)
    b = transformers_logits(args.transformers, ids)
    if a.shape[1] != b.shape[1]:
        raise SystemExit(f"vocabularies differ: GGUF {a.shape[1]}, transformers {b.shape[1]}")
    r = compare(a, b)
    print(f"{gguf.name} (llama.cpp) vs {args.transformers.name} (transformers, float32), "
          f"teacher-forced on {r['positions']} tokens of fixed text")  # fmt: skip
    print(f"top-1 agreement: {r['agree']}/{r['positions']} = {r['rate']:.1%} "
          f"(goal >= {GOAL:.0%})")  # fmt: skip
    print(f"logits |llama.cpp - transformers|: max {r['max_abs_logit_diff']:.3f}, "
          f"mean {r['mean_abs_logit_diff']:.4f}; disagreements at positions "
          f"{r['disagree_positions']} (largest gap between the two choices in transformers' "
          f"logits: {r['disagree_gap_max']:.3f})")  # fmt: skip
    if r["rate"] >= GOAL:
        print(f"MET: {r['rate']:.1%} >= {GOAL:.0%}")
    else:
        print(f"MISSED: top-1 agreement {r['rate']:.1%} < {GOAL:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
