"""Overload, auth, TLS, a dying replica, a cancel storm and a graceful shutdown, on the real
stack (fuzzing: test_fuzz.py).

A second gateway with its own security and admission settings joins the session's Ray
cluster next to the default one, so these tests need no second cluster.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections import Counter
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aigc import AsyncClient, Client
from core.config import parse_config
from gateway.server import build_gateway
from tests.certs import make_pki
from tests.conditions import wait_until
from tests.conftest import LoopThread
from tests.integration.helpers import replica_stats, rpc_error, scrape, total
from tests.tiny_models import stack_config

pytestmark = pytest.mark.integration
KEY = "k" * 32


async def _started(cfg: dict[str, Any]) -> Any:
    """grpc.aio servers belong to the loop that creates them: build on the loop they run on."""
    gw = build_gateway(parse_config(cfg), port=0, metrics_port=0, http_port=-1)
    await gw.start()
    return gw


@pytest.fixture(scope="module")
def side(stack):
    """An event loop of its own for the extra gateways, as if each ran in its own process.
    Serve shares one replica-list subscription per event loop: a second handle to a model on
    the stack gateway's loop waits for the model's *next* replica change before it can route."""
    runner = LoopThread()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def secured(stack, side, tiny_dir, tmp_path_factory):
    """A gateway with API keys, a rate limit, mTLS and a small admission bound on `tiny`."""
    root = tmp_path_factory.mktemp("pki")
    pki = make_pki(root)
    keys = root / "keys.yaml"
    keys.write_text(f"tester: {KEY}\n")
    cfg = copy.deepcopy(stack_config(tiny_dir))
    cfg["gateway"]["security"] = {
        "api_keys_file": str(keys),
        "rate_limit_per_s": 1000,
        "rate_limit_burst": 1000,
        "tls": {
            "cert_file": str(pki["server"].with_suffix(".crt")),
            "key_file": str(pki["server"].with_suffix(".key")),
            "client_ca_file": str(pki["ca"].with_suffix(".crt")),
        },
    }
    for m in cfg["models"]:
        if m["name"] == "tiny":
            m["admission"] = {"max_inflight_cost": 100, "max_queued_cost": 100}
    gw = side.run(_started(cfg))
    yield gw, pki
    side.run(gw.stop(0))


def _creds(pki, with_client_cert: bool = True) -> grpc.ChannelCredentials:
    ca = pki["ca"].with_suffix(".crt").read_bytes()
    if not with_client_cert:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=pki["client"].with_suffix(".key").read_bytes(),
        certificate_chain=pki["client"].with_suffix(".crt").read_bytes(),
    )


def test_api_keys_over_mutual_tls(secured):
    gw, pki = secured
    target = f"127.0.0.1:{gw.port}"
    with Client(target, api_key=KEY, credentials=_creds(pki), timeout=30) as c:
        assert c.generate_text("hello", max_tokens=3).completions
        assert wait_until(lambda: c.health() == "SERVING")  # every model of the stack is ready
    with Client(target, credentials=_creds(pki), timeout=30) as c:
        err = rpc_error(lambda: c.generate_text("hello", max_tokens=3))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "missing" in err.details()
        err = rpc_error(lambda: list(c.stream_text("hello", max_tokens=3)))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert c.health() == "SERVING"  # probes need no key
    with Client(target, api_key="x" * 32, credentials=_creds(pki), timeout=30) as c:
        err = rpc_error(lambda: c.generate_images(count=1))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "invalid" in err.details()
        assert "x" * 32 not in err.details()  # the key is never echoed


def test_mtls_refuses_clients_without_a_certificate_and_plaintext(secured):
    gw, pki = secured
    target = f"127.0.0.1:{gw.port}"
    with Client(target, api_key=KEY, credentials=_creds(pki, False), timeout=10) as c:
        err = rpc_error(lambda: c.generate_text("hello", max_tokens=3))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    with Client(target, api_key=KEY, timeout=10) as c:
        assert rpc_error(lambda: c.list_models()).code() == grpc.StatusCode.UNAVAILABLE


def test_overload_is_refused_fast_and_nothing_else_fails(secured):
    """About 4x the admission bound at once: only OK or RESOURCE_EXHAUSTED, then recovery."""
    gw, pki = secured
    target = f"127.0.0.1:{gw.port}"
    codes: Counter[grpc.StatusCode] = Counter()
    retry_info = []

    async def burst() -> None:
        async with AsyncClient(target, api_key=KEY, credentials=_creds(pki), timeout=60) as c:

            async def one(i: int) -> None:
                try:
                    await c.generate_text(f"load {i}", max_tokens=20, seed=i)
                    codes[grpc.StatusCode.OK] += 1
                except grpc.aio.AioRpcError as err:
                    codes[err.code()] += 1
                    status = rpc_status.from_call(err)
                    if status is not None:
                        for d in status.details:
                            retry_info.append(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR))

            # each costs ~22 units against an in-flight bound of 100 and a queue of 100
            await asyncio.gather(*[one(i) for i in range(40)])

    asyncio.run(burst())
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] > 0 and codes[grpc.StatusCode.OK] > 0
    assert retry_info and all(retry_info)
    with Client(target, api_key=KEY, credentials=_creds(pki), timeout=30) as c:
        assert c.generate_text("after the burst", max_tokens=3).completions  # recovered


def test_gateways_in_front_of_the_same_models_count_each_other(stack, secured):
    """Two gateways (the session's and `secured`) find each other through Ray and each admits
    against half of every model's bound; the count is exported as aigc_gateways."""
    gw, _ = secured
    mine, theirs = stack.gateway.plane.admission.gates["tiny"], gw.plane.admission.gates["tiny"]

    def counted() -> bool:
        return mine.gateways >= 2 and theirs.gateways >= 2

    assert wait_until(counted, timeout_s=60), (mine.gateways, theirs.gateways)
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"
    assert total(scrape(url), "aigc_gateways") >= 2
    alone = mine.replicas * mine.requests_per_replica * mine.mean_cost
    assert mine.bound == pytest.approx(alone / mine.gateways)


def test_rate_limit_per_key(side, tiny_dir, tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"tester: {KEY}\n")
    cfg = copy.deepcopy(stack_config(tiny_dir))
    cfg["gateway"]["security"] = {
        "api_keys_file": str(keys), "rate_limit_per_s": 0.5, "rate_limit_burst": 2,
    }  # fmt: skip
    gw = side.run(_started(cfg))
    now = [1000.0]  # the rate buckets' clock, moved by the test alone: no real time counts
    gw.plane.auth.clock = lambda: now[0]
    try:
        with Client(f"127.0.0.1:{gw.port}", api_key=KEY, timeout=30) as c:
            c.list_models()
            c.list_models()  # the burst of 2
            err = rpc_error(c.list_models)
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
            assert "rate limit" in err.details()
            now[0] += 1.5  # 0.75 of a token at 0.5/s: still refused
            assert rpc_error(c.list_models).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            now[0] += 0.5  # one whole token: one call, then refused again
            c.list_models()
            assert rpc_error(c.list_models).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        side.run(gw.stop(0))


def test_cancel_storm_stops_generation(stack, target):
    before = replica_stats("tiny", "text")
    ends: Counter[grpc.StatusCode] = Counter()
    # Streams sized so that about four fit in the gate's in-flight bound now (it is counted in
    # cost, learned from earlier requests, and shared with any other gateway of the session).
    gate = stack.gateway.plane.admission.gates["tiny"]
    tokens = max(8, min(100, int(gate.bound / 4) - 4))

    async def storm() -> int:
        async with AsyncClient(target, timeout=60) as c:
            calls = [c.stream_text(f"storm {i}", max_tokens=tokens, seed=i) for i in range(100)]

            async def first(call: Any) -> bool:
                try:
                    await call.read()
                    return True
                except grpc.aio.AioRpcError as err:
                    ends[err.code()] += 1
                    return False

            # As soon as two are generating, cancel everything: the gate decided each call on
            # arrival (running, queued or refused), so the running ones are mid-generation.
            started = 0
            tasks = [asyncio.ensure_future(first(call)) for call in calls]
            for done in asyncio.as_completed(tasks):
                started += await done
                if started == 2:
                    break
            for call in calls:
                call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return started

    started = asyncio.run(storm())
    assert started == 2, (started, ends)
    assert set(ends) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}  # admission, never an error

    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"

    def settled() -> bool:
        """Every call has ended at the gateway (so each Serve request was cancelled or done),
        and the replica runs and queues no sequence. (Requests the gateway admitted while their
        cancellation was still in flight may run a few steps first; they must stop too.)"""
        if total(scrape(url), "aigc_inflight_requests", model="tiny") != 0:
            return False
        s = replica_stats("tiny", "text")
        return s["running_sequences"] == 0 and s["waiting_sequences"] == 0

    assert wait_until(settled, timeout_s=60), replica_stats("tiny", "text")
    generated = replica_stats("tiny", "text")["generated_tokens_total"]
    assert generated - before["generated_tokens_total"] < 100 * tokens  # most never ran to the end
    # streams cancelled mid-generation were counted by the engine (some may have finished first)
    after = replica_stats("tiny", "text")["cancelled_requests_total"]
    assert after > before["cancelled_requests_total"]
    assert wait_until(lambda: total(scrape(url), "aigc_inflight_requests") == 0)


