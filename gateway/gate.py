"""One model's admission gate: admit only what can finish before its deadline.

Work is counted in cost units (`core.sizing.cost_of`). The gate learns the service rate (cost
units per second that the model drains; `gateway.rate.RateModel`) from the requests it saw
complete, and is told the number of live replicas. From these it estimates, for each arriving
request, when it would finish: the queued cost ahead of it drains at the rate, then it spends
one service time in flight. A request whose estimate exceeds its remaining deadline is refused
at once with `Overloaded` and a retry hint taken from the estimate, instead of queueing work
that would expire. What is admitted either starts at once (within the in-flight bound) or waits
in FIFO order in its tier's queue.

Tiers (`Priority`): interactive work may use the whole in-flight bound and waits its turn in
FIFO order when it does not fit. Batch work only uses idle capacity: it is admitted when it can
start at once within the bound less a reserve kept free for interactive arrivals (and nothing
interactive waits) and its estimate fits its deadline; otherwise it is refused at once. It
never waits in the gate, so it never delays interactive work and never expires there.

Every time, interval or deadline, and every timer (a queued request's deadline) comes from the
injected `Clock`, so tests run on a fake one. What happens at the gate (admitted, refused and
why, expired, completed) goes to its `AdmissionObserver`, the one place it is counted (the
gateway's is Prometheus). The gateway's `gateway.admission.Admission` owns the gates; nothing
else writes to them. Serve's `max_queued_requests` stays as the second line.

Why one file of ~480 lines: the estimate and the queue read and write the same state (in-flight
and queued cost, the bound, the clock's integrals) at every decision; split in two, that state
would have two owners again. Sizing (core/sizing.py) and learning (gateway/rate.py) are apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.clock import DEADLINE_TRANSIT_SLACK_S, Clock, LoopClock, Timer
from core.config import ModelConfig
from core.errors import DeadlineExceeded, Overloaded
from core.sizing import admission_step, batch_counts_cost, requests_per_replica, typical_cost
from core.types import Priority
from gateway.rate import RateModel

# Refusal reasons (bounded metric label values).
REFUSED_DEADLINE = "deadline"  # the estimated completion exceeds the remaining deadline
REFUSED_QUEUE = "queue_full"  # the queue-wait or queued-cost limit is reached
REFUSED_BUSY = "busy"  # batch tier: no idle capacity (interactive work waits, or no room)
REASONS = (REFUSED_DEADLINE, REFUSED_QUEUE, REFUSED_BUSY)
# A sample counts as taken at capacity when the mean in-flight cost reached this share of the
# bound available to it, or when requests were waiting for most of its life.
SATURATED_SHARE = 0.7
MIN_RETRY_S = 0.05


class AdmissionObserver(Protocol):
    """Told of every decision at a gate; the only place admission is counted."""

    def admitted(self, model: str, priority: Priority) -> None:
        """Started at once or queued."""

    def refused(self, model: str, priority: Priority, reason: str) -> None:
        """Refused at once (`reason`: one of REASONS)."""

    def expired(self, model: str, priority: Priority) -> None:
        """Admitted, then its deadline passed (while queued or while it ran)."""

    def completed(self, model: str, priority: Priority) -> None:
        """Admitted and finished OK (what the rate learns from)."""


@dataclass
class CountingObserver:
    """Counts what it is told, per tier (and reason): the observer of a gate outside the
    gateway (tests, the admission simulation); the gateway's is its Prometheus metrics."""

    admissions: Counter[Priority] = field(default_factory=Counter)
    refusals: Counter[tuple[str, Priority]] = field(default_factory=Counter)
    expiries: Counter[Priority] = field(default_factory=Counter)
    completions: Counter[Priority] = field(default_factory=Counter)

    def admitted(self, model: str, priority: Priority) -> None:
        self.admissions[priority] += 1

    def refused(self, model: str, priority: Priority, reason: str) -> None:
        self.refusals[(reason, priority)] += 1

    def expired(self, model: str, priority: Priority) -> None:
        self.expiries[priority] += 1

    def completed(self, model: str, priority: Priority) -> None:
        self.completions[priority] += 1


