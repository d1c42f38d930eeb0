"""How much a greedy answer of the llamacpp engine depends on its batch company.

The 48 questions of ``questions.json`` through configs/local.yaml's smollm2 engine in-process,
greedy, 48 new tokens: one at a time and 8 at a time, each with the prefix cache off and on.
Prints each variant's score and how many answers are identical between variants. llama.cpp's
batched matmul kernels round differently from its one-row ones, so answers move with what runs
beside them; this is the noise floor against which ``make eval``'s comparisons are read.

    python scripts/demo_models/batch_spread.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_smollm2 import QUESTIONS, score  # noqa: E402

from core.config import load_config  # noqa: E402
from core.types import TextRequest  # noqa: E402
from services.text.llamacpp_engine import LlamaCppTextEngine  # noqa: E402


async def answers(questions: list[str], concurrency: int, prefix_cache: bool) -> list[str]:
    model = load_config(REPO / "configs" / "local.yaml").by_name()["smollm2"]
    options = {**model.options, "prefix_cache": prefix_cache}
    engine = LlamaCppTextEngine(model.model_copy(update={"options": options}))
    await engine.start()
    gate = asyncio.Semaphore(concurrency)

    async def ask(q: str) -> str:
        async with gate:
            request = TextRequest("q", "smollm2", prompt=q, max_tokens=48, temperature=0)
            return (await engine.generate(request)).completions[0].text

    try:
        return list(await asyncio.gather(*(ask(q) for q in questions)))
    finally:
        await engine.stop()


def main() -> None:
    spec = json.loads(QUESTIONS.read_text())["questions"]
    questions = [q["question"] for q in spec]
    runs = {
        f"{c} at a time, prefix cache {'on' if p else 'off'}": asyncio.run(answers(questions, c, p))
        for c in (1, 8)
        for p in (False, True)
    }
    for name, got in runs.items():
        print(f"{name}: {score(spec, got)['correct']}/{len(spec)}")
    names = list(runs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = sum(x == y for x, y in zip(runs[a], runs[b], strict=True))
            print(f"identical answers, {a} vs {b}: {same}/{len(spec)}")


if __name__ == "__main__":
    main()
