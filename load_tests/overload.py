"""`python -m load_tests.overload`: does admission keep its promises under 4x overload?

Issue 15's goals as ratios inside one run, on one stack serving the demo text model (`fortune`)
and image model (`fashion`) of configs/local.yaml, each driven on its own:

1. saturated rate R: a closed loop deep enough to keep the replica's batches full, a long
   deadline; R is the steady completion rate;
2. open loop at 1x R and at 4x R, 10 s deadlines, all interactive;
3. the same two with a 50/50 interactive/batch mix;
4. 4x again, all interactive, split evenly over two gateways on the same apps (the second one
   as `aigc gateway --address` runs it, started for this run only: while it lives, the first
   gateway counts on half of each model's capacity): each learns from its own completions, so
   together they should admit about what one gateway admits.

Per model it reports: admitted-then-expired share at 4x, goodput at 4x / R, refusal p99, and
for the mix the interactive p99 at 4x / at 1x and the share of refusals that fell on batch.
Results: bench-results/overload.json and .md (the table for BENCHMARKS.md).
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
from load_tests.bench.workload import parse_item
from load_tests.machine import facts, heading
from load_tests.prom import scrape, total
from load_tests.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
LOCAL_CONFIG = ROOT / "configs" / "local.yaml"
THROUGHPUT_OPTIMIZED = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}  # as aigc up runs
DEADLINE_S = 10.0
# (model in configs/local.yaml, `aigc bench --workload`). Images come 8 to a request: with one,
# the gateway and the load generator (sharing this machine's cores) saturate before the model.
MODELS = {
    "text": ("fortune", "text:fortune,stream=false,max_tokens=32"),
    "image": ("fashion", "image:fashion,count=8"),
}


def overload_config(path: Path, names: list[str], inflight_batches: float | None = None) -> Path:
    """The named models of configs/local.yaml with absolute weight paths, free ports; an
    `admission.inflight_batches` for all of them when given."""
    from core.config import load_config

    base = load_config(LOCAL_CONFIG)
    models = [m.model_dump(mode="json") for m in base.models if m.name in names]
    for m in models:
        # The policy BENCHMARKS section 8 measured (the default until the queue cap became
        # opt-in): admitted work waits at most one batch's drain at the gate.
        m["admission"].setdefault("max_queue_wait_s", "one_batch")
        if m["admission"]["max_queue_wait_s"] is None:
            m["admission"]["max_queue_wait_s"] = "one_batch"
        if inflight_batches is not None:
            m["admission"]["inflight_batches"] = inflight_batches
    config = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": -1},
        "ray": {"num_cpus": 4, "metrics_export_port": 0, "namespace": "aigc-overload"},
        "models": models,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def refusal_buckets(metrics_port: int | None, model: str) -> dict[float, float]:
    """The gateway's own refusal latency histogram for the model (cumulative counts by upper
    bound, seconds): aigc_admission_wait_seconds{outcome="refused"}."""
    if metrics_port is None:
        return {}
    samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    want = {("model", model), ("outcome", "refused")}
    return {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == "aigc_admission_wait_seconds_bucket" and want <= set(labels)
    }


def bucket_p99_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    """Upper bound (ms) of the histogram bucket holding the 99th percentile of what was
    observed between the two scrapes; None when nothing was."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= 0.99 * counts[-1]:
            return bound * 1000
    return None


def _p99(section: dict[str, Any]) -> float | None:
    value = section.get("p99_e2el_ms")
    return float(value) if value is not None else None


def _admitted_rate(runs: list[dict[str, Any]]) -> float:
    """Requests admitted per second (not refused), over the sending window, summed."""
    return sum(r["admitted"] / r["window_s"] for r in runs if r.get("window_s"))


