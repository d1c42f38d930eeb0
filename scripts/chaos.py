"""An independent overload / cancel-storm / replica-kill / fuzz run against a running gateway.

    .venv/bin/python scripts/chaos.py --target 127.0.0.1:50051              # any gateway
    .venv/bin/python scripts/chaos.py --target 127.0.0.1:50051 --kill       # + kill replicas
                                                                            #   (on the Ray node)

Every request is accounted for: it ends with a status, or it is counted as hung (no answer
within its deadline + 10 s). Prints a JSON report: status counts per phase, latencies of
accepted and refused requests, requests lost and hung, recovery times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import urllib.request
from collections import Counter
from typing import Any

import grpc
import numpy as np

from aigc import AsyncClient
from aigc.v1 import audio_pb2, image_pb2, text_pb2


class Tally:
    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self.ok_latency: list[float] = []
        self.refused_latency: list[float] = []
        self.sent = 0
        self.hung = 0

    async def run(self, coro: Any, deadline_s: float) -> None:
        self.sent += 1
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(coro, deadline_s + 10)
            self.codes["OK"] += 1
            self.ok_latency.append(time.perf_counter() - t0)
        except grpc.aio.AioRpcError as err:
            self.codes[err.code().name] += 1
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self.refused_latency.append(time.perf_counter() - t0)
        except TimeoutError:
            self.hung += 1

    def report(self) -> dict[str, Any]:
        def pct(xs: list[float], q: float) -> float | None:
            return round(float(np.percentile(xs, q)) * 1000, 1) if xs else None

        return {
            "sent": self.sent,
            "codes": dict(self.codes),
            "lost": self.sent - sum(self.codes.values()) - self.hung,
            "hung": self.hung,
            "accepted_p50_ms": pct(self.ok_latency, 50),
            "accepted_p99_ms": pct(self.ok_latency, 99),
            "refused_p99_ms": pct(self.refused_latency, 99),
        }


async def throughput(c: AsyncClient, seconds: float, conc: int) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < end:
            try:
                await c.generate_text("A computer is", max_tokens=16, timeout=30)
                done += 1
            except grpc.aio.AioRpcError:
                pass

    await asyncio.gather(*[loop() for _ in range(conc)])
    return done / seconds


async def overload(c: AsyncClient, n: int, deadline: float) -> dict[str, Any]:
    t = Tally()
    await asyncio.gather(
        *[
            t.run(c.generate_text(f"load {i}", max_tokens=64, seed=i, timeout=deadline), deadline)
            for i in range(n)
        ]
    )
    return t.report()


async def recovery(c: AsyncClient, baseline: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 120:
        if await throughput(c, 1.0, 8) >= 0.8 * baseline:
            return round(time.perf_counter() - t0, 2)
    return float("inf")


def inflight(metrics_url: str | None) -> float | None:
    if not metrics_url:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "aigc_inflight_requests"
    )


async def cancel_storm(c: AsyncClient, n: int, metrics_url: str | None) -> dict[str, Any]:
    calls = [c.stream_text(f"storm {i}", max_tokens=200, seed=i, timeout=60) for i in range(n)]
    first = 0
    for call in calls[:16]:
        await call.read()
        first += 1
    for call in calls:
        call.cancel()
    t0 = time.perf_counter()
    left = inflight(metrics_url)
    while left and time.perf_counter() - t0 < 30:
        await asyncio.sleep(0.1)
        left = inflight(metrics_url)
    return {"streams": n, "read_first_chunk": first, "gateway_inflight_after": left,
            "seconds_to_zero_inflight": round(time.perf_counter() - t0, 2)}  # fmt: skip


async def kill_under_load(c: AsyncClient) -> dict[str, Any]:
    import ray

    t = Tally()

    async def load() -> None:
        for i in range(60):
            await t.run(c.generate_images(count=2, seed=i, timeout=60), 60)
            await t.run(c.synthesize("Hello there.", seed=i, timeout=60), 60)

    task = asyncio.create_task(load())
    await asyncio.sleep(1.0)
    killed = []
    for a in ray.util.list_named_actors(all_namespaces=True):
        if a["name"].startswith(("SERVE_REPLICA::image#", "SERVE_REPLICA::audio#")):
            ray.kill(ray.get_actor(a["name"], namespace="serve"), no_restart=True)
            killed.append(a["name"].split("#")[1])
    await task
    return {"killed": killed, **t.report()}


async def fuzz(c: AsyncClient, n: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    words = ["", " ", "hello", "\x00", "🙂" * 30, "x" * 30_000, "a b c", "\ud7ff"]
    t = Tally()
    for _ in range(n):
        kind = rnd.choice(["text", "image", "audio"])
        if kind == "text":
            req = text_pb2.GenerateTextRequest(
                model=rnd.choice(["", "nope", "faces"]), prompt=rnd.choice(words)
            )
            if rnd.random() < 0.7:
                req.max_tokens = rnd.randint(-10, 20)
            if rnd.random() < 0.5:
                req.temperature = rnd.choice([-1.0, 0.0, 0.7, 5.0, float("nan"), float("inf")])
            await t.run(c.stubs.text.Generate(req, timeout=30), 30)
        elif kind == "image":
            img = image_pb2.GenerateImageRequest(
                model=rnd.choice(["", "fashion", "nope"]),
                count=rnd.randint(-2, 100),
                label=rnd.choice(["", "sneaker", "cat", "\x00"]),
                format=rnd.randint(-1, 4),
            )
            await t.run(c.stubs.image.Generate(img, timeout=30), 30)
        else:
            aud = audio_pb2.SynthesizeRequest(
                text=rnd.choice(words)[:3000], voice=rnd.choice(["", "heart", "nobody"]),
                format=rnd.randint(-1, 3),
            )  # fmt: skip
            if rnd.random() < 0.5:
                aud.speed = rnd.choice([0.0, 0.5, 1.0, 9.0, float("nan")])
            await t.run(c.stubs.audio.Synthesize(aud, timeout=30), 30)
    return t.report()


async def main(a: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"target": a.target, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    async with AsyncClient(a.target, api_key=a.api_key) as c:
        report["baseline_req_per_s"] = round(await throughput(c, 5.0, 8), 1)
        report["overload"] = await overload(c, a.overload_requests, a.deadline)
        report["recovery_s"] = await recovery(c, report["baseline_req_per_s"])
        report["cancel_storm"] = await cancel_storm(c, 100, a.metrics_url)
        if a.kill:
            import ray

            ray.init(address="auto", namespace="aigc", log_to_driver=False)
            report["replica_kill"] = await kill_under_load(c)
            report["recovery_after_kill_s"] = await recovery(c, report["baseline_req_per_s"])
        report["fuzz"] = await fuzz(c, a.fuzz_requests, a.seed)
        report["health_after"] = await c.health()
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--metrics-url", default="http://127.0.0.1:9464/metrics")
    p.add_argument("--api-key", default=None)
    p.add_argument("--overload-requests", type=int, default=512)
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--fuzz-requests", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kill", action="store_true", help="kill image and audio replicas under load")
    args = p.parse_args()
    print(json.dumps(asyncio.run(main(args)), indent=2))
