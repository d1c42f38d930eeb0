"""`python -m load_tests.benchmarks overhead|frontends|batching|scaling|all`: BENCHMARKS.md numbers.

frontends: one gateway over the echo engines, gRPC vs the OpenAI HTTP API, c=1 and c=64.
overhead: the echo engines behind (a) a plain grpc.aio server, (b) the gateway -> Serve
  DeploymentHandles, with and without RAY_SERVE_THROUGHPUT_OPTIMIZED, (c) Ray Serve's built-in
  gRPC proxy; unary text calls at concurrency 1, 8, 64, one load generator for all.
batching: for each demo model, served throughput at concurrency 1..64 with batching on, with
  max_batch_size 1, and the same engine called in-process at the same batch size (the limit).
scaling: throughput at 1, 2, 3 fixed replicas and an autoscaled step (load_tests/scaling.py).
Results: bench-results/{overhead,batching}.json and .md (tables for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from load_tests import procs
from load_tests.baselines import BENCH_CONFIG
from load_tests.machine import facts, heading, wait_quiet
from load_tests.scaling import scaling, scaling_table
from load_tests.tables import batching_table, overhead_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
LOCAL_CONFIG = ROOT / "configs" / "local.yaml"
OPT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}  # what aigc-serve ships (control/stack.py, pods)
OFF = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}  # Ray Serve's own default, for comparison
OVERHEAD_SERVERS: list[tuple[str, str, dict[str, str]]] = [
    ("plain grpc.aio echo", "plain", {}),
    ("gateway -> DeploymentHandle", "gateway", OFF),
    ("gateway -> DeploymentHandle, RAY_SERVE_THROUGHPUT_OPTIMIZED=1", "gateway", OPT),
    ("Serve gRPC proxy", "serve-proxy", OFF),
    ("Serve gRPC proxy, RAY_SERVE_THROUGHPUT_OPTIMIZED=1", "serve-proxy", OPT),
]
GOAL_CONCURRENCY = {"text": 16, "image": 64, "audio": 64}
OVERHEAD_WORKLOAD = "text,stream=false,prompt_words=1"


async def overhead(seconds: float, concurrencies: list[int]) -> dict[str, Any]:
    rows = []
    for name, kind, env in OVERHEAD_SERVERS:
        print(f"[overhead] starting {name}", flush=True)
        server = await procs.start_server(kind, str(BENCH_CONFIG), env)
        try:
            for c in concurrencies:
                out = RESULTS / "overhead" / f"{kind}-{'opt' if env else 'default'}-c{c}"
                args = procs.closed_loop(c, seconds, max(50, 4 * c), OVERHEAD_WORKLOAD)
                s = await procs.bench(server.target, out, args)
                rows.append({"path": name, "kind": kind, "env": env, "concurrency": c, **_keep(s)})
                print(f"[overhead] {name} c={c}: p50 {s['p50_e2el_ms']:.2f} ms, "
                      f"{s['steady_request_throughput']:.0f} req/s", flush=True)  # fmt: skip
        finally:
            await procs.stop_server(server)
    return {"rows": rows}


async def frontends(seconds: float, concurrencies: list[int]) -> dict[str, Any]:
    """One gateway over the echo engines, driven through gRPC (aigc.v1) and through the
    OpenAI HTTP API in turn, same workload and concurrency: what the HTTP front end costs."""
    rows = []
    server = await procs.start_server("gateway", str(BENCH_CONFIG), OPT)
    try:
        for c in concurrencies:
            for protocol, port in (("grpc", server.port), ("http", server.http_port)):
                out = RESULTS / "frontends" / f"{protocol}-c{c}"
                args = procs.closed_loop(c, seconds, max(50, 4 * c), OVERHEAD_WORKLOAD)
                args += ["--protocol", protocol]
                s = await procs.bench(f"127.0.0.1:{port}", out, args)
                rows.append({"path": protocol, "concurrency": c, **_keep(s)})
                print(f"[frontends] {protocol} c={c}: p50 {s['p50_e2el_ms']:.2f} ms, "
                      f"{s['steady_request_throughput']:.0f} req/s", flush=True)  # fmt: skip
    finally:
        await procs.stop_server(server)
    return {"rows": rows}


def frontends_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| front end | concurrency | p50 ms | p99 ms | req/s | HTTP / gRPC req/s |",
        "|---|---|---|---|---|---|",
    ]
    grpc_rate = {
        r["concurrency"]: r["steady_request_throughput"] for r in rows if r["path"] == "grpc"
    }
    for r in rows:
        rate = r["steady_request_throughput"]
        base = grpc_rate.get(r["concurrency"])
        ratio = f"{rate / base:.2f}" if r["path"] == "http" and base else ""
        lines.append(
            f"| {r['path']} | {r['concurrency']} | {r['p50_e2el_ms']:.2f} | {r['p99_e2el_ms']:.2f} "
            f"| {rate:.0f} | {ratio} |"
        )
    return "\n".join(lines)


def _keep(s: dict[str, Any]) -> dict[str, Any]:
    keys = ["completed", "failed", "errors_by_code", "duration", "request_throughput"]
    keys += ["output_throughput", "images_per_second", "audio_seconds_per_second"]
    keys += ["p50_e2el_ms", "p99_e2el_ms", "mean_e2el_ms", "p50_ttft_ms", "p99_ttft_ms"]
    keys += ["median_tpot_ms", "p99_tpot_ms", "p50_itl_ms", "p99_itl_ms", "window_s"]
    keys += ["steady_request_throughput", "steady_output_throughput"]
    keys += ["steady_images_per_second", "steady_audio_seconds_per_second"]
    return {k: s.get(k) for k in keys}


# ---- batching ----------------------------------------------------------------------------
def batching_config(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The demo models of configs/local.yaml (those whose weights exist), each also as a
    `-b1` copy with max_batch_size 1; free ports. Returns the config path and the plan."""
    from core.config import load_config

    base = load_config(LOCAL_CONFIG)
    models, plan = [], []
    for m in base.models:
        if m.weights and not Path(m.weights).exists():
            print(f"[batching] skipping {m.name}: {m.weights} is missing", flush=True)
            continue
        data = m.model_dump(mode="json")
        models.append(data)
        b1 = json.loads(json.dumps(data))
        b1["name"], b1["default"] = f"{m.name}-b1", False
        b1["batching"]["max_batch_size"] = 1
        # Same gateway in-flight bound as the batched model (it scales with the batch size):
        # else most unbatched requests are refused, not served one at a time.
        inflight_batches = m.admission.inflight_batches * m.batching.max_batch_size
        b1["admission"]["inflight_batches"] = inflight_batches
        if m.modality.value == "image":
            b1["limits"]["max_images"] = 1
        models.append(b1)
        plan.append({"model": m.name, "modality": m.modality.value,
                     "max_batch_size": m.batching.max_batch_size})  # fmt: skip
    config = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0},
        "ray": {"num_cpus": 2 * len(models), "metrics_export_port": 0, "namespace": "aigc-bench"},
        "models": models,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, plan


