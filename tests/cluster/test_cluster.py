"""Multi-node behaviour on a real Ray cluster (conftest.py): where replicas run, autoscaling
under a load step, and the loss of a worker node under load.

Every check reads a state (Serve's status, the gateway's gauge, gRPC health, call results)
and polls it with a bound; no test asserts how long anything took. Times are printed.
The node-loss test removes a worker, so it runs last.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from aigc import Client
from load_tests.cluster import RayCluster
from load_tests.procs import AigcUp
from load_tests.wait import wait_for
from tests.integration.helpers import scrape, total

pytestmark = pytest.mark.cluster
WORKERS = {"w1", "w2"}
FIXED = [("text", "echo-text"), ("image", "echo-image"), ("audio", "echo-audio")]
STREAM_WORDS = [f"w{i}" for i in range(30)]  # 30 x 0.05 s: a stream lasts about 1.5 s


def gauge(up: AigcUp, model: str, state: str = "running") -> int:
    return int(total(scrape(up.metrics_url), "aigc_model_replicas", model=model, state=state))


@dataclass
class Load:
    """Steady calls from threads through the real client; outcomes counted per kind and code.
    Anything else a call raises (a failed assertion on its reply, a client bug) ends its
    thread and is kept: `finish()` re-raises it, so no failure dies silently with a thread."""

    target: str
    stop: threading.Event = field(default_factory=threading.Event)
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    messages: dict[str, Counter[str]] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)

    def record(self, kind: str, code: str, message: str = "") -> None:
        with self.lock:
            self.codes.setdefault(kind, Counter())[code] += 1
            if message:
                self.messages.setdefault(kind, Counter())[f"{code}: {message}"] += 1

    def ok(self, kind: str) -> int:
        with self.lock:
            return self.codes.get(kind, Counter())["OK"]

    def failed(self) -> bool:
        with self.lock:
            return bool(self.errors)

    def until(self, predicate: Callable[[], Any], timeout_s: float) -> bool:
        """wait_for under this load: False at once if a load thread died (finish() raises it)."""
        return bool(wait_for(lambda: self.failed() or predicate(), timeout_s)) and not self.failed()

    def add(self, kind: str, call: Callable[[Client], str], pause_s: float = 0.0) -> None:
        def calls() -> None:
            with Client(self.target, timeout=60) as client:
                while not self.stop.is_set():
                    pause = pause_s
                    try:
                        self.record(kind, call(client))
                    except grpc.RpcError as err:
                        self.record(kind, err.code().name, err.details() or "")
                        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            pause = max(pause, 0.1)  # refused: back off, as a client would
                    if pause:
                        self.stop.wait(pause)  # pacing of the load, not synchronisation

        def loop() -> None:
            try:
                calls()
            except BaseException as exc:  # kept for finish(), which raises it in the test
                with self.lock:
                    self.errors.append((threading.current_thread().name, exc))

        t = threading.Thread(target=loop, name=f"load-{kind}-{len(self.threads)}", daemon=True)
        self.threads.append(t)
        t.start()

    def finish(self) -> dict[str, dict[str, int]]:
        """Stops the load and returns the codes; raises what any load thread raised."""
        self.stop.set()
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), f"{t.name} hangs"
        if self.errors:
            names = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in self.errors)
            raise BaseExceptionGroup(
                f"{len(self.errors)} load thread(s) died ({names})",
                [exc for _, exc in self.errors],
            )
        return {k: dict(v) for k, v in self.codes.items()}


def image_call(model: str) -> Callable[[Client], str]:
    def call(client: Client) -> str:
        resp = client.generate_images(model=model, count=1)
        assert len(resp.images) == 1, f"{len(resp.images)} images for count=1"
        return "OK"

    return call


def audio_call(client: Client) -> str:
    resp = client.synthesize("hello there", model="echo-audio")
    assert resp.audio, "no audio"
    return "OK"


def stream_call(client: Client) -> str:
    """A stream ends complete (every word, then a finish reason) or with an error; a stream
    that ends early without one is a silent truncation."""
    prompt = " ".join(STREAM_WORDS)
    text, finished = "", False
    for chunk in client.stream_text(prompt, model="echo-text", max_tokens=64):
        text += chunk.delta
        finished = finished or bool(chunk.finish_reason)
    return "OK" if text == prompt and finished else "TRUNCATED"


def test_replicas_spread_over_both_workers(ray_cluster: RayCluster, aigc_up: AigcUp) -> None:
    """Serve places each fixed two-replica model's replicas on both workers (its SPREAD
    placement), none on the zero-CPU head; read from Serve's status, not assumed."""
    for app, model in FIXED:
        placed = wait_for(lambda a=app, m=model: ray_cluster.running_by_node(a, m), 60)
        print(f"{model}: running replicas by node {placed}")
        assert placed == {"w1": 1, "w2": 1}, (model, placed)
    with Client(aigc_up.target, timeout=30) as client:
        assert client.health() == "SERVING"
        assert len(client.generate_images(model="echo-image", count=2).images) == 2