def verdicts(runs: dict[str, dict[str, Any]], pair: list[dict[str, Any]]) -> dict[str, Any]:
    """The goal figures of one model from its five runs (bench summaries)."""
    rate = runs["saturated"]["steady_request_throughput"]
    x4, x1m, x4m = runs["x4"], runs["x1-mix"], runs["x4-mix"]
    inter1 = _p99(x1m.get("per_priority", {}).get("interactive", {}))
    inter4 = _p99(x4m.get("per_priority", {}).get("interactive", {}))
    return {
        "saturated_rps": rate,
        "x1_goodput_rps": runs["x1"].get("steady_deadline_goodput"),
        "x4_goodput_rps": x4.get("steady_deadline_goodput"),
        "x4_goodput_over_saturated": (x4.get("steady_deadline_goodput") or 0) / rate
        if rate
        else None,
        "x4_admitted_expired_share": x4.get("admitted_expired_share"),
        "x4_refused_share": x4.get("refused_share"),
        "x4_refusal_p99_ms": x4.get("p99_refusal_ms"),
        "x4_gateway_refusal_p99_ms_at_most": x4.get("gateway_refusal_p99_ms_at_most"),
        "mix_interactive_p99_ms": [inter1, inter4],
        "mix_interactive_p99_x4_over_x1": inter4 / inter1 if inter1 and inter4 else None,
        "mix_x4_batch_share_of_refused": x4m.get("batch_share_of_refused"),
        "x4_errors_by_code": x4.get("errors_by_code"),
        "two_gateways_admitted_over_one": _admitted_rate(pair) / _admitted_rate([x4])
        if pair and _admitted_rate([x4])
        else None,
        "two_gateways_admitted_expired_share": sum(r.get("admitted_expired", 0) for r in pair)
        / max(1, sum(r.get("admitted", 0) for r in pair))
        if pair
        else None,
    }


