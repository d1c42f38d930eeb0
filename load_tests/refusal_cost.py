"""`python -m load_tests.refusal_cost`: what one refused call costs the gateway's CPU.

Under overload most calls are refused, so the CPU a refusal takes decides how fast the gateway
can answer them, and how much CPU it leaves a model sharing its machine. Side by side in one
run, alternating, each the median of `--repeats`:

- bare: a grpc.aio server whose handler only aborts with RESOURCE_EXHAUSTED and a RetryInfo:
  the floor of any Python gRPC front end on this machine;
- gateway: the gateway's gRPC front end (decode interceptor, servicers, data plane, admission
  gate, metrics, error rendering) with the image model's gate held at its in-flight bound, so
  every call is refused by the gate. Nothing reaches Ray on this path, so none is started.

`aigc bench` in its own process sends `--calls` unary image calls, 64 at a time. Reported per
refused call: the server process's CPU (all its threads), its event loop thread's CPU, and the
client's latency p50 / p99. Results: bench-results/refusal-cost.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from aigc.v1 import image_pb2_grpc
from core.config import parse_config
from load_tests import procs
from load_tests.machine import facts, heading

RESULTS = Path(__file__).resolve().parent.parent / "bench-results"
MODEL = "refusal-bench"
CONCURRENCY = 64


class BareRefusal(image_pb2_grpc.ImageGenerationServicer):
    """Refuses every call with the same status shape the gateway sends, and nothing else."""

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="busy")
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=50_000_000))
        status.details.add().Pack(info)
        await context.abort_with_status(rpc_status.to_status(status))


class _NoReplica:
    """Where the data plane's handle would be: a refused call never uses it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused call reached the replica ({name})")


async def gateway_server() -> grpc.aio.Server:
    """The gateway's gRPC front end over one image model whose gate is held at its bound."""
    from gateway.dataplane import DataPlane
    from gateway.grpc_api.decode import DecodeInterceptor
    from gateway.grpc_api.servicers import ImageServicer
    from gateway.metrics import GatewayMetrics
    from gateway.registry import ModelRegistry

    config = parse_config(
        {"models": [{"name": MODEL, "modality": "image", "engine": "echo"}]}, source="bench"
    )
    metrics = GatewayMetrics()

    registry = ModelRegistry(config, handle_factory=lambda model: _NoReplica())
    registry.state[MODEL].ready, registry.state[MODEL].running_replicas = True, 1
    plane = DataPlane(config, registry, metrics)
    gate = plane.admission.gates[MODEL]
    gate.learned.samples, gate.inflight = 1, gate.bound  # learned, and full: every call waits
    gate.max_queue_wait_s = 0.0  # ...and no call may
    server = grpc.aio.server(interceptors=[DecodeInterceptor()])
    image_pb2_grpc.add_ImageGenerationServicer_to_server(ImageServicer(plane), server)
    return server


async def measure(kind: str, calls: int) -> dict[str, Any]:
    if kind == "bare":
        server = grpc.aio.server()
        image_pb2_grpc.add_ImageGenerationServicer_to_server(BareRefusal(), server)
    else:
        server = await gateway_server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    try:
        await client(target, min(calls, 1000), kind)  # warm up both sides
        cpu, loop_cpu = time.process_time(), time.thread_time()
        seen = await client(target, calls, kind)
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    finally:
        await server.stop(0)
    assert seen["errors_by_code"] == {"RESOURCE_EXHAUSTED": calls}, seen["errors_by_code"]
    return {
        "kind": kind,
        "server_cpu_us": cpu / calls * 1e6,
        "loop_cpu_us": loop_cpu / calls * 1e6,
        "calls_per_s": calls / seen["duration"],
        "client_p50_ms": seen["p50_refusal_ms"],
        "client_p99_ms": seen["p99_refusal_ms"],
    }


async def client(target: str, calls: int, kind: str) -> dict[str, Any]:
    """`aigc bench` in its own process: `calls` image calls, CONCURRENCY at a time."""
    args = ["--workload", f"image:{MODEL},count=8", "--concurrency", str(CONCURRENCY)]
    args += ["--num-requests", str(calls)]
    return await procs.bench(target, RESULTS / "refusal-cost" / kind, args)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in ("bare", "gateway"):
        mine = [r for r in runs if r["kind"] == kind]
        out[kind] = {k: statistics.median(r[k] for r in mine) for k in mine[0] if k != "kind"}
    return out


def table(s: dict[str, dict[str, float]]) -> str:
    lines = [
        "| server | CPU per refused call, us (all threads) | event loop thread, us | "
        "refusals/s | client p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for kind, name in (("bare", "bare grpc.aio abort"), ("gateway", "gateway front end")):
        r = s[kind]
        lines.append(
            f"| {name} | {r['server_cpu_us']:.0f} | {r['loop_cpu_us']:.0f} | "
            f"{r['calls_per_s']:.0f} | {r['client_p50_ms']:.1f} / {r['client_p99_ms']:.1f} |"
        )
    g, b = s["gateway"], s["bare"]
    lines.append(
        f"\nGateway / bare: CPU {g['server_cpu_us'] / b['server_cpu_us']:.2f}x, event loop "
        f"{g['loop_cpu_us'] / b['loop_cpu_us']:.2f}x."
    )
    return "\n".join(lines)


async def run(calls: int, repeats: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(repeats):
        for kind in ("bare", "gateway"):
            runs.append(await measure(kind, calls))
            print(f"[refusal-cost] {runs[-1]}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.refusal_cost")
    p.add_argument("--calls", type=int, default=20000, help="refused calls per measurement")
    p.add_argument("--repeats", type=int, default=3, help="alternating measurements per server")
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m load_tests.refusal_cost " + " ".join(given)
    meta = {"command": command.strip(), **facts()}
    runs = asyncio.run(run(args.calls, args.repeats))
    summary = summarize(runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "refusal-cost.json").write_text(
        json.dumps({**meta, "runs": runs, "median": summary}, indent=2) + "\n"
    )
    text = f"{heading(meta)}\n\n{table(summary)}\n"
    (RESULTS / "refusal-cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
