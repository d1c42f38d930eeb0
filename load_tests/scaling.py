"""`python -m load_tests.benchmarks scaling`: throughput against replica count, and autoscaling.

One stack (`aigc up`'s Stack in a server process) with four copies of the echo image
engine, each with a fixed service time (`delay_s` per batch) and one request per batch, so a
replica serves at most 1 / delay_s requests per second whatever the machine: `echo-r1`,
`echo-r2`, `echo-r3` with a fixed replica count (min = max) and `echo-auto` autoscaled from 1
to 3. The load is closed-loop: `4 x replicas` callers (gRPC, the real AsyncClient) keep
requests queued at every replica; the gateway queues the rest (max_queue_wait_s is long, so
nothing is refused). For the autoscaled model the load step is 12 callers; the gateway's
`aigc_model_replicas` gauge gives the replicas running, a 2-second window the throughput.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

from load_tests import procs
from load_tests.prom import scrape, total

DELAY_S = 0.1  # service time of one request (one image, one batch)
FIXED = (1, 2, 3)
CALLERS_PER_REPLICA = 4
WINDOW_S = 2.0
# Serve pushes autoscaling metrics every 10 s by default; 0.5 s here (as in tests/cluster),
# with the short delays of echo-auto's config, so the step response is Serve's decisions, not
# its reporting interval.
FAST_METRICS = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}
AUTO_SCALING = {
    "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
    "upscale_delay_s": 1.0, "downscale_delay_s": 10.0, "look_back_period_s": 2.0,
}  # fmt: skip


def scaling_config(path: Path) -> Path:
    def model(name: str, scaling: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name, "modality": "image", "engine": "echo",
            "options": {"delay_s": DELAY_S}, "resources": {"num_cpus": 0.25},
            "batching": {"max_batch_size": 1, "gateway_coalescing": False},
            "limits": {"max_images": 1}, "scaling": scaling,
            "admission": {"inflight_batches": CALLERS_PER_REPLICA, "max_queue_wait_s": 60},
        }  # fmt: skip

    models = [model(f"echo-r{n}", {"min_replicas": n, "max_replicas": n}) for n in FIXED]
    models.append(model("echo-auto", AUTO_SCALING))
    config = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": -1,
                    "refresh_models_s": 0.25},
        "ray": {"num_cpus": 4, "metrics_export_port": 0, "namespace": "aigc-bench-scaling"},
        "models": models,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def running_replicas(metrics_url: str, model: str) -> int:
    return int(total(scrape(metrics_url), "aigc_model_replicas", model=model, state="running"))


class ClosedLoop:
    """`callers` tasks, each sending the next request when the last one returns."""

    def __init__(self, target: str, model: str, callers: int) -> None:
        self.target, self.model, self.callers = target, model, callers
        self.done: list[float] = []  # completion times (monotonic)
        self.codes: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _caller(self) -> None:
        from aigc import AsyncClient

        async with AsyncClient(self.target, timeout=120) as client:
            while not self._stop.is_set():
                try:
                    await client.generate_images(model=self.model, count=1)
                    code = "OK"
                    self.done.append(time.monotonic())
                except grpc.aio.AioRpcError as err:
                    code = err.code().name
                self.codes[code] = self.codes.get(code, 0) + 1

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._caller()) for _ in range(self.callers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def rate(self, start: float, end: float) -> float:
        return sum(1 for t in self.done if start <= t < end) / (end - start)


async def fixed_point(target: str, n: int, seconds: float) -> dict[str, Any]:
    load = ClosedLoop(target, f"echo-r{n}", CALLERS_PER_REPLICA * n)
    load.start()
    await asyncio.sleep(max(2.0, 10 * DELAY_S))  # warm-up: the queues fill (load pacing)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    t1 = time.monotonic()
    await load.stop()
    rate = load.rate(t0, t1)
    return {"replicas": n, "callers": load.callers, "req_per_s": rate,
            "ideal_req_per_s": n / DELAY_S, "codes": load.codes}  # fmt: skip


async def autoscaled(target: str, metrics_url: str, full_rate: float) -> dict[str, Any]:
    """The load step at t=0; replicas from the gauge every 0.25 s; the throughput of the last
    WINDOW_S. `full` = the first time that throughput reaches 90% of the 3-replica rate."""
    model = "echo-auto"
    assert running_replicas(metrics_url, model) == 1, "echo-auto is not at min_replicas"
    load = ClosedLoop(target, model, CALLERS_PER_REPLICA * FIXED[-1])
    t0 = time.monotonic()
    load.start()
    timeline: list[dict[str, float]] = []
    first = full = None
    limit = t0 + 180
    while time.monotonic() < limit:
        await asyncio.sleep(0.25)
        now = time.monotonic()
        replicas = await asyncio.to_thread(running_replicas, metrics_url, model)
        rate = load.rate(now - WINDOW_S, now) if now - t0 >= WINDOW_S else 0.0
        timeline.append({"t": now - t0, "replicas": replicas, "req_per_s": rate})
        if first is None and replicas >= 2:
            first = now - t0
        if full is None and rate >= 0.9 * full_rate:
            full = now - t0
        if full is not None and replicas >= 3 and now - t0 > full + WINDOW_S:
            break
    await load.stop()
    return {"first_added_replica_s": first, "full_throughput_s": full,
            "full_rate_target": 0.9 * full_rate, "codes": load.codes,
            "timeline": timeline}  # fmt: skip


async def scaling(seconds: float, results: Path) -> dict[str, Any]:
    config = scaling_config(results / "scaling-config.yaml")
    # Ray of its own (temp dir, so it joins no other Ray on the machine), short socket paths
    ray_tmp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    env = {**procs_env(), **FAST_METRICS, "RAY_TMPDIR": ray_tmp}
    server = await procs.start_server("gateway", str(config), env)
    try:
        assert server.metrics_port is not None
        metrics_url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        rows = []
        for n in FIXED:
            row = await fixed_point(server.target, n, seconds)
            rows.append(row)
            print(f"[scaling] {n} replica(s): {row['req_per_s']:.1f} req/s "
                  f"(ideal {row['ideal_req_per_s']:.0f}) {row['codes']}", flush=True)  # fmt: skip
        auto = await autoscaled(server.target, metrics_url, rows[-1]["req_per_s"])
        print(f"[scaling] autoscaled: first added replica serving after "
              f"{auto['first_added_replica_s']}s, full throughput after "
              f"{auto['full_throughput_s']}s {auto['codes']}", flush=True)  # fmt: skip
    finally:
        await procs.stop_server(server)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return {"delay_s": DELAY_S, "autoscaling": AUTO_SCALING, "rows": rows, "autoscaled": auto}


def procs_env() -> dict[str, str]:
    return {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}  # what aigc-serve ships


def scaling_table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    base = rows[0]["req_per_s"]
    lines = [
        f"echo image engine, {result['delay_s']:g} s per request, max_batch_size 1; "
        f"closed loop, {CALLERS_PER_REPLICA} callers per replica",
        "",
        "| replicas (fixed) | req/s | ideal req/s | req/s / 1 replica | non-OK |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        bad = sum(v for k, v in r["codes"].items() if k != "OK")
        lines.append(
            f"| {r['replicas']} | {r['req_per_s']:.1f} | {r['ideal_req_per_s']:.0f} "
            f"| {r['req_per_s'] / base:.2f} | {bad} |"
        )
    a = result["autoscaled"]

    def s(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1f} s"

    at_max = next((p["t"] for p in a["timeline"] if p["replicas"] >= FIXED[-1]), None)
    lines += [
        "",
        f"autoscaled 1 -> 3 (`{result['autoscaling']}`), load step of "
        f"{CALLERS_PER_REPLICA * FIXED[-1]} callers: first added replica serving after "
        f"{s(a['first_added_replica_s'])}, the third after {s(at_max)}, "
        f"throughput at 90% of the 3-replica rate "
        f"({a['full_rate_target']:.1f} req/s, over {WINDOW_S:g} s) after "
        f"{s(a['full_throughput_s'])}; calls {a['codes']}",
    ]
    return "\n".join(lines)
