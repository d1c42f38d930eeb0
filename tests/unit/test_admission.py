"""CostGate, what it learns and refuses: costs, the prior bound, the learned service rate, and
refusing at once what cannot finish before its deadline (with a retry hint). Deterministic: see
tests/unit/admission_fakes.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from core.config import parse_config
from core.sizing import cost_of, inflight_requests_per_replica, requests_per_replica
from core.types import AudioRequest, ImageRequest, TextRequest
from gateway.gate import REFUSED_DEADLINE, REFUSED_QUEUE, CostGate
from tests.unit.admission_fakes import (
    INT,
    Clock,
    FakeModel,
    counts,
    make_gate,
    refuse_now,
    settle,
)


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
    # the default deadline sent by the client arrives with a little less left: not short
    assert gate.queue_wait_limit(gate.default_deadline_s - 0.05) is None
    gate.max_queue_wait_s = "one_batch"
    assert gate.queue_wait_limit() == 0  # nothing queues before the first completion
    gate.learned.samples = 1
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
    gate.learned.mean_cost = 8.0  # requests of 8 images seen
    assert gate.bound == 128
    assert gate.batch_drain_s() == pytest.approx(64 / gate.rate)  # one batch of 64 images
    assert inflight_requests_per_replica(image, 8.0) == 16
    # One-image requests: the replica's request cap (max_ongoing_requests) binds first.
    gate = CostGate.for_model(small)
    gate.learned.mean_cost = 1.0
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
    assert counts(gate).refusals == Counter()
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
        assert counts(gate).refusals[(REFUSED_DEADLINE, INT)] == 1
        model.submit("fits", deadline=2.8)  # 2.75 <= 2.8: queued
        await settle()
        assert gate.queued == 5 and counts(gate).admissions[INT] == 9
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
        assert counts(gate).refusals[(REFUSED_DEADLINE, INT)] == 1
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
        assert counts(gate).refusals[(REFUSED_QUEUE, INT)] == 2
        await model.finish_all()

    asyncio.run(main())
