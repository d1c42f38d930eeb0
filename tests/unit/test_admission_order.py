"""CostGate, who goes first and in what order: interactive before batch work, gateways sharing
a model, FIFO waiting, deadlines and cancellation while queued, and the metrics counters.
Deterministic: see tests/unit/admission_fakes.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from gateway.gate import (
    REFUSED_BUSY,
    REFUSED_DEADLINE,
    CostGate,
)
from tests.unit.admission_fakes import (
    FAR,
    INT,
    B,
    Clock,
    FakeModel,
    counts,
    make_gate,
    refuse_now,
    settle,
)


def test_batch_uses_idle_capacity_but_leaves_a_reserve():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, requests_per_replica=8, max_queue_wait_s=100)  # batch bound 6
        model = FakeModel(gate)
        for k in range(6):
            model.submit(f"b{k}", p=B)
        await settle()
        assert gate.inflight == 6 and gate.queued == 0  # idle capacity: batch runs at once
        err = refuse_now(gate, 1, FAR, B)  # beyond the batch share: refused, never queued
        # (6 + 1 - 6) / 8 s until it would fit if room freed smoothly, + one batch (4) at 8/s
        assert err.details["retry_after_s"] == pytest.approx(0.125 + 0.5)
        assert counts(gate).refusals[(REFUSED_BUSY, B)] == 1
        model.submit("i0")
        model.submit("i1")
        await settle()
        assert model.started[-2:] == ["i0", "i1"]  # the reserve: interactive starts at once
        model.submit("i2")  # the bound is full: waits its turn
        await settle()
        assert gate.queued == 1
        await model.finish_oldest()
        assert model.started[-1] == "i2" and gate.inflight == 8
        refuse_now(gate, 1, FAR, B)
        assert counts(gate).refusals[(REFUSED_BUSY, B)] == 2
        await model.finish_all()
        assert counts(gate).admissions == Counter({INT: 3, B: 6})

    asyncio.run(main())


def test_batch_is_refused_while_interactive_work_waits():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, requests_per_replica=8, max_queue_wait_s=100, batch_reserve=0)
        model = FakeModel(gate)
        model.submit("big", cost=7)
        model.submit("i0", cost=2)  # 7 + 2 > 8: waits
        await settle()
        assert gate.inflight == 7 and gate.queued == 2
        refuse_now(gate, 0.5, FAR, B)  # 7 + 0.5 would fit, but i0 waits
        model.submit("i1", cost=0.5)  # interactive work queues behind i0 (FIFO)
        await settle()
        assert gate.queued == 2.5
        await model.finish_all()
        assert model.started == ["big", "i0", "i1"]

    asyncio.run(main())


def test_under_overload_batch_is_refused_and_interactive_is_not():
    """Arrivals at twice the drain rate, half interactive: the interactive half alone fits, so
    every refusal falls on batch work, nothing admitted expires, and batch work still ran."""

    async def main() -> tuple[FakeModel, CostGate]:
        clock = Clock()
        gate = make_gate(clock, requests_per_replica=8, prior_service_s=0.8)  # 10/s
        model = FakeModel(gate)
        for step in range(200):
            model.submit(f"i{step}", deadline=3.0)
            model.submit(f"b{step}", deadline=3.0, p=B)
            await settle()
            clock.advance(0.1)
            await model.finish_oldest()
        await model.finish_all()
        return model, gate

    model, gate = asyncio.run(main())
    out = model.outcomes
    assert out[("refused", INT)] == 0 and out[("expired", INT)] == 0
    assert out[("expired", B)] == 0
    assert out[("refused", B)] > 150
    assert out[("ok", B)] > 0  # batch used the capacity while the queue was idle
    assert out[("ok", INT)] == 200
    refused = counts(gate).refusals
    assert sum(n for (_, p), n in refused.items() if p == B) == out[("refused", B)]


def test_set_replicas_scales_the_bound_and_the_rate():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, max_queue_wait_s=100)
        model = FakeModel(gate)
        for k in range(6):
            model.submit(f"r{k}")
        await settle()
        assert (gate.bound, gate.rate, gate.inflight, gate.queued) == (4, 4, 4, 2)
        gate.set_replicas(3)
        await settle()
        assert (gate.bound, gate.rate, gate.inflight, gate.queued) == (12, 12, 6, 0)
        gate.set_replicas(0)  # none live yet: queue for the first one
        assert gate.bound == 4
        await model.finish_all()

    asyncio.run(main())


def test_gateways_sharing_a_model_each_count_on_their_share():
    """Two gateways in front of the same replicas: each holds half the bound and estimates
    with half the rate; what each learns from its own completions (its share) is scaled back
    to the model's rate, so the estimate does not shrink twice."""

    async def main() -> None:
        clock = Clock()
        gate = make_gate(
            clock, requests_per_replica=8, max_queue_wait_s="one_batch"
        )  # bound 8, 8/s
        gate.set_gateways(2)
        assert (gate.bound, gate.rate) == (4, 4)
        model = FakeModel(gate)
        for k in range(4):
            model.submit(f"r{k}")
        await settle()
        assert model.started == ["r0", "r1", "r2", "r3"]
        refuse_now(gate, 1, None, INT)  # its half is full (and nothing queues yet)
        clock.advance(1.0)
        await model.finish_oldest()  # 4 in flight for 1 s: this gateway drains 4/s
        assert gate.rate_per_replica == pytest.approx(8.0)  # the model: 2 x 4/s
        assert gate.rate == pytest.approx(4.0)
        gate.set_gateways(1)  # the other gateway left: the whole model is this one's
        assert (gate.bound, gate.rate) == (8, pytest.approx(8.0))
        await model.finish_all()

    asyncio.run(main())