def _kill_one_replica(app: str, deployment: str) -> None:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app}#{deployment}#")
    ]
    assert names, "no replica actor found"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)


@pytest.mark.slow
def test_replica_death_under_load_costs_a_retry_not_a_hang(stack, target):
    """A replica killed while calls are in flight: every call ends (none hangs), the calls that
    were running on it are retried once on the replica Serve starts in its place, so at most
    the calls in flight at the kill end UNAVAILABLE, and calls made after the kill succeed."""
    results: list[Any] = []
    killed_at: list[int] = []

    def worker(i: int) -> None:
        with Client(target, timeout=60) as c:
            for j in range(15):
                try:
                    c.generate_images(model="echo-image", count=1, seed=i * 100 + j)
                    results.append(grpc.StatusCode.OK)
                except grpc.RpcError as err:
                    results.append(err.code())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    # kill while the load runs: after its first calls, with most still to come
    assert wait_until(lambda: len(results) >= 8, timeout_s=60), results
    killed_at.append(len(results))
    _kill_one_replica("image", "echo-image")
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert len(results) == 60
    assert killed_at[0] < 60 - 4, "the load ended before the kill"
    codes = Counter(results)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.UNAVAILABLE] <= 4, codes  # at most one per caller in flight
    assert grpc.StatusCode.OK in results[killed_at[0] + 4 :], codes  # served after the kill

    def back() -> bool:
        try:
            with Client(target, timeout=10) as c:
                return bool(c.generate_images(model="echo-image", count=1).images)
        except grpc.RpcError:
            return False

    assert wait_until(back, timeout_s=120, step_s=1.0), "the replica did not come back"


