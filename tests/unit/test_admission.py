"""CostGate: learns the service rate, refuses what cannot finish in time, puts interactive work
before batch work, and still queues FIFO, honours deadlines and cancellation.

Deterministic: one fake clock serves as both the gate's interval clock and its wall clock;
the fake model below decides when each admitted request finishes. `settle()` only lets
already-runnable tasks run (no time passes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from core.config import parse_config
from core.errors import DeadlineExceeded, Overloaded
from core.types import AudioRequest, ImageRequest, Priority, TextRequest
from gateway.admission import (
    REFUSED_BUSY,
    REFUSED_DEADLINE,
    REFUSED_QUEUE,
    CostGate,
    Ticket,
    cost_of,
    inflight_requests_per_replica,
    requests_per_replica,
)

INT, B = Priority.INTERACTIVE, Priority.BATCH
FAR = 1e6  # a deadline that never matters


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def make_gate(clock: Clock, **kw: Any) -> CostGate:
    """Bound 4 (4 requests of cost 1 per replica), prior rate 4/s, prior service time 1 s."""
    args: dict[str, Any] = {"requests_per_replica": 4, "unit_cost": 1.0, "prior_service_s": 1.0}
    return CostGate(**(args | kw), clock=clock, wall=clock)


async def settle() -> None:
    """Lets runnable tasks run until nothing changes (bounded; no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


class FakeModel:
    """Runs each admitted request until the test finishes it; records how every one ended."""

    def __init__(self, gate: CostGate) -> None:
        self.gate = gate
        self.running: list[tuple[Ticket, asyncio.Event]] = []
        self.started: list[str] = []
        self.outcomes: Counter[tuple[str, Priority]] = Counter()
        self.tasks: list[asyncio.Task[None]] = []

    def submit(self, name: str, cost: float = 1, deadline: float | None = FAR, p=INT) -> None:
        if deadline is not None and deadline < FAR:
            deadline = self.gate.wall() + deadline
        self.tasks.append(asyncio.create_task(self._job(name, cost, deadline, p)))

    async def _job(self, name: str, cost: float, deadline: float | None, p: Priority) -> None:
        try:
            async with self.gate.admit(cost, deadline, p) as ticket:
                self.started.append(name)
                finish = asyncio.Event()
                self.running.append((ticket, finish))
                await finish.wait()
                ticket.completed()
            self.outcomes[("ok", p)] += 1
        except Overloaded:
            self.outcomes[("refused", p)] += 1
        except DeadlineExceeded:
            self.outcomes[("expired", p)] += 1

    async def finish_oldest(self) -> None:
        _, event = self.running.pop(0)
        event.set()
        await settle()

    async def finish_all(self) -> None:
        while self.running or self.gate.queued:
            await self.finish_oldest()
        await asyncio.gather(*self.tasks)


def refuse_now(gate: CostGate, cost: float, deadline: float | None, p: Priority) -> Overloaded:
    """Runs admission up to its first suspension: a refusal must come before any."""
    with pytest.raises(Overloaded) as err:
        gate.admit(cost, deadline, p).__aenter__().send(None)
    return err.value


def test_costs_follow_the_work_asked_for():
    assert cost_of(TextRequest("r", "m", prompt="x" * 40, max_tokens=100, n=2)) == 210
    assert cost_of(ImageRequest("r", "m", count=7)) == 7
    assert cost_of(AudioRequest("r", "m", text="y" * 250)) == 3


def test_prior_bound_comes_from_batching_and_replicas():
    cfg = parse_config(
        {
            "models": [
                {"name": "t", "modality": "text", "engine": "echo"},
                {
                    "name": "i",
                    "modality": "image",
                    "engine": "echo",
                    "batching": {"max_batch_size": 8, "max_concurrent_batches": 2},
                    "limits": {"max_images": 8},
                    "scaling": {"min_replicas": 3, "max_replicas": 4},
                    "admission": {"inflight_batches": 1, "max_inflight_cost": 40},
                },
            ]
        }
    )
    text, image = cfg.models
    assert requests_per_replica(text) == 2 * 16  # two batches of 16
    gate = CostGate.for_model(text)
    assert gate.bound == 2 * 16 * 64  # x a typical 64-token request
    assert gate.rate == gate.bound / 1.0  # the prior: the bound drains in prior_service_s
    assert gate.default_deadline_s == 60.0
    # Continuous batching: a finished sequence's slot is refilled at once, so the gate's queue
    # drains one request at a time (its wait limit is one request's drain, not a batch's).
    assert gate.batch_size == 1
    assert gate.queue_wait_limit() is None  # no deadline named: the estimate alone decides
    assert gate.queue_wait_limit(600.0) is None  # a longer one than the default: the same
    assert gate.queue_wait_limit(10.0) == 0  # a short one: one batch (none before a sample)
    gate.max_queue_wait_s = "one_batch"
    assert gate.queue_wait_limit() == 0  # nothing queues before the first completion
    gate.samples = 1
    assert gate.queue_wait_limit() == pytest.approx(64 / gate.rate)
    assert requests_per_replica(image) == 16  # images: the image batcher counts images
    gate = CostGate.for_model(image)
    assert gate.batch_size == 8  # a whole batch of images frees at once
    assert gate.replicas == 3
    assert gate.bound == 40  # 3 x 16 = 48, capped


def test_image_bound_counts_images_not_requests():
    """An image replica's batch of 64 holds 64 images, so two batches in flight are 128
    images whatever the request size: 16 requests of 8, not 128 requests of 8 (which would
    queue 16 batches' worth at the replica, out of reach of deadlines and tiers)."""
    image_model = {"modality": "image", "engine": "echo", "batching": {"max_batch_size": 64}}
    caps = {"i": 128, "small": 64}  # max_ongoing_requests
    models = [
        {"name": n, **image_model, "scaling": {"max_ongoing_requests": c}} for n, c in caps.items()
    ]
    cfg = parse_config({"models": models})
    image, small = cfg.models
    gate = CostGate.for_model(image)
    assert gate.bound == 128  # images
    gate.mean_cost = 8.0  # requests of 8 images seen
    assert gate.bound == 128
    assert gate.batch_drain_s() == pytest.approx(64 / gate.rate)  # one batch of 64 images
    assert inflight_requests_per_replica(image, 8.0) == 16
    # One-image requests: the replica's request cap (max_ongoing_requests) binds first.
    gate = CostGate.for_model(small)
    gate.mean_cost = 1.0
    assert gate.bound == 64
    assert inflight_requests_per_replica(small, 1.0) == 64


def test_rate_converges_to_the_measured_drain_rate():
    """A model that drains 10 requests/s at its bound: the estimate converges from a prior 8x
    too high, and a deadline shorter than the queue's drain is then refused."""

    async def main() -> tuple[CostGate, list[float]]:
        clock = Clock()
        gate = make_gate(clock, requests_per_replica=8, prior_service_s=0.1, max_queue_wait_s=99)
        model = FakeModel(gate)
        assert gate.rate == pytest.approx(80)
        rates = []
        for step in range(80):
            for _ in range(8):  # keep 4 waiting (bounded: a refusal fails the test, no hang)
                if gate.queued >= 4:
                    break
                model.submit(f"r{step}")
                await settle()
            clock.advance(0.1)  # one request finishes every 0.1 s: 10/s
            await model.finish_oldest()
            rates.append(gate.rate)
        return gate, rates

    gate, rates = asyncio.run(main())
    assert gate.counters.refused == Counter()
    assert rates[-1] == pytest.approx(10, rel=0.01)
    assert abs(rates[40] - 10) < abs(rates[10] - 10)  # it converged, not jumped
    assert gate.service_s == pytest.approx(0.1)  # no unsaturated sample taught otherwise


def test_idle_samples_only_raise_the_rate():
    """A batched model serves a lone request slower than its capacity: such samples are lower
    bounds, so they do not drag the estimate down, but they do lift a low prior."""

    async def main(prior_service_s: float, run_s: float) -> CostGate:
        clock = Clock()
        gate = make_gate(clock, prior_service_s=prior_service_s)  # bound 4
        model = FakeModel(gate)
        for k in range(20):
            model.submit(f"r{k}")
            await settle()
            clock.advance(run_s)
            await model.finish_oldest()
        return gate

    fast_prior = asyncio.run(main(prior_service_s=1.0, run_s=2.0))  # prior 4/s, lone 0.5/s
    assert fast_prior.rate == pytest.approx(4.0)
    assert fast_prior.service_s == pytest.approx(2.0, rel=0.05)  # the idle service time is learnt
    slow_prior = asyncio.run(main(prior_service_s=100.0, run_s=0.5))  # prior 0.04/s, lone 2/s
    assert slow_prior.rate == pytest.approx(2.0, rel=0.05)


def test_deadline_shorter_than_the_queue_is_refused_at_once_with_a_hint():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, max_queue_wait_s=100)  # bound 4, rate 4/s, service 1 s
        model = FakeModel(gate)
        for k in range(8):
            model.submit(f"r{k}")
        await settle()
        assert gate.inflight == 4 and gate.queued == 4
        # 4 queued + itself must drain before it fits: (4 + 4 + 1 - 4) / 4 = 1.25 s of waiting,
        # plus up to one batch (2 requests) = 0.5 s because room frees a batch at a time,
        # then 4 / 4 = 1 s in flight: 2.75 s.
        assert gate.estimate(1, INT) == pytest.approx((1.25, 2.75))
        err = refuse_now(gate, 1, clock() + 2.0, INT)
        assert err.details["retry_after_s"] == pytest.approx(0.75)  # 2.75 - 2.0
        assert "deadline" in err.message
        assert gate.counters.refused[(REFUSED_DEADLINE, INT)] == 1
        model.submit("fits", deadline=2.8)  # 2.75 <= 2.8: queued
        await settle()
        assert gate.queued == 5 and gate.counters.admitted[INT] == 9
        await model.finish_all()
        assert model.started[-1] == "fits"

    asyncio.run(main())


