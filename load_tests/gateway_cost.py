"""The gateway's own cost, on the model-free echo engines (issue 34; BENCHMARKS.md section 12).

`python -m load_tests.gateway_cost levers [--seconds S] [--concurrency 1 64] [--before REV]`
  One run: plain grpc.aio echo, then the gateway as shipped, then the gateway with each lever
  changed one at a time (Serve's access log, its gRPC transport, its throughput-optimized
  settings), then the gateway as of REV (a git worktree of it, the code levers there
  undone). Unary text calls, the same load generator (`aigc bench`, its own process) for all.
`python -m load_tests.gateway_cost stream [--streams 64] [--tokens 64] [--delay-s 0.02]`
  64 concurrent streams from a paced echo engine (a token every delay_s, as a model would):
  tokens per second and inter-token latency through the gateway against the same engine
  called in-process (its own process, the same concurrency), both alone on the machine.
`python -m load_tests.gateway_cost idle [--seconds S]`
  The stack at rest: the CPU each of its processes takes with no request in flight.
`python -m load_tests.gateway_cost profile [--concurrency 1 64]`
  py-spy on the gateway and on the text replica under a closed loop; the samples sorted into
  the request's stages (front end, data plane, admission, Serve's router, serialization,
  transport, the replica's Serve wrapper and our engine, the event loop and native code).

Results: bench-results/gateway_cost/{levers,stream,profile}.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from load_tests import procs
from load_tests.baselines import BENCH_CONFIG
from load_tests.machine import CpuTimes, cpu_seconds, cpu_spent, facts, heading, wait_quiet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results" / "gateway_cost"
SHIPPED = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
UNARY = "text,stream=false,prompt_words=1"


# ---- configs ------------------------------------------------------------------------------
def bench_config(directory: Path, name: str, **model_updates: Any) -> Path:
    """configs/bench.yaml with `model_updates` set on every model (e.g. access_log=True)."""
    data = yaml.safe_load(BENCH_CONFIG.read_text())
    for m in data["models"]:
        m.update(model_updates)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def paced_config(directory: Path, delay_s: float, tokens: int) -> Path:
    """One paced echo text model: a word every delay_s, up to `tokens` words per stream."""
    data = yaml.safe_load(BENCH_CONFIG.read_text())
    text = next(m for m in data["models"] if m["modality"] == "text")
    text["options"] = {**text.get("options", {}), "delay_s": delay_s, "default_max_tokens": tokens}
    text["limits"] = {**text.get("limits", {}), "max_tokens": max(tokens, 512)}
    text["scaling"]["max_ongoing_requests"] = 1024
    # the echo engine runs every stream at once: let the gateway's in-flight bound say so
    text["batching"] = {**text.get("batching", {}), "max_batch_size": 256}
    data["models"] = [text]
    path = directory / "paced.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def worktree(rev: str) -> Path:
    """A detached git worktree of `rev` (the code as it was), made once and kept."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"aigc-before-{sha}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True)
    return path


# ---- levers -------------------------------------------------------------------------------
def lever_variants(tmp: Path, before: str | None) -> list[dict[str, Any]]:
    """(label, server kind, env, config, tree): the shipped gateway, then one lever off each."""
    shipped = str(bench_config(tmp, "shipped"))
    rows: list[dict[str, Any]] = [
        {"label": "plain grpc.aio echo", "kind": "plain", "env": {}, "config": shipped},
        {
            "label": "two grpc.aio hops, no Ray (our direct port, no data plane)",
            "kind": "relay",
            "env": {},
            "config": shipped,
        },
        {"label": "gateway as shipped", "kind": "gateway", "env": SHIPPED, "config": shipped},
        {
            "label": "+ Serve's access log",
            "kind": "gateway",
            "env": SHIPPED,
            "config": str(bench_config(tmp, "access-log", access_log=True)),
        },
        {
            "label": "- direct calls (Serve's handle and router, transport: serve)",
            "kind": "gateway",
            "env": SHIPPED,
            "config": str(bench_config(tmp, "serve-transport", transport="serve")),
        },
        {
            "label": "- gRPC transport (Ray actor calls to the replica)",
            "kind": "gateway",
            "env": {**SHIPPED, "RAY_SERVE_USE_GRPC_BY_DEFAULT": "0"},
            "config": shipped,
        },
        {
            "label": "- throughput-optimized Serve (Serve's defaults)",
            "kind": "gateway",
            "env": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
            "config": shipped,
        },
    ]
    if before:
        tree = worktree(before)
        rows.append(
            {
                "label": f"gateway as of {before}",
                "kind": "gateway",
                "env": SHIPPED,
                "config": str(tree / "configs" / "bench.yaml"),
                "tree": str(tree),
            }
        )
    return rows


