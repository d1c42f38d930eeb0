"""Admission on the real stack: deadline-aware refusal, tiers, and the expired counter.

All three use `slow-text` (an echo model that sends a word every 250 ms), so how long a request
runs follows from its prompt. The gate's bound and rate are read from the session gateway's
own gate for that model (they depend on what earlier tests taught it); each test sizes its
requests from them, states the gate's estimate as a precondition, then checks what the client
sees and what the metrics count.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from aigc import AsyncClient
from gateway.gate import CostGate
from tests.conditions import wait_until
from tests.integration.helpers import retry_delay_s, rpc_error, scrape, total

pytestmark = pytest.mark.integration
MODEL = "slow-text"


def gate_of(stack: Any) -> CostGate:
    gate: CostGate = stack.gateway.plane.admission.gates[MODEL]
    return gate


def idle(stack: Any) -> None:
    """Earlier calls to slow-text have all ended at the gateway (bounded wait)."""
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"
    gate = gate_of(stack)

    def quiet() -> bool:
        return total(scrape(url), "aigc_inflight_requests", model=MODEL) == 0 and (
            gate.inflight == 0 and gate.queued == 0
        )

    assert wait_until(quiet, timeout_s=60), (gate.inflight, gate.queued)


def words(n: int) -> str:
    return " ".join(["w"] * n)


def test_a_deadline_shorter_than_the_queue_is_refused_at_once_with_retry_info(stack, client):
    """Work ahead of a request that would take longer to drain than its deadline: the gateway
    refuses it at once (RESOURCE_EXHAUSTED with a RetryInfo delay), instead of admitting it to
    run out of time (DEADLINE_EXCEEDED) in the queue."""
    idle(stack)
    gate = gate_of(stack)
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"
    # The largest request the model's limits allow: 4 x 512 tokens + 16000 chars / 4. It is
    # larger than the in-flight bound, so it runs alone, and everything after it waits.
    big = client.stream_text(words(8000), model=MODEL, max_tokens=512, n=4)
    assert next(big).delta == "w"  # admitted and streaming (8000 words: over 30 minutes)
    try:
        small_cost = 2 + len("hello") / 4
        wait, _ = gate.estimate(small_cost)
        assert wait > 0.5, (wait, gate.inflight, gate.bound, gate.rate)  # a real queue ahead
        before = scrape(url)
        err = rpc_error(
            lambda: client.generate_text("hello", model=MODEL, max_tokens=2, timeout=wait / 2)
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        delay = retry_delay_s(err)
        assert delay is not None and delay > 0, err
        after = scrape(url)
        refused = "aigc_admission_refused_requests_total"
        assert (
            total(after, refused, model=MODEL, tier="interactive")
            - total(before, refused, model=MODEL, tier="interactive")
            == 1
        )
        decided = "aigc_admission_wait_seconds_count"
        assert (
            total(after, decided, model=MODEL, outcome="refused")
            - total(before, decided, model=MODEL, outcome="refused")
            == 1
        )
        # refused before admission: no admitted request of this model ran out of time
        expired = "aigc_admitted_expired_total"
        assert total(after, expired, model=MODEL) == total(before, expired, model=MODEL)
    finally:
        big.cancel()
    idle(stack)


def test_a_batch_flood_does_not_block_an_interactive_call(stack, target):
    """Batch work fills at most (1 - batch_reserve) of the in-flight bound and never queues:
    a flood of batch streams gets some admitted and the rest refused at once, and an
    interactive stream sent into the flood is admitted and streams."""
    idle(stack)
    gate = gate_of(stack)
    # eight batch requests would fill the whole bound: the reserve keeps the last ones out
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"

    def busy_refusals() -> float:
        labels = {"model": MODEL, "tier": "batch", "reason": "busy"}
        return total(scrape(url), "aigc_admission_refused_requests_total", **labels)

    busy_before = busy_refusals()
    tokens = max(1, min(512, int(gate.bound / 8)))
    flood = 24
    assert flood * tokens > gate.bound  # the flood is more than the model may hold

    async def run() -> tuple[list[grpc.StatusCode], str]:
        async with AsyncClient(target, timeout=120) as c:
            calls = [
                c.stream_text(words(tokens), model=MODEL, max_tokens=tokens, priority="batch")
                for _ in range(flood)
            ]
            outcomes: list[grpc.StatusCode] = []
            for call in calls:  # every batch call is admitted (first word) or refused
                try:
                    await call.read()
                    outcomes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as err:
                    outcomes.append(err.code())
            vip = c.stream_text("hello there", model=MODEL, max_tokens=2)
            try:
                first = await vip.read()
                return outcomes, first.delta
            finally:
                vip.cancel()
                for call in calls:
                    call.cancel()

    outcomes, delta = asyncio.run(run())
    assert delta == "hello"  # the interactive call was admitted and streamed
    assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, outcomes
    assert outcomes.count(grpc.StatusCode.OK) >= 1  # batch work used idle capacity
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 1  # but not all of it
    assert busy_refusals() > busy_before
    idle(stack)


def test_admitted_work_that_runs_out_of_time_is_counted_as_expired(stack, client):
    """An idle model always takes one request, even one the estimate says is too slow (only a
    completion can correct a stale estimate). When its deadline passes while it runs, the
    client gets DEADLINE_EXCEEDED and aigc_admitted_expired_total counts it."""
    idle(stack)
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"
    expired = "aigc_admitted_expired_total"
    before = total(scrape(url), expired, model=MODEL, tier="interactive")
    admitted = "aigc_admitted_requests_total"
    admitted_before = total(scrape(url), admitted, model=MODEL, tier="interactive")
    # 40 words at 250 ms each: 10 s of work against a 1.5 s deadline
    err = rpc_error(lambda: client.generate_text(words(40), model=MODEL, timeout=1.5))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    def counted() -> bool:
        return total(scrape(url), expired, model=MODEL, tier="interactive") - before == 1

    assert wait_until(counted), scrape(url)
    assert total(scrape(url), admitted, model=MODEL, tier="interactive") - admitted_before == 1
    idle(stack)
