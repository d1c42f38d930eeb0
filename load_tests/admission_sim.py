"""The admission gate in front of a simulated batched model, on a simulated clock (no Ray).

python -m load_tests.admission_sim

Each replica runs one batch of up to `batch` requests at a time, taking `batch_s` whatever its
size; admitted requests wait at the replicas in FIFO order (as Serve's queue). Arrivals are
Poisson at a multiple of the saturated rate (batch x replicas / batch_s); every request carries
a deadline. It prints issue 15's ratios per case: goodput against the saturated rate,
admitted-then-expired, refusals per tier, p99 latency per tier. A check of the design, not of
the served stack: `aigc bench` (docs/benchmarking.md, the overload recipe) measures that.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.clock import ManualClock
from core.errors import DeadlineExceeded, Overloaded
from core.types import Priority
from gateway.gate import CostGate, CountingObserver, Ticket


async def _settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


@dataclass
class Case:
    load: float  # multiple of the saturated rate
    batch: int = 16
    batch_s: float = 1.0
    replicas: int = 1
    deadline_s: float = 10.0
    duration_s: float = 120.0
    mix: bool = False  # 50/50 interactive/batch
    seed: int = 0


@dataclass
class Result:
    case: Case
    outcomes: Counter[tuple[str, Priority]] = field(default_factory=Counter)
    latency: dict[Priority, list[float]] = field(default_factory=lambda: {p: [] for p in Priority})
    elapsed: float = 0.0
    admitted: int = 0
    rate_midway: float = 0.0

    def row(self) -> dict[str, Any]:
        c = self.case
        saturated = c.batch * c.replicas / c.batch_s
        ok = sum(self.outcomes["ok", p] for p in Priority)
        expired = sum(self.outcomes["expired", p] for p in Priority)
        refused = sum(self.outcomes["refused", p] for p in Priority)
        p99 = {p: float(np.percentile(v, 99)) if v else 0.0 for p, v in self.latency.items()}
        return {
            "load": c.load,
            "mix": c.mix,
            "batch_s": c.batch_s,
            "replicas": c.replicas,
            "deadline_s": c.deadline_s,
            "goodput_vs_saturated": ok / max(self.elapsed, 1e-9) / saturated,
            "expired_share_of_admitted": expired / max(1, self.admitted),
            "refused": refused,
            "batch_share_of_refused": self.outcomes["refused", Priority.BATCH] / max(1, refused),
            "p99_interactive_s": p99[Priority.INTERACTIVE],
            "p99_batch_s": p99[Priority.BATCH],
            "rate_midway_vs_true": self.rate_midway / saturated,
        }


async def simulate(case: Case) -> Result:
    clock = ManualClock()
    counts = CountingObserver()
    gate = CostGate(
        requests_per_replica=2 * case.batch,
        batch_size=case.batch,
        replicas=case.replicas,
        clock=clock,
        observer=counts,
    )
    rng = random.Random(case.seed)
    arrival_rate = case.load * case.batch * case.replicas / case.batch_s
    result = Result(case)
    waiting: list[tuple[Ticket, asyncio.Event, dict[str, bool]]] = []  # at the replicas
    running: list[tuple[float, list[tuple[Ticket, asyncio.Event, dict[str, bool]]]] | None]
    running = [None] * case.replicas
    start = clock.t

    async def request(priority: Priority) -> None:
        sent = clock.t
        try:
            async with gate.admit(1.0, sent + case.deadline_s, priority) as ticket:
                done, box = asyncio.Event(), {"late": False}
                waiting.append((ticket, done, box))
                await done.wait()
                if box["late"]:
                    gate.expired(priority)
                    result.outcomes["expired", priority] += 1
                else:
                    gate.completed(ticket)
                    result.outcomes["ok", priority] += 1
                    result.latency[priority].append(clock.t - sent)
        except Overloaded:
            result.outcomes["refused", priority] += 1
        except DeadlineExceeded:
            result.outcomes["expired", priority] += 1

    tasks = []
    next_arrival = clock.t + rng.expovariate(arrival_rate)
    end = start + case.duration_s
    while True:
        for i in range(case.replicas):
            if running[i] is None and waiting:
                running[i] = (clock.t + case.batch_s, waiting[: case.batch])
                del waiting[: case.batch]
        finishes = [(r[0], i) for i, r in enumerate(running) if r is not None]
        finish_at, replica = min(finishes) if finishes else (float("inf"), -1)
        arrive_at = next_arrival if next_arrival < end else float("inf")
        if arrive_at == finish_at == float("inf"):
            break
        if not result.rate_midway and clock.t > start + case.duration_s / 2:
            result.rate_midway = gate.rate
        if arrive_at <= finish_at:
            clock.set(arrive_at)
            tier = Priority.BATCH if case.mix and rng.random() < 0.5 else Priority.INTERACTIVE
            tasks.append(asyncio.create_task(request(tier)))
            next_arrival = clock.t + rng.expovariate(arrival_rate)
        else:
            clock.set(finish_at)
            batch = running[replica]
            assert batch is not None
            running[replica] = None
            for ticket, done, box in batch[1]:
                box["late"] = clock.t > ticket.deadline
                done.set()
        await _settle()
    await asyncio.gather(*tasks)
    result.elapsed = clock.t - start
    result.admitted = sum(counts.admissions.values())
    return result


CASES = [
    Case(load=1.0),
    Case(load=4.0),
    Case(load=1.0, mix=True),
    Case(load=4.0, mix=True),
    Case(load=4.0, batch_s=3.0),
    Case(load=4.0, replicas=3),
    Case(load=4.0, batch_s=0.2, deadline_s=2.0),
]


def main() -> None:
    for k, case in enumerate(CASES):
        row = asyncio.run(simulate(case)).row()
        if k == 0:
            print(" | ".join(row))
        print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