def batching_points(modality: str, max_batch: int) -> list[dict[str, Any]]:
    """(concurrency, images per request, batched?) points, and the in-process batch size each
    compares with: the batch the served path forms at that concurrency."""
    points = []
    concurrencies = [1, 4, 16] if modality == "text" else [1, 4, 16, 64]
    for c in concurrencies:
        points.append({"concurrency": c, "count": 1, "batched": True, "batch": min(c, max_batch)})
    if modality == "image":  # items cheaper than a trip through the stack: several per request
        for c in (1, 8, 64):
            batch = max(1, min(c, max_batch // 8))
            points.append({"concurrency": c, "count": 8, "batched": True, "batch": batch})
    for c in [1, 16] if modality == "text" else [1, 16, 64]:
        points.append({"concurrency": c, "count": 1, "batched": False, "batch": 1})
    return points


def _workload(entry: dict[str, Any], model: str, p: dict[str, Any], max_tokens: int) -> str:
    if entry["modality"] == "text":
        return f"text:{model},stream=true,max_tokens={max_tokens}"
    if entry["modality"] == "image":
        return f"image:{model},count={p['count']}"
    return f"audio:{model},stream=false"  # unary: the batched path


async def batching(seconds: float, max_tokens: int, unbatched_only: bool) -> dict[str, Any]:
    config, plan = batching_config(RESULTS / "batching-config.yaml")
    limits: dict[tuple[str, int, int], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    if unbatched_only:  # re-measure the max_batch_size 1 rows of the last run's JSON
        last = json.loads((RESULTS / "batching.json").read_text())
        rows = [r for r in last["rows"] if r["batched"]]
        await _served_pass(config, plan, limits, OPT, rows, "unbatched", max_tokens, seconds)
        return {"rows": rows, "unbatched_rows_rerun": True}
    # The in-process limits first, alone on the machine.
    for entry in plan:
        for p in batching_points(entry["modality"], entry["max_batch_size"]):
            key = (entry["model"], p["batch"], p["count"])
            if p["batched"] and key not in limits:
                limits[key] = await procs.inprocess(
                    str(config), entry["model"], p["batch"], p["count"], seconds, max_tokens
                )
                print(f"[batching] in-process {key}: {_rate(limits[key])}", flush=True)
    rows = []
    for env in (OPT, OFF):
        # Every point with the settings we ship; then the goal points with Ray Serve's default
        # settings, to show how much of the gap is the per-request trip through Ray.
        which = "all" if env is OPT else "goal"
        await _served_pass(config, plan, limits, env, rows, which, max_tokens, seconds)
    return {"rows": rows}


async def _served_pass(
    config: Path,
    plan: list[dict[str, Any]],
    limits: dict[tuple[str, int, int], dict[str, Any]],
    env: dict[str, str],
    rows: list[dict[str, Any]],
    which: str,  # all | goal (batched points at the goal concurrency) | unbatched
    max_tokens: int,
    seconds: float,
) -> None:
    tag = "throughput-optimized" if env.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1" else "default"
    print(f"[batching] starting the stack ({tag})", flush=True)
    server = await procs.start_server("gateway", str(config), env)
    try:
        for entry in plan:
            for p in batching_points(entry["modality"], entry["max_batch_size"]):
                at_goal = p["batched"] and p["concurrency"] == GOAL_CONCURRENCY[entry["modality"]]
                if (which == "goal" and not at_goal) or (which == "unbatched" and p["batched"]):
                    continue
                model = entry["model"] if p["batched"] else f"{entry['model']}-b1"
                c = p["concurrency"]
                out = RESULTS / "batching" / f"{tag}-{model}-n{p['count']}-c{c}"
                args = ["--concurrency", str(c), "--duration", str(seconds)]
                args += ["--warmup", str(max(8, 2 * c))]
                args += ["--workload", _workload(entry, model, p, max_tokens)]
                s = await procs.bench(server.target, out, args)
                limit = (
                    limits.get((entry["model"], p["batch"], p["count"])) if p["batched"] else None
                )
                rows.append({**entry, **p, "served_model": model, "serve_env": tag,
                             "served": _keep(s), "limit": limit})  # fmt: skip
                print(f"[batching] {tag} {model} c={c} n={p['count']}: {_rate(s)}"
                      f" (limit {_rate(limit) if limit else '-'})", flush=True)  # fmt: skip
    finally:
        await procs.stop_server(server)


def _rate(s: dict[str, Any]) -> str:
    pre = "steady_" if "steady_request_throughput" in s else ""
    if s.get(pre + "images_per_second"):
        return f"{s[pre + 'images_per_second']:.1f} img/s"
    if s.get(pre + "output_throughput"):
        return f"{s[pre + 'output_throughput']:.1f} tok/s"
    return f"{s[pre + 'request_throughput']:.1f} req/s"


def _markdown(meta: dict[str, Any], table: str) -> str:
    return f"{heading(meta)}\n\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.benchmarks")
    p.add_argument(
        "which", choices=["overhead", "batching", "frontends", "scaling", "all", "render"]
    )
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64], help="overhead")
    p.add_argument("--max-tokens", type=int, default=32, help="text requests")
    p.add_argument(
        "--unbatched-only", action="store_true", help="batching: redo the max_batch_size 1 rows"
    )
    p.add_argument("--wait-quiet", action="store_true", help="wait for load < 0.5, no raylet")
    args = p.parse_args(argv)
    if args.wait_quiet:
        wait_quiet()
    RESULTS.mkdir(exist_ok=True)
    if args.which == "render":  # the tables again, from the JSON of the last runs
        tables = (
            ("overhead", overhead_table), ("batching", batching_table),
            ("frontends", frontends_table),
        )  # fmt: skip
        for which, table_of in tables:
            path = RESULTS / f"{which}.json"
            if path.exists():
                result = json.loads(path.read_text())
                print(_markdown(result, table_of(result["rows"])))
        if (RESULTS / "scaling.json").exists():
            result = json.loads((RESULTS / "scaling.json").read_text())
            print(_markdown(result, scaling_table(result)))
        return 0
    command = "python -m load_tests.benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    for which in ("overhead", "frontends", "batching", "scaling"):
        if args.which not in (which, "all"):
            continue
        meta = {"command": command, **facts()}
        if which == "overhead":
            result = asyncio.run(overhead(args.seconds, args.concurrency))
            table = overhead_table(result["rows"])
        elif which == "frontends":
            result = asyncio.run(frontends(args.seconds, [1, 64]))
            table = frontends_table(result["rows"])
        elif which == "scaling":
            result = asyncio.run(scaling(args.seconds, RESULTS))
            table = scaling_table(result)
        else:
            result = asyncio.run(batching(args.seconds, args.max_tokens, args.unbatched_only))
            table = batching_table(result["rows"])
        result = {**meta, **result}
        (RESULTS / f"{which}.json").write_text(json.dumps(result, indent=2) + "\n")
        md = _markdown(result, table)
        (RESULTS / f"{which}.md").write_text(md)
        print(md, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
