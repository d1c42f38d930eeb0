"""Locust ramp and soak tests over the aigc.v1 gRPC API (the same workload specs as aigc bench).

    pip install locust
    locust -f load_tests/locustfile.py --headless --host 127.0.0.1:50051 --csv soak

Environment: AIGC_WORKLOAD (";"-separated `aigc bench --workload` specs, default "text"),
AIGC_API_KEY, AIGC_TIMEOUT (s, default 60), and the shape: AIGC_USERS (peak users, default 32),
AIGC_RAMP_S (linear ramp, default 60), AIGC_SOAK_S (hold at peak, default 600; 0 = ramp only).
Each call is reported as `<modality> <method>`; streams also report `... TTFT` so Locust's
percentiles show time to first chunk next to end-to-end latency.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import LoadTestShape, User, constant, task

from aigc.client import Client
from load_tests.bench.workload import Workload, parse_item

grpc_gevent.init_gevent()  # grpc's blocking calls must yield to Locust's gevent loop

_INDEX = itertools.count()


def _workload() -> Workload:
    specs = [s for s in os.environ.get("AIGC_WORKLOAD", "text").split(";") if s.strip()]
    return Workload([parse_item(s) for s in specs], seed=int(os.environ.get("AIGC_SEED", "0")))


class AigcUser(User):
    """One simulated client: sends the next request of the workload as soon as the last ends."""

    wait_time = constant(0)
    host = "127.0.0.1:50051"

    def on_start(self) -> None:
        timeout = float(os.environ.get("AIGC_TIMEOUT", "60"))
        self.client = Client(self.host, api_key=os.environ.get("AIGC_API_KEY"), timeout=timeout)
        self.workload = _workload()

    def on_stop(self) -> None:
        self.client.close()

    def _fire(self, name: str, start: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exc,
            context={},
        )

    @task
    def call(self) -> None:
        planned = self.workload.request(next(_INDEX))
        item = planned.item
        stubs: Any = {"text": self.client.stubs.text, "image": self.client.stubs.image}
        stub = stubs.get(item.modality, self.client.stubs.audio)
        method = getattr(stub, item.method)
        name = f"{item.modality} {item.method}"
        kw = {"timeout": self.client.timeout, "metadata": self.client.metadata}
        start = time.perf_counter()
        length = 0
        try:
            if item.stream:
                first = True
                for message in method(planned.request, **kw):
                    if first:
                        self._fire(f"{name} TTFT", start, 0, None)
                        first = False
                    length += message.ByteSize()
            else:
                length = method(planned.request, **kw).ByteSize()
        except grpc.RpcError as err:
            self._fire(name, start, length, err)
            return
        self._fire(name, start, length, None)


class RampThenSoak(LoadTestShape):
    """Linear ramp to AIGC_USERS over AIGC_RAMP_S, then hold for AIGC_SOAK_S, then stop."""

    def tick(self) -> tuple[int, float] | None:
        users = int(os.environ.get("AIGC_USERS", "32"))
        ramp = float(os.environ.get("AIGC_RAMP_S", "60"))
        soak = float(os.environ.get("AIGC_SOAK_S", "600"))
        t = self.get_run_time()
        if t > ramp + soak:
            return None
        now = users if ramp <= 0 else max(1, min(users, round(users * t / ramp)))
        return now, max(1.0, users / max(ramp, 1.0))