async def levers(
    seconds: float, concurrencies: Sequence[int], before: str | None, only: Sequence[str] = ()
) -> list[Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for v in lever_variants(Path(d), before):
            floor = v["kind"] in ("plain", "relay")
            if only and not floor and not any(o in v["label"] for o in only):
                continue
            tree = v.get("tree")
            env = dict(v["env"])
            if tree:
                env["PYTHONPATH"] = tree  # the Ray workers it starts import the same code
            print(f"[levers] starting: {v['label']}", flush=True)
            server = await procs.start_server(v["kind"], v["config"], env, cwd=tree)
            try:
                for c in concurrencies:
                    out = RESULTS / "levers" / f"{len(rows)}-c{c}"
                    args = procs.closed_loop(c, seconds, max(100, 4 * c), UNARY)
                    s = await procs.bench(server.target, out, args)
                    row = {"label": v["label"], "concurrency": c, **_unary(s)}
                    rows.append(row)
                    print(
                        f"[levers] {v['label']} c={c}: p50 {row['p50_ms']:.2f} ms, "
                        f"{row['req_s']:.0f} req/s, refused {row['refused']}",
                        flush=True,
                    )
            finally:
                await procs.stop_server(server)
    return rows


def _unary(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "p50_ms": s["p50_e2el_ms"],
        "p99_ms": s["p99_e2el_ms"],
        "req_s": s["steady_request_throughput"],
        "completed": s["completed"],
        "refused": s.get("refused", 0),
        "failed": s["failed"],
    }


def levers_table(rows: list[dict[str, Any]]) -> str:
    plain = {r["concurrency"]: r for r in rows if r["label"] == "plain grpc.aio echo"}
    conc = sorted(plain)
    head = "| path | " + " | ".join(
        f"c={c} p50 (vs plain) | c={c} req/s (share of plain)" for c in conc
    )
    out = [head + " |", "|---|" + "---|---|" * len(conc)]
    for label in dict.fromkeys(r["label"] for r in rows):
        cells = []
        for c in conc:
            r = next((r for r in rows if r["label"] == label and r["concurrency"] == c), None)
            if r is None:
                cells += ["-", "-"]
                continue
            p, base = r["p50_ms"], plain[c]
            refused = f", {r['refused']} refused" if r["refused"] else ""
            cells.append(f"{p:.2f} ms (+{p - base['p50_ms']:.2f})")
            cells.append(f"{r['req_s']:.0f} ({r['req_s'] / base['req_s']:.0%}){refused}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# ---- streaming ----------------------------------------------------------------------------
async def stream(streams: int, tokens: int, delay_s: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        config = paced_config(Path(d), delay_s, tokens)
        inproc = await _inprocess_stream(config, streams, tokens, seconds)
        print(
            f"[stream] in-process: {inproc['tok_s']:.0f} tok/s, ITL p99 "
            f"{inproc['itl_p99_ms']:.1f} ms",
            flush=True,
        )
        server = await procs.start_server("gateway", str(config), SHIPPED)
        try:
            workload = f"text,stream=true,prompt_words={tokens},max_tokens={tokens}"
            args = procs.closed_loop(streams, seconds, streams, workload)
            s = await procs.bench(server.target, RESULTS / "stream" / "gateway", args)
        finally:
            await procs.stop_server(server)
        served = {
            "tok_s": s["steady_output_throughput"],
            "itl_p50_ms": s["p50_itl_ms"],
            "itl_p99_ms": s["p99_itl_ms"],
            "ttft_p50_ms": s["p50_ttft_ms"],
            "failed": s["failed"],
        }
        print(
            f"[stream] gateway: {served['tok_s']:.0f} tok/s, ITL p99 {served['itl_p99_ms']:.1f} ms",
            flush=True,
        )
    return {
        "streams": streams,
        "tokens": tokens,
        "delay_s": delay_s,
        "in_process": inproc,
        "gateway": served,
        "ratio": served["tok_s"] / inproc["tok_s"],
        "itl_p99_added_ms": served["itl_p99_ms"] - inproc["itl_p99_ms"],
    }


async def _inprocess_stream(config: Path, streams: int, tokens: int, seconds: float) -> Any:
    proc = await asyncio.create_subprocess_exec(
        procs.PY,
        "-m",
        "load_tests.gateway_cost",
        "inprocess-stream",
        "--config",
        str(config),
        "--streams",
        str(streams),
        "--tokens",
        str(tokens),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
        env=procs.server_env(),
    )
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def inprocess_stream(config: Path, streams: int, tokens: int, seconds: float) -> Any:
    """The paced echo engine called in this process by `streams` closed-loop consumers: the
    tokens/s and inter-token gaps a stream would have with no gateway, no Serve, no RPC."""
    from core.config import load_config
    from core.registry import engine_class
    from core.types import TextRequest

    model = load_config(config).models[0]
    engine = engine_class("text", model.engine)(model)
    await engine.start()
    prompt = " ".join(f"w{i}" for i in range(tokens))
    gaps: list[float] = []
    counted = 0
    end = time.perf_counter() + seconds
    warm = time.perf_counter() + min(2.0, seconds / 4)

    async def consumer(k: int) -> None:
        nonlocal counted
        n = 0
        while time.perf_counter() < end:
            request = TextRequest(
                request_id=f"s{k}-{n}", model=model.name, prompt=prompt, max_tokens=tokens
            )
            n += 1
            last = None
            async for chunk in engine.stream(request):
                now = time.perf_counter()
                if now >= warm and now < end:
                    counted += chunk.token_count
                    if last is not None:
                        gaps.append(now - last)
                last = now

    await asyncio.gather(*(consumer(k) for k in range(streams)))
    gaps.sort()
    span = end - warm
    return {
        "tok_s": counted / span,
        "itl_p50_ms": 1000 * gaps[len(gaps) // 2],
        "itl_p99_ms": 1000 * gaps[int(len(gaps) * 0.99)],
    }


def stream_table(r: dict[str, Any]) -> str:
    i, g = r["in_process"], r["gateway"]

    def row(name: str, x: dict[str, Any]) -> str:
        return (
            f"| {name} | {x['tok_s']:.0f} | {x['itl_p50_ms']:.1f} ms | {x['itl_p99_ms']:.1f} ms |"
        )

    pace = f"a token every {r['delay_s'] * 1000:.0f} ms"
    return "\n".join(
        [
            f"{r['streams']} streams of {r['tokens']} tokens, {pace}",
            "",
            "| | tok/s | ITL p50 | ITL p99 |",
            "|---|---|---|---|",
            row("echo engine in-process", i),
            row("through the gateway (gRPC)", g),
            f"| ratio / added | {r['ratio']:.2f}x | | {r['itl_p99_added_ms']:+.1f} ms |",
        ]
    )


# ---- profile ------------------------------------------------------------------------------
# A sample's stage: the innermost frame that matches one of these (file path fragments or
# function names), else "event loop and native code" (C code py-spy sees as its Python caller).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "serialization (cloudpickle, Serve's RPC serializer)",
        ("cloudpickle", "serve/_private/serialization.py", "pickle", "core/direct.py"),
    ),
    ("our metrics (prometheus_client)", ("gateway/metrics.py", "prometheus_client")),
    ("admission", ("gateway/admission.py", "gateway/gate.py", "gateway/rate.py")),
    ("transport: gRPC client to the replica", ("grpc/aio/_call.py", "grpc/aio/_channel.py")),
    (
        "Serve's router and handle (incl. its metrics)",
        (
            "serve/_private/router.py",
            "serve/_private/request_router",
            "serve/handle.py",
            "serve/_private/replica_result.py",
            "ray/util/metrics.py",
            "serve/_private/utils.py",
            "serve/_private/tracing_utils.py",
            "serve/config.py",
        ),
    ),
    (
        "direct calls: our client and the replica's server (transport: direct)",
        ("gateway/direct.py", "services/direct.py", "grpc/aio/_server.py"),
    ),
    ("data plane", ("gateway/dataplane.py", "gateway/calls.py", "gateway/replicas.py")),
    (
        "front end (gRPC servicer, proto <-> domain)",
        (
            "gateway/grpc_api",
            "gateway/convert.py",
            "gateway/validate.py",
            "google/protobuf",
            "gateway/auth.py",
        ),
    ),
    ("replica: our engine and deployment", ("services/",)),
    ("replica: Serve's request wrapper, access log", ("serve/_private/replica.py", "logging")),
]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "event loop and native code (gRPC core)"


def categorize(raw: Path) -> dict[str, float]:
    """py-spy's raw (collapsed) output: the share of samples per stage."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        counts[stage_of(stack.split(";"))] += int(n)
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.most_common()} | {"samples": float(total)}


async def profile(seconds: float, concurrencies: Sequence[int]) -> list[dict[str, Any]]:
    """Per concurrency: one closed loop; in its steady state, first a window that counts every
    process's CPU time (nothing else sampling), then a window with py-spy on the gateway and
    the text replica."""
    spy = Path(procs.PY).with_name("py-spy")
    rows: list[dict[str, Any]] = []
    out = RESULTS / "profile"
    out.mkdir(parents=True, exist_ok=True)
    for c in concurrencies:  # the plain server's CPU per request, for comparison
        server = await procs.start_server("plain", str(BENCH_CONFIG))
        try:
            args = procs.closed_loop(c, seconds + 4, max(100, 4 * c), UNARY)
            load = asyncio.ensure_future(procs.bench(server.target, out / f"plain-c{c}", args))
            await asyncio.sleep(2.0)
            pid = server.child.proc.pid
            cpu = await cpu_window(seconds, pid, -1, os.getsid(pid))
            s = await load
            cpu["plain grpc.aio server"] = cpu.pop("gateway")
            cpu_ms = {k: 1000 * v / s["steady_request_throughput"] for k, v in cpu.items()}
            rows.append({"concurrency": c, "process": "plain", "stages": {},
                         "cpu_ms_per_request": cpu_ms, **_unary(s)})  # fmt: skip
        finally:
            await procs.stop_server(server)
    for c in concurrencies:
        server = await procs.start_server("gateway", str(BENCH_CONFIG), SHIPPED)
        try:
            gateway, replica = server.child.proc.pid, _pids("ServeReplica:text")[0]
            args = procs.closed_loop(c, 2 * seconds + 4, max(100, 4 * c), UNARY)
            load = asyncio.ensure_future(procs.bench(server.target, out / f"bench-c{c}", args))
            await asyncio.sleep(2.0)  # past the load generator's warm-up: the steady state
            cpu = await cpu_window(seconds, gateway, replica, os.getsid(gateway))
            raw = {who: out / f"{who}-c{c}.txt" for who in ("gateway", "replica")}
            spies = [
                await asyncio.create_subprocess_exec(
                    str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200",
                    "-f", "raw", "-o", str(raw[who]), "--nonblocking",
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )
                for who, pid in (("gateway", gateway), ("replica", replica))
            ]  # fmt: skip
            s = await load
            for p in spies:
                await p.wait()
            rate = s["steady_request_throughput"]
            cpu_ms = {k: 1000 * v / rate for k, v in cpu.items()}  # CPU ms per request
            for who in ("gateway", "replica"):
                shares = categorize(raw[who])
                shares.pop("samples")
                rows.append({"concurrency": c, "process": who, "stages": shares,
                             "cpu_ms_per_request": cpu_ms, **_unary(s)})  # fmt: skip
            print(f"[profile] c={c}: {rate:.0f} req/s; CPU ms per request "
                  + ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms.items()), flush=True)  # fmt: skip
        finally:
            await procs.stop_server(server)
    return rows


async def cpu_spent_over(seconds: float) -> tuple[CpuTimes, float]:
    """Each process's CPU seconds over the next `seconds`, and the wall time they span."""
    before, t0 = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    return cpu_spent(before, cpu_seconds()), time.perf_counter() - t0


async def cpu_window(seconds: float, gateway: int, replica: int, session: int) -> dict[str, float]:
    """CPU seconds per second of wall time over `seconds`, grouped: the gateway, the text
    replica, Ray's other processes (the server's session: GCS, raylet, controller, the other
    replicas), the load generator, the rest of the machine."""
    spent, wall = await cpu_spent_over(seconds)
    load_generator = set(_pids("aigc.cli bench"))
    groups: dict[str, float] = collections.defaultdict(float)
    for pid, (used, sid, name) in spent.items():
        if pid == gateway:
            key = "gateway"
        elif pid == replica:
            key = "text replica"
        elif sid == session:
            key = "Ray's other processes"
        elif pid == os.getpid() or name == "py-spy":
            key = "this script"
        elif pid in load_generator:
            key = "load generator"
        else:
            key = "rest of the machine"
        groups[key] += used / wall
    return dict(groups)


async def idle(seconds: float) -> dict[str, float]:
    """The stack at rest (the echo config, no requests): CPU per second of each process of the
    server's session, by name: what the stack takes from a model that shares its machine."""
    server = await procs.start_server("gateway", str(BENCH_CONFIG), SHIPPED)
    try:
        await asyncio.sleep(5.0)  # past start-up
        spent, wall = await cpu_spent_over(seconds)
        gateway = server.child.proc.pid
    finally:
        await procs.stop_server(server)
    used: dict[str, float] = collections.defaultdict(float)
    for pid, (cpu, sid, name) in spent.items():
        if sid == gateway:  # the server's session (it leads its own: start_new_session)
            used["gateway" if pid == gateway else name] += cpu / wall
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def idle_table(used: dict[str, float]) -> str:
    out = ["| process (the stack at rest) | CPU (cores) |", "|---|---|"]
    out += [f"| {k} | {v:.3f} |" for k, v in used.items() if v >= 0.001]
    out.append(f"| total | {sum(used.values()):.3f} |")
    return "\n".join(out)


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def profile_table(rows: list[dict[str, Any]]) -> str:
    spied = [r for r in rows if r["stages"]]
    cols = [(r["concurrency"], r["process"]) for r in spied]
    stages = list(dict.fromkeys(s for r in spied for s in r["stages"]))
    runs = {(r["process"] == "plain", r["concurrency"]): r for r in rows}  # one per closed loop
    out = ["Where the CPU goes: CPU ms per request, by process (all cores):", ""]
    groups = list(dict.fromkeys(k for r in rows for k in r["cpu_ms_per_request"]))
    heads = [f"{'plain' if plain else 'gateway'} c={c} ({r['req_s']:.0f} req/s)"
             for (plain, c), r in runs.items()]  # fmt: skip
    out += ["| process | " + " | ".join(heads) + " |", "|---|" + "---|" * len(runs)]
    for g in [*groups, "total"]:
        cells = []
        for r in runs.values():
            ms = r["cpu_ms_per_request"]
            v = sum(ms.values()) if g == "total" else ms.get(g)
            cells.append("-" if v is None else f"{v:.3f}")
        out.append(f"| {g} | " + " | ".join(cells) + " |")
    out += ["", "py-spy samples by stage (each process's Python-visible stacks):", ""]
    out += ["| stage | " + " | ".join(f"{p} c={c}" for c, p in cols) + " |",
            "|---|" + "---|" * len(cols)]  # fmt: skip
    for st in stages:
        out.append(f"| {st} | " + " | ".join(f"{r['stages'].get(st, 0):.0%}" for r in spied) + " |")
    return "\n".join(out)


# ---- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.gateway_cost")
    p.add_argument("which", choices=["levers", "stream", "profile", "idle", "inprocess-stream"])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    p.add_argument("--before", help="levers: also the gateway as of this git revision")
    p.add_argument("--only", nargs="*", default=[], help="levers: rows whose label has this")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--delay-s", type=float, default=0.02)
    p.add_argument("--config", type=Path, help="inprocess-stream (internal)")
    p.add_argument("--wait-quiet", action="store_true", help="wait for load < 0.5, no raylet")
    args = p.parse_args(argv)
    if args.which == "inprocess-stream":
        r = asyncio.run(inprocess_stream(args.config, args.streams, args.tokens, args.seconds))
        print(json.dumps(r))
        return 0
    if args.wait_quiet:
        wait_quiet()
    command = "python -m load_tests.gateway_cost " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    meta = {"command": command, **facts()}
    if args.which == "levers":
        rows: Any = asyncio.run(levers(args.seconds, args.concurrency, args.before, args.only))
        result, table = {**meta, "rows": rows}, levers_table(rows)
    elif args.which == "stream":
        r = asyncio.run(stream(args.streams, args.tokens, args.delay_s, args.seconds))
        result, table = {**meta, **r}, stream_table(r)
    elif args.which == "idle":
        used = asyncio.run(idle(args.seconds))
        result, table = {**meta, "cpu": used}, idle_table(used)
    else:
        rows = asyncio.run(profile(args.seconds, args.concurrency))
        result, table = {**meta, "rows": rows}, profile_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.which}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = f"{heading(meta)}\n\n{table}\n"
    (RESULTS / f"{args.which}.md").write_text(md)
    print(md, flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.exit(main())