async def gateways_counted(server: procs.Server, n: int, timeout_s: float = 90.0) -> None:
    """Waits until the gateway counts `n` gateways in front of the models (its share of each
    model's bound follows that count; gateway/peers.py), bounded."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    counted = await asyncio.to_thread(
        wait_for, lambda: total(scrape(url), "aigc_gateways") == n, timeout_s, 0.5, retry_on=()
    )
    if not counted:
        raise TimeoutError(f"{server.target} did not count {n} gateways in {timeout_s} s")


async def over_two_gateways(
    server: procs.Server, config: Path, out: Path, args: list[str]
) -> list[dict[str, Any]]:
    """Half the 4x load at each of two gateways. The second one exists only for this run: while
    it lives the first counts on half of each model's capacity, which would halve what the
    single-gateway runs measure."""
    env = {**THROUGHPUT_OPTIMIZED, "RAY_ADDRESS": str(server.ray_address)}
    second = await procs.start_server("extra-gateway", str(config), env)
    try:
        await gateways_counted(server, 2)
        await gateways_counted(second, 2)
        return list(
            await asyncio.gather(
                procs.bench(server.target, out / "x4-gateway-1", args),
                procs.bench(second.target, out / "x4-gateway-2", args),
            )
        )
    finally:
        await procs.stop_server(second)
        await gateways_counted(server, 1)  # it left: the next model's runs get the whole bound


async def run(
    seconds: float, modalities: list[str], two_gateways: bool, inflight_batches: float | None
) -> dict[str, Any]:
    from core.config import load_config
    from core.sizing import inflight_requests_per_replica

    names = [MODELS[m][0] for m in modalities]
    config = overload_config(RESULTS / "overload-config.yaml", names, inflight_batches)
    by_name = load_config(config).by_name()
    server = await procs.start_server("gateway", str(config), THROUGHPUT_OPTIMIZED)
    rows = []
    try:
        for modality in modalities:
            model, workload = MODELS[modality]
            # Saturation: exactly the gate's in-flight bound in flight, so that none is refused
            # (a deeper closed loop spins on refusals, which costs the model CPU here). Where a
            # model's batches count images, the depth in requests follows the request's images
            # (an image request's admission cost is its count; text ignores it).
            images = parse_item(workload).count
            depth = inflight_requests_per_replica(by_name[model], images)
            out = RESULTS / "overload" / model
            common = ["--workload", workload, "--duration", str(seconds)]
            runs: dict[str, dict[str, Any]] = {}
            runs["saturated"] = await procs.bench(
                server.target,
                out / "saturated",
                [
                    *common,
                    "--concurrency",
                    str(depth),
                    "--warmup",
                    str(depth),
                    "--deadline-s",
                    "60",
                ],
            )
            rate = runs["saturated"]["steady_request_throughput"]
            print(f"[overload] {model}: saturated {rate:.1f} req/s", flush=True)
            for name, factor, priority in (
                ("x1", 1, "interactive"),
                ("x4", 4, "interactive"),
                ("x1-mix", 1, "mix"),
                ("x4-mix", 4, "mix"),
            ):
                args = [*common, "--rate", f"{factor * rate:.3f}", "--warmup", str(depth)]
                args += ["--deadline-s", str(DEADLINE_S), "--priority", priority]
                before = refusal_buckets(server.metrics_port, model)
                runs[name] = await procs.bench(server.target, out / name, args)
                s = runs[name]
                after = refusal_buckets(server.metrics_port, model)
                s["gateway_refusal_p99_ms_at_most"] = bucket_p99_ms(before, after)
                print(
                    f"[overload] {model} {name}: goodput {s.get('steady_deadline_goodput', 0):.1f}"
                    f"/s, refused {s.get('refused', 0)}, expired {s.get('admitted_expired', 0)}",
                    flush=True,
                )
            pair: list[dict[str, Any]] = []
            if two_gateways:
                args = [*common, "--rate", f"{2 * rate:.3f}", "--warmup", str(depth)]
                args += ["--deadline-s", str(DEADLINE_S)]
                pair = await over_two_gateways(server, config, out, args)
                print(f"[overload] {model} x4 over two gateways: admitted "
                      f"{[r.get('admitted') for r in pair]}", flush=True)  # fmt: skip
            rows.append({"model": model, "modality": modality, **verdicts(runs, pair)})
    finally:
        await procs.stop_server(server)
    return {"deadline_s": DEADLINE_S, "seconds": seconds, "rows": rows}


def _f(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | saturated req/s | 4x: expired / admitted (goal <= 0.01) | 4x goodput / "
        "saturated (goal >= 0.9) | 4x refusal p99 ms (goal <= 10): client; gateway's own | "
        "mix: interactive p99 "
        "4x / 1x (goal <= 1.5) | mix 4x: batch share of refusals (goal >= 0.95) | two gateways at "
        "4x: admitted / one gateway's (goal 0.9-1.1), expired share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p1, p4 = r["mix_interactive_p99_ms"]
        lines.append(
            f"| {r['model']} | {_f(r['saturated_rps'], '.1f')} "
            f"| {_f(r['x4_admitted_expired_share'], '.3f')} "
            f"| {_f(r['x4_goodput_over_saturated'])} | {_f(r['x4_refusal_p99_ms'], '.1f')}; "
            f"<= {_f(r['x4_gateway_refusal_p99_ms_at_most'], '.2f')} "
            f"| {_f(r['mix_interactive_p99_x4_over_x1'])} ({_f(p4, '.0f')} / {_f(p1, '.0f')} ms) "
            f"| {_f(r['mix_x4_batch_share_of_refused'])} "
            f"| {_f(r['two_gateways_admitted_over_one'])}, "
            f"{_f(r['two_gateways_admitted_expired_share'], '.3f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.overload")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run")
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    p.add_argument("--one-gateway", action="store_true", help="skip the two-gateway run")
    p.add_argument(
        "--inflight-batches", type=float, default=None, help="admission.inflight_batches for all"
    )
    args = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    command = "python -m load_tests.overload " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"command": command, **facts()}
    result = {
        **meta,
        **asyncio.run(
            run(args.seconds, sorted(args.models), not args.one_gateway, args.inflight_batches)
        ),
    }
    (RESULTS / "overload.json").write_text(json.dumps(result, indent=2) + "\n")
    md = f"{heading(meta)}\n\n{table(result['rows'])}\n"
    (RESULTS / "overload.md").write_text(md)
    print(md, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
