"""Side-by-side: three ways to batch concurrent text requests on this CPU, same model, same load.

1. ours: `TransformersTextEngine` (iteration-level batching, KV caches merged as requests join);
2. transformers' continuous batching manager (`model.init_continuous_batching`, paged cache);
3. padded static batches: `model.generate` on a left-padded batch (what `@serve.batch` gives).

Each serves R requests of N new tokens, C at a time (closed loop), greedy so every approach
does the same work. Prints output tokens/s for each and writes JSON.

    .venv/bin/python scripts/compare_text_batching.py --weights models/fortune --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

import torch

PROMPTS = ["A computer is", "The meaning of life", "Never trust a", "In the beginning", "Love is"]


def prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] + f" {i}" for i in range(n)]


async def run_ours(weights: str, conc: int, total: int, new: int) -> tuple[int, float]:
    from core.config import ModelConfig
    from core.types import TextRequest
    from services.text.transformers_engine import TransformersTextEngine

    cfg = ModelConfig(
        name="m",
        modality="text",
        engine="transformers",
        weights=weights,
        options={"add_bos_token": True},
        batching={"max_batch_size": conc, "batch_wait_timeout_s": 0.005},
    )
    engine = TransformersTextEngine(cfg)
    await engine.start()
    queue = list(prompts(total))
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while queue:
            p = queue.pop()
            # stop strings and EOS disabled by greedy + max length: count what was produced
            r = await engine.generate(
                TextRequest("r", "m", prompt=p, max_tokens=new, temperature=0, ignore_eos=True)
            )
            tokens += r.completion_tokens

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    elapsed = time.perf_counter() - t0
    await engine.stop()
    return tokens, elapsed


def run_cb_manager(weights: str, conc: int, total: int, new: int) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    tok = AutoTokenizer.from_pretrained(weights)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32).eval()
    manager = model.init_continuous_batching(
        generation_config=GenerationConfig(
            max_new_tokens=new, do_sample=False, eos_token_id=-1, pad_token_id=tok.pad_token_id
        ),
        continuous_batching_config=ContinuousBatchingConfig(
            num_blocks=256, block_size=32, max_batch_tokens=512
        ),
    )
    manager.start()
    ids = [[tok.bos_token_id, *tok(p).input_ids] for p in prompts(total)]
    tokens, next_i, inflight = 0, 0, set()
    t0 = time.perf_counter()
    while next_i < len(ids) or inflight:
        while next_i < len(ids) and len(inflight) < conc:
            inflight.add(manager.add_request(ids[next_i], max_new_tokens=new))
            next_i += 1
        out = manager.get_result(timeout=1)
        if out is not None and out.request_id in inflight:
            inflight.discard(out.request_id)
            tokens += len(out.generated_tokens)
    elapsed = time.perf_counter() - t0
    manager.stop(block=True)
    return tokens, elapsed


def run_static(weights: str, conc: int, total: int, new: int) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(weights)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32).eval()
    ps = [tok.bos_token + p for p in prompts(total)]
    tokens = 0
    t0 = time.perf_counter()
    for start in range(0, total, conc):
        batch = tok(ps[start : start + conc], return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(
                **batch, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                pad_token_id=tok.pad_token_id,
            )  # fmt: skip
        tokens += int((out[:, batch.input_ids.shape[1] :] != tok.pad_token_id).sum())
    return tokens, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="models/fortune")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench-results/text_batching.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    args = (a.weights, a.concurrency, a.requests, a.new_tokens)
    results = {}
    for name, fn in (
        ("ours_iteration_level", lambda: asyncio.run(run_ours(*args))),
        ("transformers_cb_manager", lambda: run_cb_manager(*args)),
        ("static_padded_generate", lambda: run_static(*args)),
    ):
        tokens, elapsed = fn()
        results[name] = {"tokens": tokens, "seconds": round(elapsed, 3),
                         "tokens_per_s": round(tokens / elapsed, 1)}  # fmt: skip
        print(f"{name:26s} {tokens:6d} tokens in {elapsed:6.2f}s = {tokens / elapsed:7.1f} tok/s")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"args": vars(a), "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
