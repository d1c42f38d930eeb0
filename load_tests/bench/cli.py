"""`aigc bench`: load-test a gateway, write raw records, a summary, a table and plots.

aigc bench --target HOST:PORT --concurrency 16 --duration 30 --workload text,max_tokens=64
aigc bench --rate 50 --burstiness 0.5 --num-requests 2000 --workload image:faces,count=4
aigc bench --rate 40 --duration 60 --deadline-s 10 --priority mix   # overload: docs/benchmarking.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aigc.client import DEFAULT_TARGET
from load_tests.bench.records import write_jsonl
from load_tests.bench.report import format_table, plot, show_progress
from load_tests.bench.runner import Progress, RunConfig, Runner
from load_tests.bench.summary import parse_goodput, summarize
from load_tests.bench.workload import PRIORITIES, Workload, load_prompts, parse_item


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aigc bench",
        description="Load-test an aigc gateway; metrics follow vLLM's benchmark_serving.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--target", default=DEFAULT_TARGET, help="gateway HOST:PORT")
    p.add_argument("--api-key", default=None)
    loop = p.add_mutually_exclusive_group(required=True)
    loop.add_argument("--concurrency", type=int, help="closed loop: requests kept in flight")
    loop.add_argument("--rate", type=float, help="open loop: mean requests per second")
    p.add_argument(
        "--burstiness", type=float, default=1.0, help="gamma shape of arrivals; 1 = Poisson"
    )
    p.add_argument("--max-concurrency", type=int, default=None, help="open loop: in-flight cap")
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument("--duration", type=float, help="seconds of sending")
    stop.add_argument("--num-requests", type=int, help="measured requests to send")
    p.add_argument("--warmup", type=int, default=0, help="requests sent first, not counted")
    p.add_argument(
        "--workload",
        action="append",
        default=None,
        metavar="SPEC",
        help="MODALITY[:MODEL][,weight=W,stream=BOOL,max_tokens=N,count=N,prompt_words=N] "
        "(repeatable; default: text)",
    )
    p.add_argument("--prompts", default=None, help="file: one prompt per line, or JSON lines")
    p.add_argument("--goodput", nargs="+", default=[], metavar="KEY:MS", help="ttft|tpot|e2el SLOs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--timeout",
        "--deadline-s",
        dest="timeout",
        type=float,
        default=60.0,
        help="per-request deadline (s), sent as the gRPC deadline; goodput counts completions "
        "within it, admitted_expired the DEADLINE_EXCEEDED ones",
    )
    p.add_argument(
        "--priority",
        choices=PRIORITIES,
        default="interactive",
        help="tier sent in each request (aigc.v1.Priority); mix: 50/50 at random, reported "
        "per tier",
    )
    p.add_argument("--channels", type=int, default=1, help="gRPC channels to spread calls over")
    p.add_argument(
        "--protocol",
        choices=["grpc", "http"],
        default="grpc",
        help="front end: grpc (aigc.v1 at --target) or http (the OpenAI API; --target is the "
        "gateway's HTTP HOST:PORT)",
    )
    p.add_argument("--output-dir", default=None, help="default: bench-results/run-TIMESTAMP")
    p.add_argument("--label", default="", help="free text stored in the summary")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress line and no table")
    return p


def commit() -> str:
    """The checkout's short commit ("" outside a git checkout); every result names it."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


async def _run(runner: Runner, progress: Progress, quiet: bool) -> None:
    display = None if quiet else asyncio.create_task(show_progress(progress))
    try:
        await runner.run()
    finally:
        if display is not None:
            display.cancel()
            sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        slos = parse_goodput(args.goodput)
        items = [parse_item(s) for s in (args.workload or ["text"])]
        prompts = load_prompts(args.prompts) if args.prompts else None
        config = RunConfig(
            target=args.target,
            concurrency=args.concurrency,
            rate=args.rate,
            burstiness=args.burstiness,
            max_concurrency=args.max_concurrency,
            duration=args.duration,
            num_requests=args.num_requests,
            warmup=args.warmup,
            timeout=args.timeout,
            api_key=args.api_key,
            channels=args.channels,
            seed=args.seed,
            protocol=args.protocol,
        )
    except (ValueError, OSError) as exc:
        print(f"aigc bench: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.output_dir or f"bench-results/run-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    workload = Workload(items, seed=args.seed, prompts=prompts, priority=args.priority)
    runner = Runner(config, workload, progress)
    try:
        asyncio.run(_run(runner, progress, args.quiet))
    except KeyboardInterrupt:
        print("aigc bench: interrupted; writing what was measured", file=sys.stderr)
    records = sorted(runner.records, key=lambda r: (r.warmup is False, r.send))
    meta: dict[str, Any] = {
        "label": args.label,
        "target": args.target,
        "mode": "closed" if args.concurrency is not None else "open",
        "concurrency": args.concurrency,
        "request_rate": args.rate,
        "burstiness": args.burstiness,
        "max_concurrency": args.max_concurrency,
        "workload": [s for s in (args.workload or ["text"])],
        "seed": args.seed,
        "priority": args.priority,
        "deadline_s": args.timeout,
        "warmup_requests": sum(r.warmup for r in records),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(runner.wall_start)),
        "commit": commit(),
    }
    # Measured phase starts at the runner's t0, so duration = last end (vLLM's definition).
    measured = [r for r in records if not r.warmup]
    duration = max((r.end for r in measured), default=0.0)
    summary = summarize(records, duration=duration, slos=slos, meta=meta, window=args.duration)
    write_jsonl(out_dir / "records.jsonl", records)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.no_plots:
        plot(records, out_dir)
    if not args.quiet:
        print(format_table(summary))
        print(f"results in {out_dir}/ (summary.json, records.jsonl, plots)")
    return 0 if summary["completed"] > 0 else 1