def test_no_deadline_means_the_default_deadline():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, default_deadline_s=1.5)  # bound 4, a request takes 1 s
        model = FakeModel(gate)
        model.submit("a", deadline=None)
        model.submit("b", deadline=None)
        await settle()
        assert gate.inflight == 2
        gate.default_deadline_s = 0.5
        err = refuse_now(gate, 1, None, INT)  # 1 s in flight > 0.5 s
        assert err.details["retry_after_s"] == pytest.approx(0.5)
        assert gate.counters.refused[(REFUSED_DEADLINE, INT)] == 1
        await model.finish_all()

    asyncio.run(main())


def test_an_idle_model_always_tries_one_request():
    """However stale the estimate, an idle model takes a request, so completions can
    correct it (a slow first request must not shut the model off for good)."""

    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, requests_per_replica=8, prior_service_s=10.0)
        model = FakeModel(gate)
        model.submit("first", deadline=1.0)  # the estimate says 10 s: admitted anyway
        await settle()
        refuse_now(gate, 1, clock() + 1.0, INT)  # not idle: the estimate decides
        clock.advance(0.1)
        await model.finish_oldest()
        assert gate.service_s < 10.0 and gate.samples == 1

    asyncio.run(main())


def test_the_opt_in_queue_cap_is_one_batch_deep_and_empty_before_the_first_completion():
    async def main() -> None:
        clock = Clock()
        gate = make_gate(clock, max_queue_wait_s="one_batch")  # bound 4 = 2 batches of 2, 4/s
        model = FakeModel(gate)
        for k in range(4):
            model.submit(f"r{k}")
        await settle()
        err = refuse_now(gate, 1, None, INT)  # the rate is a guess yet: nothing queues
        assert err.details["retry_after_s"] == pytest.approx(0.25)
        clock.advance(1.0)
        await model.finish_oldest()  # 4 in flight for 1 s: the prior rate, confirmed
        assert gate.samples == 1 and gate.rate == pytest.approx(4.0)
        assert gate.queue_wait_limit() == pytest.approx(0.5)  # one batch of 2 at 4/s
        for k in range(4, 7):
            model.submit(f"r{k}")
        await settle()
        assert gate.inflight == 4 and gate.queued == 2  # waits of 0.25 and 0.5 s
        err = refuse_now(gate, 1, None, INT)  # 0.75 s of waiting > 0.5 s
        assert err.details["retry_after_s"] == pytest.approx(0.25)
        assert gate.counters.refused[(REFUSED_QUEUE, INT)] == 2
        await model.finish_all()

    asyncio.run(main())


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
        assert gate.counters.refused[(REFUSED_BUSY, B)] == 1
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
        assert gate.counters.refused[(REFUSED_BUSY, B)] == 2
        await model.finish_all()
        assert gate.counters.admitted == Counter({INT: 3, B: 6})

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
    refused = gate.counters.refused
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
            gate.samples = 1  # a learned rate: queueing is allowed
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
        clock.advance(6.0)  # past late's deadline; noticed at the next admission decision
        model.submit("next")
        await settle()
        assert model.outcomes[("expired", INT)] == 1
        assert gate.counters.expired[INT] == 1
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
            ticket.completed()
        async with gate.admit(1, None, INT):
            gate.expired(INT)  # the data plane saw DEADLINE_EXCEEDED inside the admitted block
        return gate

    gate = asyncio.run(main())
    c = gate.counters
    assert c.admitted == Counter({INT: 1, B: 1})
    assert c.completed == Counter({B: 1})
    assert c.expired == Counter({INT: 1})
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
        assert sum(gate.counters.refused.values()) == 0
        # More arrivals queue until the estimate passes 10 s: ~9 s of queue at 16/s.
        for k in range(48, 400):
            if gate.estimate(1)[1] > gate.default_deadline_s:
                break
            model.submit(f"r{k}", deadline=None)
            await settle()
        assert gate.queued > 100
        assert sum(gate.counters.refused.values()) == 0
        err = refuse_now(gate, 1, None, INT)
        assert err.details["reason"] == REFUSED_DEADLINE
        await model.finish_all()
        assert model.outcomes[("refused", INT)] == 0

    asyncio.run(main())