def test_gateways_sharing_a_model_together_queue_one_batch():
    """The queue's wait limit is one batch's drain at the model's whole rate: a gateway with
    half the rate drains half a batch in that time, so two gateways queue one batch between
    them, as one gateway alone would (not one each)."""

    def queued_before_refusal(gateways: int) -> float:
        async def main() -> float:
            clock = Clock()
            gate = make_gate(
                clock, requests_per_replica=8, batch_size=4, max_queue_wait_s="one_batch"
            )  # bound 8, rate 8/s
            gate.set_gateways(gateways)
            gate.learned.samples = 1  # a learned rate: queueing is allowed
            model = FakeModel(gate)
            for k in range(int(gate.bound)):  # this gateway's share of the bound, running
                model.submit(f"run{k}")
            await settle()
            assert gate.inflight == gate.bound and gate.queued == 0
            for k in range(10):  # then queue until the gate refuses
                model.submit(f"wait{k}")
                await settle()
                if model.outcomes[("refused", INT)]:
                    break
            queued = gate.queued
            await model.finish_all()
            return queued

        return asyncio.run(main())

    one, each = queued_before_refusal(1), queued_before_refusal(2)
    assert one == 4  # one batch
    assert each == 2  # half a batch at each of two gateways: one batch in all


def test_the_gateway_registry_counts_live_reports():
    from gateway.peers import GatewayRegistry

    registry = GatewayRegistry()
    assert registry.report("a", 30.0) == 1
    assert registry.report("b", 30.0) == 2
    assert registry.report("a", 30.0) == 2  # a report again is the same gateway
    assert registry.report("stale", -1.0) == 2  # its report has already expired
    assert registry.leave("a") == 1 and registry.leave("a") == 1


def test_waiting_is_fifo_and_a_request_larger_than_the_bound_runs_alone():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, max_queue_wait_s=100)
        model = FakeModel(gate)
        model.submit("big", cost=10)  # > bound 4, but the gate is empty
        await settle()
        model.submit("a", cost=2)
        model.submit("b", cost=1)  # would fit beside a, but a waits ahead of it
        await settle()
        assert model.started == ["big"] and gate.queued == 3
        await model.finish_oldest()
        assert model.started == ["big", "a", "b"]
        await model.finish_all()
        assert gate.inflight == 0 and gate.queued == 0

    asyncio.run(main())