def test_autoscaling_follows_a_load_step(ray_cluster: RayCluster, aigc_up: AigcUp) -> None:
    """echo-scale (min 1, max 3, one 0.2 s request per batch): a load step makes Serve add
    replicas up to 3, placed on both workers (max_replicas_per_node 2); after the load stops
    it returns to 1. Counts from the gateway's aigc_model_replicas gauge and Serve's status."""
    assert wait_for(lambda: ray_cluster.running_by_node("image", "echo-scale"), 60)
    assert wait_for(lambda: gauge(aigc_up, "echo-scale") == 1, 60), "not at min_replicas"
    load = Load(aigc_up.target)
    t0 = time.monotonic()
    for _ in range(8):
        load.add("scale", image_call("echo-scale"), pause_s=0.01)
    try:
        assert load.until(lambda: gauge(aigc_up, "echo-scale") >= 2, 120), "no replica added"
        t_first = time.monotonic() - t0
        assert load.until(lambda: gauge(aigc_up, "echo-scale") == 3, 120), "not at max_replicas"
        t_max = time.monotonic() - t0
        placed = wait_for(
            lambda: (
                (p := ray_cluster.running_by_node("image", "echo-scale"))
                and sum(p.values()) == 3
                and p
            ),
            60,
        )
    finally:
        codes = load.finish()
    t_stop = time.monotonic()
    assert wait_for(
        lambda: (
            gauge(aigc_up, "echo-scale") == 1
            and sum(ray_cluster.running_by_node("image", "echo-scale").values()) == 1
        ),
        180,
    ), "did not return to min_replicas"
    t_down = time.monotonic() - t_stop
    print(
        f"echo-scale: 2 replicas {t_first:.1f}s and 3 {t_max:.1f}s after the load step, "
        f"back to 1 {t_down:.1f}s after it stopped; placement at 3: {placed}; calls {codes}"
    )
    assert placed and set(placed) == WORKERS and max(placed.values()) <= 2, placed
    assert codes["scale"]["OK"] > 0
    assert set(codes["scale"]) <= {"OK", "RESOURCE_EXHAUSTED"}, codes  # refusals are counted


def test_node_loss_under_load(ray_cluster: RayCluster, aigc_up: AigcUp) -> None:
    """A worker node dies while unary image/audio calls and text streams run: no unary call is
    lost (the gateway retries them on another replica), a stream on the dead node ends with
    UNAVAILABLE saying the replica was lost (no INTERNAL, no hang, no truncation), Serve
    restores every model's replicas on the survivor and gRPC health is SERVING again."""
    for app, model in FIXED:
        assert wait_for(lambda a=app, m=model: ray_cluster.running_by_node(a, m) == {
            "w1": 1, "w2": 1}, 60), model  # fmt: skip
    load = Load(aigc_up.target)
    for _ in range(2):
        load.add("image", image_call("echo-image"), pause_s=0.05)
        load.add("audio", audio_call, pause_s=0.05)
    for _ in range(4):
        load.add("stream", stream_call)
    client = Client(aigc_up.target, timeout=30)
    restored_s: float | None = None
    try:
        assert load.until(lambda: min(load.ok(k) for k in ("image", "audio", "stream")) >= 4, 120)
        before = {k: dict(v) for k, v in load.codes.items()}
        t_kill = time.monotonic()
        ray_cluster.nodes["w2"].kill()

        def restored() -> bool:
            return (
                all(
                    ray_cluster.running_by_node(a, m) == {"w1": 2} and gauge(aigc_up, m) == 2
                    for a, m in FIXED
                )
                and client.health() == "SERVING"
            )

        assert wait_for(restored, 240), {m: ray_cluster.running_by_node(a, m) for a, m in FIXED}
        restored_s = time.monotonic() - t_kill
        ok_at_restore = {k: load.ok(k) for k in ("image", "audio", "stream")}
        # the restored replicas serve: every kind completes more calls afterwards
        assert load.until(
            lambda: all(load.ok(k) >= ok_at_restore[k] + 4 for k in ok_at_restore), 120
        ), load.codes
    finally:
        codes = load.finish()
        client.close()
    sent = {k: sum(v.values()) for k, v in codes.items()}
    print(f"before the loss: {before}")
    print(f"sent {sent}; by code {codes}; messages {dict(load.messages)}")
    print(f"replicas restored on the survivor and health SERVING {restored_s:.1f}s after the loss")
    assert codes["image"] == {"OK": sent["image"]}, load.messages  # 0 unary calls lost
    assert codes["audio"] == {"OK": sent["audio"]}, load.messages
    stream_failures = {c: n for c, n in codes["stream"].items() if c != "OK"}
    assert set(stream_failures) <= {"UNAVAILABLE"}, load.messages  # no INTERNAL, no truncation
    assert stream_failures.get("UNAVAILABLE", 0) >= 1, "no stream was on the lost node"
    for message in load.messages.get("stream", Counter()):
        assert "replica was lost" in message, message
    with Client(aigc_up.target, timeout=30) as c:
        for service in ("", "aigc.v1.TextGeneration", "aigc.v1.ImageGeneration"):
            assert c.health(service) == "SERVING", service