@dataclass(eq=False)
class Ticket:
    """An admitted request; `CostGate.completed(ticket)` once it finished OK."""

    cost: float
    priority: Priority
    deadline: float  # absolute, on the gate's wall clock
    started: float = 0.0  # gate clock when it entered the in-flight set
    area0: float = 0.0  # the gate's in-flight cost integral at that moment
    busy0: float = 0.0  # the gate's time-with-waiters integral at that moment
    running: bool = False
    done: bool = False
    future: asyncio.Future[None] | None = None  # while queued
    timer: Timer | None = None  # its deadline, while queued


class CostGate:
    def __init__(
        self,
        *,
        name: str = "model",
        requests_per_replica: float = 32.0,
        batch_size: float | None = None,
        counts_cost: bool = False,
        max_requests_per_replica: float | None = None,
        unit_cost: float = 1.0,
        replicas: int = 1,
        prior_service_s: float = 1.0,
        max_inflight_cost: float | None = None,
        max_queued_cost: float | None = None,
        max_queue_wait_s: float | Literal["one_batch"] | None = None,
        default_deadline_s: float = 60.0,
        batch_reserve: float = 0.25,
        smoothing: float = 0.2,
        clock: Clock | None = None,
        observer: AdmissionObserver | None = None,
    ) -> None:
        self.name = name
        # Batch slots per replica, and in a batch: requests, or cost units when `counts_cost`
        # (the model batches images, not requests; see core.sizing.batch_counts_cost).
        self.requests_per_replica = requests_per_replica
        # Slots that enter a replica together: the queue drains in such steps.
        self.batch_size = batch_size if batch_size is not None else requests_per_replica / 2
        self.counts_cost = counts_cost
        self.max_requests_per_replica = max_requests_per_replica
        self.replicas = max(1, replicas)
        self.gateways = 1  # gateways sharing the replicas (gateway/peers.py): this one's share
        self.max_inflight_cost = max_inflight_cost
        self.max_queued_cost = max_queued_cost
        self.max_queue_wait_s = max_queue_wait_s
        self.default_deadline_s = default_deadline_s
        self.batch_reserve = batch_reserve
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.observer: AdmissionObserver = observer if observer is not None else CountingObserver()
        # Prior: the bound's worth of work drains in one assumed service time.
        slot_cost = 1.0 if counts_cost else unit_cost
        self.learned = RateModel(
            mean_cost=unit_cost,
            service_s=prior_service_s,
            rate_per_replica=requests_per_replica * slot_cost / prior_service_s,
            smoothing=smoothing,
        )
        self.inflight = 0.0
        self.queued = 0.0
        self._queue: deque[Ticket] = deque()  # interactive work waiting its turn (FIFO)
        self._last = self.clock.monotonic()
        self._area = 0.0  # integral of in-flight cost over time
        self._busy = 0.0  # integral of "someone is waiting" over time

    @classmethod
    def for_model(
        cls,
        model: ModelConfig,
        clock: Clock | None = None,
        observer: AdmissionObserver | None = None,
    ) -> CostGate:
        a = model.admission
        s = model.scaling
        replicas = s.initial_replicas if s.initial_replicas is not None else s.min_replicas
        return cls(
            name=model.name,
            requests_per_replica=requests_per_replica(model),
            batch_size=admission_step(model),
            counts_cost=batch_counts_cost(model),
            max_requests_per_replica=model.max_ongoing_requests,
            unit_cost=typical_cost(model),
            replicas=max(1, replicas),
            prior_service_s=a.prior_service_s,
            max_inflight_cost=a.max_inflight_cost,
            max_queued_cost=a.max_queued_cost,
            max_queue_wait_s=a.max_queue_wait_s,
            default_deadline_s=a.default_deadline_s,
            batch_reserve=a.batch_reserve,
            smoothing=a.rate_smoothing,
            clock=clock,
            observer=observer,
        )

    # ---- what was learned ---------------------------------------------------------------------

    @property
    def mean_cost(self) -> float:
        return self.learned.mean_cost

    @property
    def service_s(self) -> float:
        return self.learned.service_s

    @property
    def rate_per_replica(self) -> float:
        return self.learned.rate_per_replica

    @property
    def samples(self) -> int:
        return self.learned.samples

    # ---- what the estimate is made of ---------------------------------------------------------

    @property
    def rate(self) -> float:
        """Cost units per second this gateway's share of the model drains: all live replicas
        together, divided among the gateways in front of them."""
        return self.rate_per_replica * self.replicas / self.gateways

    @property
    def slot_cost(self) -> float:
        """Cost of one batch slot: the mean request's cost, or 1 where batches count cost."""
        return 1.0 if self.counts_cost else self.mean_cost

    @property
    def bound(self) -> float:
        """In-flight cost bound: live replicas x batch slots per replica x the cost of a slot
        (at most `max_requests_per_replica` requests of the mean cost), this gateway's share
        of it, capped by `max_inflight_cost`."""
        per_replica = self.requests_per_replica * self.slot_cost
        if self.max_requests_per_replica is not None:
            per_replica = min(per_replica, self.max_requests_per_replica * self.mean_cost)
        learned = self.replicas * per_replica / self.gateways
        return learned if self.max_inflight_cost is None else min(learned, self.max_inflight_cost)

    def _bound_for(self, priority: Priority) -> float:
        if priority == Priority.BATCH:
            return self.bound * (1.0 - self.batch_reserve)
        return self.bound

    def set_gateways(self, n: int) -> None:
        """Live gateways in front of the model's replicas (this one included); the bound and
        the rate are this gateway's share."""
        self.gateways = max(1, int(n))
        self._wake()

    def set_replicas(self, n: int) -> None:
        """Live replica count (from Serve); the rate and the bound scale with it. 0 (none
        running yet) counts as 1 so that work queues for the first replica."""
        self.replicas = max(1, int(n))
        self._wake()

    def estimate(
        self, cost: float, priority: Priority = Priority.INTERACTIVE
    ) -> tuple[float, float]:
        """(queue wait, completion) in seconds for a request arriving now: the cost ahead of it
        and its own must drain until it fits under the bound; then it spends one service time in
        flight, which at the bound is bound / rate (Little's law) and never less than on an
        idle model."""
        bound, rate = self._bound_for(priority), self.rate
        entry = self.inflight + self.queued + cost
        # A request larger than the whole bound runs alone: it waits for everything ahead.
        wait = max(0.0, entry - max(bound, cost)) / rate
        in_flight = max(self.own_service_s(cost), min(entry, max(bound, cost)) / rate)
        # A batched model frees room a whole batch at a time, not smoothly: a queued request
        # may enter up to one batch's drain time later than the even drain above says.
        step = self.batch_drain_s() if wait > 0 else 0.0
        return wait, wait + step + in_flight

    def batch_drain_s(self) -> float:
        """Time the model takes to drain one batch (of requests of the mean cost): at the
        model's whole rate, whichever gateways sent its requests. As the queue's wait limit
        this keeps what all gateways queue together at one batch: each gateway's queue drains
        at its share of the rate, so in this time it drains its share of a batch."""
        return self.batch_size * self.slot_cost / (self.rate * self.gateways)

    def own_service_s(self, cost: float) -> float:
        """In-flight time on an idle model: a request larger than the mean takes
        proportionally longer (text: decode steps follow max_tokens)."""
        return self.service_s * max(1.0, cost / self.mean_cost)

    def queue_wait_limit(self, named_deadline_s: float | None = None) -> float | None:
        """Longest estimated wait for admission that is queued; None: no cap.

        `max_queue_wait_s` seconds, or "one_batch": one batch's drain time (the in-flight bound
        already holds the batch that forms next at each replica, so a longer queue adds
        latency, not throughput; before the first completion the rate is a guess and nothing
        queues). Unset (the default): one batch for a request that named a deadline shorter
        than `default_deadline_s` (the estimate's error grows with the queue, and a short
        deadline has no slack for it: under 4x overload, queueing such requests to their
        deadline let 7-26 % of them expire in load_tests.admission_sim), no cap for one that
        named none or a longer one: it is refused only when its estimated completion passes
        its deadline."""
        cap = self.max_queue_wait_s
        if cap is None:
            # A client that sends the default deadline itself (load generators, SDKs with a
            # 60 s timeout) reaches us with a little less left: that is not a short deadline.
            tight = (
                named_deadline_s is not None
                and named_deadline_s + DEADLINE_TRANSIT_SLACK_S < self.default_deadline_s
            )
            cap = "one_batch" if tight else None
        if cap == "one_batch":
            return self.batch_drain_s() if self.samples else 0.0
        return cap

    # ---- admission --------------------------------------------------------------------------

    def _refuse(
        self, reason: str, priority: Priority, retry_after_s: float, why: str
    ) -> Overloaded:
        self.observer.refused(self.name, priority, reason)
        retry = round(max(MIN_RETRY_S, retry_after_s), 3)
        return Overloaded(f"{why}; retry in {retry:g} s", retry_after_s=retry, reason=reason)

    def _check(self, cost: float, remaining: float, priority: Priority, named: bool = True) -> None:
        """Raises Overloaded (counted) when the request must not be admitted. `named`: the
        request named its deadline (else `remaining` is the default deadline's)."""
        wait, done = self.estimate(cost, priority)
        if priority == Priority.BATCH and (self._queue or not self._fits(cost, priority)):
            raise self._refuse(
                REFUSED_BUSY,
                priority,
                wait + (self.batch_drain_s() if wait > 0 else 0.0),
                "model has no idle capacity for batch work",
            )
        # An idle model always gets to try one request: the estimate may be stale (a slow
        # first request, a model that got faster), and only completions can correct it.
        idle = self.inflight == 0 and not self._queue
        if done > remaining and not idle:
            raise self._refuse(
                REFUSED_DEADLINE,
                priority,
                done - remaining,
                f"model cannot finish this request before its deadline (estimated {done:.2f} s, "
                f"{remaining:.2f} s left)",
            )
        limit = self.queue_wait_limit(remaining if named else None)
        if limit is not None and wait > limit:
            raise self._refuse(
                REFUSED_QUEUE,
                priority,
                wait - limit,
                "model is at capacity and its admission queue is full",
            )
        if wait > 0 and self.max_queued_cost is not None:
            if self.queued + cost > self.max_queued_cost:
                over = self.queued + cost - self.max_queued_cost
                raise self._refuse(
                    REFUSED_QUEUE,
                    priority,
                    over / self.rate,
                    "model is at capacity and its admission queue is full",
                )

    @contextlib.asynccontextmanager
    async def admit(
        self, cost: float, deadline: float | None, priority: Priority = Priority.INTERACTIVE
    ) -> AsyncIterator[Ticket]:
        """Enters when admitted (at once or after waiting its turn); raises `Overloaded` at once
        when the request cannot finish in time, `DeadlineExceeded` when the deadline (absolute,
        on the clock's wall time; None = `default_deadline_s` from now) passes while queued."""
        now = self.clock.wall()
        named = deadline is not None
        if deadline is None:
            deadline = now + self.default_deadline_s
        remaining = deadline - now
        if remaining <= 0:
            raise DeadlineExceeded("deadline passed before admission")
        self._touch()
        self._check(cost, remaining, priority, named)
        ticket = Ticket(cost, priority, deadline)
        self.observer.admitted(self.name, priority)
        if not self._queue and self._fits(cost, priority):
            self._start(ticket)
        else:
            await self._wait(ticket, remaining)
        try:
            yield ticket
        finally:
            self._release(ticket)

    def completed(self, ticket: Ticket) -> None:
        """An admitted request finished OK: counted, and the rate learns from it."""
        if not ticket.running or ticket.done:
            return
        ticket.done = True
        self._touch()
        self.observer.completed(self.name, ticket.priority)
        self.learned.observe_cost(ticket.cost)
        life = self._last - ticket.started
        if life <= 0:
            return
        mean_inflight = (self._area - ticket.area0) / life
        waited_share = (self._busy - ticket.busy0) / life
        saturated = (
            mean_inflight >= SATURATED_SHARE * self._bound_for(ticket.priority)
            or waited_share >= 0.5
        )
        share = self.replicas / self.gateways
        self.learned.learn(ticket.cost, life, mean_inflight, saturated, share)

    def expired(self, priority: Priority = Priority.INTERACTIVE) -> None:
        """An admitted request whose deadline passed while it ran (or queued, as the caller
        saw it go)."""
        self.observer.expired(self.name, priority)

    def queued_requests(self) -> int:
        return len(self._queue)

    def _fits(self, cost: float, priority: Priority) -> bool:
        # A request larger than the whole bound may still run, alone.
        return self.inflight + cost <= self._bound_for(priority) or self.inflight == 0

    def _touch(self) -> None:
        now = self.clock.monotonic()
        dt = max(0.0, now - self._last)
        self._area += self.inflight * dt
        if self.queued > 0:
            self._busy += dt
        self._last = now

    def _start(self, ticket: Ticket) -> None:
        self._touch()
        self.inflight += ticket.cost
        ticket.running = True
        ticket.started = self._last
        ticket.area0 = self._area
        ticket.busy0 = self._busy

    def _release(self, ticket: Ticket) -> None:
        if ticket.running:
            self._touch()
            ticket.running = False
            self.inflight -= ticket.cost
            if self.inflight < 1e-9:
                self.inflight = 0.0
        self._wake()

    async def _wait(self, ticket: Ticket, remaining: float) -> None:
        """Queues the ticket until `_wake` starts it or its deadline's timer expires it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.future = future
        ticket.timer = self.clock.call_later(remaining, lambda: self._expire(ticket))
        self._touch()
        self._queue.append(ticket)
        self.queued += ticket.cost
        try:
            await future
        except asyncio.CancelledError:
            self._give_up(ticket)
            raise
        finally:
            ticket.timer.cancel()

    def _expire(self, ticket: Ticket) -> None:
        """A queued ticket's deadline passed (its timer, on the gate's clock)."""
        if ticket.future is None or ticket.future.done() or ticket not in self._queue:
            return
        self._dequeue(ticket)
        self.observer.expired(self.name, ticket.priority)
        ticket.future.set_exception(DeadlineExceeded("deadline passed while waiting for admission"))
        self._wake()  # a smaller request behind it may fit now

    def _give_up(self, ticket: Ticket) -> None:
        """A waiter leaves: its place in the queue, or the capacity it was just given."""
        if ticket.running:  # admitted in the same instant: give it back
            self._release(ticket)
        else:
            self._dequeue(ticket)
            if ticket.future is not None:
                ticket.future.cancel()
            self._wake()  # a smaller request behind it may fit now

    def _dequeue(self, ticket: Ticket) -> None:
        if ticket in self._queue:
            self._touch()
            self._queue.remove(ticket)
            self.queued -= ticket.cost
            if self.queued < 1e-9:
                self.queued = 0.0

    def _wake(self) -> None:
        while self._queue:
            ticket = self._queue[0]
            if ticket.future is None or ticket.future.done():  # cancelled or failed
                self._dequeue(ticket)
                continue
            if not self._fits(ticket.cost, ticket.priority):
                return  # FIFO
            self._dequeue(ticket)
            self._start(ticket)
            ticket.future.set_result(None)