def test_a_request_larger_than_the_bound_is_admitted_on_an_idle_model_with_no_queue():
    """With the one-batch queue cap (none before the first completion), an idle model still
    takes a request bigger than its whole bound (a long prompt): it runs alone, so it waits
    for nothing. Behind other work it waits until all of it has drained."""

    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, max_queue_wait_s="one_batch")  # bound 4, no samples: limit 0
        assert gate.estimate(10) == (0.0, pytest.approx(10.0))  # 10x the mean: 10x 1 s
        model = FakeModel(gate)
        model.submit("long prompt", cost=10)
        await settle()
        assert model.started == ["long prompt"]
        err = refuse_now(gate, 10, None, INT)  # now behind 10 units: 2.5 s of waiting
        assert err.details["retry_after_s"] == pytest.approx(2.5)
        await model.finish_all()
        assert model.outcomes[("ok", INT)] == 1

    asyncio.run(main())


def test_deadline_and_cancel_while_queued_give_the_place_back():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, max_queue_wait_s=100, requests_per_replica=1)  # bound 1
        model = FakeModel(gate)
        model.submit("holder")
        model.submit("late", deadline=5.0)
        await settle()
        waiter = asyncio.create_task(gate.admit(1, None, INT).__aenter__())
        await settle()
        assert gate.queued == 2
        waiter.cancel()
        await settle()
        assert gate.queued == 1
        clock.advance(6.0)  # past late's deadline: its timer (on the gate's clock) expires it
        await settle()
        assert model.outcomes[("expired", INT)] == 1
        model.submit("next")
        await settle()
        assert counts(gate).expiries[INT] == 1
        await model.finish_all()
        assert model.started == ["holder", "next"]
        assert gate.inflight == 0 and gate.queued == 0

    asyncio.run(main())


def test_counters_for_metrics():
    async def main() -> CostGate:
        clock = Clock()
        gate = make_gate(clock)
        async with gate.admit(1, None, B) as ticket:
            clock.advance(0.5)
            gate.completed(ticket)
        async with gate.admit(1, None, INT):
            gate.expired(INT)  # the data plane saw DEADLINE_EXCEEDED inside the admitted block
        return gate

    gate = asyncio.run(main())
    c = counts(gate)
    assert c.admissions == Counter({INT: 1, B: 1})
    assert c.completions == Counter({B: 1})
    assert c.expiries == Counter({INT: 1})
    assert gate.samples == 1  # only the completed request taught the rate


def test_without_a_deadline_only_the_default_deadline_refuses():
    """By default nothing caps the queue: a request that names no deadline waits as long as
    its estimated completion is within default_deadline_s, so a closed loop of twice the batch
    is queued, not refused (before and after the first completion); only when the estimate
    passes the default deadline is a request refused, as too late."""

    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, requests_per_replica=16, default_deadline_s=10.0)  # 16/s prior
        model = FakeModel(gate)
        for k in range(32):  # 2 x the bound, no deadline
            model.submit(f"r{k}", deadline=None)
        await settle()
        assert len(model.started) == 16 and gate.queued == 16
        clock.advance(1.0)
        await model.finish_oldest()  # learned: 16 in flight for 1 s
        assert gate.samples == 1
        for k in range(32, 48):
            model.submit(f"r{k}", deadline=None)
        await settle()
        assert sum(counts(gate).refusals.values()) == 0
        # More arrivals queue until the estimate passes 10 s: ~9 s of queue at 16/s.
        for k in range(48, 400):
            if gate.estimate(1)[1] > gate.default_deadline_s:
                break
            model.submit(f"r{k}", deadline=None)
            await settle()
        assert gate.queued > 100
        assert sum(counts(gate).refusals.values()) == 0
        err = refuse_now(gate, 1, None, INT)
        assert err.details["reason"] == REFUSED_DEADLINE
        await model.finish_all()
        assert model.outcomes[("refused", INT)] == 0

    asyncio.run(main())