def test_graceful_shutdown_finishes_in_flight_work(side, tiny_dir):
    """A call in flight when the gateway stops is still running after the drain delay, when
    the server refuses new calls: the grace period, not the drain delay, lets it finish."""
    cfg = copy.deepcopy(stack_config(tiny_dir))
    cfg["gateway"]["drain_delay_s"] = 0.5
    gw = side.run(_started(cfg))
    target = f"127.0.0.1:{gw.port}"
    # slow-text waits 250 ms before each word: this call runs at least 6 s once it reaches the
    # replica, which is after the gateway counts it in flight, which is before stop() begins
    words = " ".join(["word"] * 24)
    outcome: dict[str, Any] = {}

    def long_call() -> None:
        with Client(target, timeout=60) as c:
            try:
                reply = c.generate_text(words, model="slow-text", max_tokens=24)
                outcome["text"] = reply.completions[0].text
            except grpc.RpcError as err:  # shown by the assertions below
                outcome["error"] = f"{err.code().name}: {err.details()}"

    def in_flight() -> float:
        return gw.metrics.inflight.labels("text", "slow-text", "grpc")._value.get()

    def refused() -> bool:
        """A new call is refused: the drain delay is over and the grace period has begun."""
        with Client(target, timeout=5) as c:
            try:
                c.list_models()
            except grpc.RpcError as err:
                return err.code() == grpc.StatusCode.UNAVAILABLE
        return False

    t = threading.Thread(target=long_call)
    t.start()
    with Client(target, timeout=10) as c:
        assert wait_until(lambda: in_flight() == 1)
        stopping = asyncio.run_coroutine_threadsafe(gw.stop(30), side.loop)
        assert wait_until(lambda: c.health() == "NOT_SERVING")  # balancers stop sending first
    assert wait_until(refused)
    # the condition this test is about: past the drain delay, the call is still running
    assert in_flight() == 1 and not outcome, outcome
    stopping.result(60)
    t.join(60)
    assert outcome == {"text": words}  # the in-flight call completed in the grace period
    with Client(target, timeout=5) as c:
        assert rpc_error(c.list_models).code() == grpc.StatusCode.UNAVAILABLE
