"""CostGate: runs what fits, queues FIFO within bounds, refuses beyond, honours deadlines."""

from __future__ import annotations

import asyncio
import time

import pytest

from aigc.config import parse_config
from gateway.admission import CostGate, cost_of, default_capacity
from services.errors import DeadlineExceeded, Overloaded
from services.types import AudioRequest, ImageRequest, TextRequest


def test_costs_follow_the_work_asked_for():
    assert cost_of(TextRequest("r", "m", prompt="x" * 40, max_tokens=100, n=2)) == 210
    assert cost_of(ImageRequest("r", "m", count=7)) == 7
    assert cost_of(AudioRequest("r", "m", text="y" * 250)) == 3
    cfg = parse_config({"models": [{"name": "t", "modality": "text", "engine": "echo"}]})
    assert default_capacity(cfg.models[0]) == 4 * 16 * 1 * 64


def test_fits_queues_then_refuses():
    async def main():
        gate = CostGate(capacity=10, queue_capacity=5)
        order: list[str] = []
        hold = asyncio.Event()

        async def job(name: str, cost: float) -> None:
            async with gate.admit(cost, None):
                order.append(name)
                await hold.wait()

        first = asyncio.create_task(job("a", 8))
        await asyncio.sleep(0)
        queued = asyncio.create_task(job("b", 4))  # 8 + 4 > 10: waits
        await asyncio.sleep(0)
        assert order == ["a"] and gate.queued == 4
        with pytest.raises(Overloaded):  # queue holds 4 of 5: 2 more do not fit
            async with gate.admit(2, None):
                pass
        hold.set()
        await asyncio.gather(first, queued)
        return order, gate

    order, gate = asyncio.run(main())
    assert order == ["a", "b"]
    assert gate.inflight == 0 and gate.queued == 0


def test_a_request_larger_than_capacity_runs_alone():
    async def main():
        gate = CostGate(capacity=10, queue_capacity=0)
        async with gate.admit(50, None):
            assert gate.inflight == 50
        return gate.inflight

    assert asyncio.run(main()) == 0


def test_deadline_and_cancel_while_queued_give_the_place_back():
    async def main():
        gate = CostGate(capacity=1, queue_capacity=10)
        hold = asyncio.Event()

        async def holder() -> None:
            async with gate.admit(1, None):
                await hold.wait()

        h = asyncio.create_task(holder())
        await asyncio.sleep(0)
        with pytest.raises(DeadlineExceeded):
            async with gate.admit(1, time.time() + 0.01):
                pass
        waiter = asyncio.create_task(gate.admit(1, None).__aenter__())
        await asyncio.sleep(0)
        assert gate.queued == 1
        waiter.cancel()
        await asyncio.sleep(0)
        queued_after_cancel = gate.queued
        hold.set()
        await h
        return gate, queued_after_cancel

    gate, queued_after_cancel = asyncio.run(main())
    assert queued_after_cancel == 0
    assert gate.inflight == 0
