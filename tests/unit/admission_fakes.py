"""The admission tests' deterministic world: one fake clock (the gate's interval and wall
clock), a fake model that finishes each admitted request when the test says, and `settle()`,
which lets runnable tasks run until none moves (an explicit, bounded condition)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from core.clock import ManualClock
from core.errors import DeadlineExceeded, Overloaded
from core.types import Priority
from gateway.gate import CostGate, CountingObserver, Ticket

INT, B = Priority.INTERACTIVE, Priority.BATCH
FAR = 1e6  # a deadline that never matters


Clock = ManualClock  # the gate's intervals, deadlines and timers


def make_gate(clock: ManualClock, **kw: Any) -> CostGate:
    """Bound 4 (4 requests of cost 1 per replica), prior rate 4/s, prior service time 1 s;
    what the gate decides is counted in `counts(gate)`."""
    args: dict[str, Any] = {"requests_per_replica": 4, "unit_cost": 1.0, "prior_service_s": 1.0}
    return CostGate(**(args | kw), clock=clock, observer=CountingObserver())


def counts(gate: CostGate) -> CountingObserver:
    assert isinstance(gate.observer, CountingObserver)
    return gate.observer


def _where(task: asyncio.Task[Any]) -> tuple[Any, ...]:
    """Where a task is: finished, or the await (function, line) of each frame it is
    suspended in (`Task.get_stack`)."""
    if task.done():
        return ("done",)
    return tuple((f.f_code.co_name, f.f_lineno) for f in task.get_stack())


async def settle(passes: int = 3, limit: int = 1000) -> None:
    """Lets every runnable task run until the loop is quiescent: no other task finishes or
    moves to another await for `passes` consecutive turns of the loop (a runnable task runs on
    every turn, so it would move). Fails after `limit` turns. No time passes: the gate's clock
    is the fake one."""
    me = asyncio.current_task()

    def state() -> frozenset[tuple[int, tuple[Any, ...]]]:
        return frozenset((id(t), _where(t)) for t in asyncio.all_tasks() if t is not me)

    last, still = state(), 0
    for _ in range(limit):
        await asyncio.sleep(0)
        now = state()
        still = still + 1 if now == last else 0
        if still >= passes:
            return
        last = now
    raise AssertionError(f"tasks still moving after {limit} turns of the loop")


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
            deadline = self.gate.clock.wall() + deadline
        self.tasks.append(asyncio.create_task(self._job(name, cost, deadline, p)))

    async def _job(self, name: str, cost: float, deadline: float | None, p: Priority) -> None:
        try:
            async with self.gate.admit(cost, deadline, p) as ticket:
                self.started.append(name)
                finish = asyncio.Event()
                self.running.append((ticket, finish))
                await finish.wait()
                self.gate.completed(ticket)
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
