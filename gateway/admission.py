"""Admission: the one owner of every model's gate (gateway/gate.py).

The data plane asks `async with admission.admit(call, model, requests):` and nothing else
touches a gate: the Serve status reader tells `set_replicas`, the peer count `set_gateways`;
a completion teaches the gate's rate when the admitted block ends without error; a request
that runs out of time after admission is counted as expired. Every decision is counted once,
by the observer the gates report to (the gateway's Prometheus metrics, `GatewayMetrics`), and
the wait at the gate is timed on the same clock the gates use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from core.clock import Clock, LoopClock
from core.config import AigcConfig, ModelConfig
from core.errors import DeadlineExceeded, Overloaded
from core.sizing import cost_of
from core.types import AudioRequest, ImageRequest, TextRequest, VideoRequest
from gateway.gate import AdmissionObserver, CostGate

AnyRequest = TextRequest | ImageRequest | AudioRequest | VideoRequest
MIN_REMAINING_S = 0.001  # a deadline closer than this cannot be met: refuse without work


class Caller(Protocol):
    """What admission needs of a call (gateway.calls.Call)."""

    protocol: str
    deadline: float | None

    def remaining(self) -> float | None: ...

    def out_of_time(self) -> bool: ...


class AdmissionMetrics(AdmissionObserver, Protocol):
    """The observer, plus what only the controller sees: how long the decision took, and the
    front door's refusals by protocol."""

    def waited(self, model: str, outcome: str, seconds: float) -> None: ...

    def turned_away(self, reason: str, protocol: str) -> None: ...


class Admission:
    def __init__(
        self,
        config: AigcConfig,
        metrics: AdmissionMetrics,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.metrics = metrics
        self.gates = {
            m.name: CostGate.for_model(m, clock=self.clock, observer=metrics) for m in config.models
        }

    def set_replicas(self, model: str, n: int) -> None:
        """Live replicas of a model (gateway/serve_status.py, from the Serve controller)."""
        self.gates[model].set_replicas(n)

    def set_gateways(self, n: int) -> None:
        """Live gateways in front of the same models (gateway/peers.py), this one included."""
        for gate in self.gates.values():
            gate.set_gateways(n)

    @contextlib.asynccontextmanager
    async def admit(
        self, call: Caller, model: ModelConfig, requests: Sequence[AnyRequest]
    ) -> AsyncIterator[None]:
        """Through the model's gate, as one request whatever the number of parts (a
        completion's list of prompts): refused at once (RESOURCE_EXHAUSTED with a retry hint)
        when it cannot finish before its deadline; work admitted that then runs out of time
        is counted as expired; a block that ends without error teaches the gate's rate."""
        priority = requests[0].priority
        remaining = call.remaining()
        if remaining is not None and remaining < MIN_REMAINING_S:
            self.metrics.turned_away("deadline", call.protocol)
            raise DeadlineExceeded("deadline too short to start the request")
        gate = self.gates[model.name]
        arrived = self.clock.monotonic()

        def waited(outcome: str) -> None:
            self.metrics.waited(model.name, outcome, self.clock.monotonic() - arrived)

        cost = sum(cost_of(r) for r in requests)
        entered = False
        try:
            async with gate.admit(cost, call.deadline, priority) as ticket:
                entered = True
                waited("admitted")
                try:
                    yield
                except BaseException as exc:
                    if _ran_out_of_time(exc, call):  # admitted, then its deadline passed
                        gate.expired(priority)
                    raise
                gate.completed(ticket)
        except Overloaded:
            if not entered:  # refused at once (the gate counted why)
                waited("refused")
                self.metrics.turned_away("admission", call.protocol)
            raise
        except DeadlineExceeded:
            if not entered:  # queued, then its deadline passed (the gate counted it)
                waited("expired")
            raise
        except asyncio.CancelledError:
            if not entered and call.out_of_time():  # queued; the client left at its deadline
                waited("expired")
                gate.expired(priority)
            raise


def _ran_out_of_time(exc: BaseException, call: Caller) -> bool:
    # GeneratorExit: gRPC closed a streaming handler at its `yield` instead of cancelling it
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return call.out_of_time()
    return isinstance(exc, DeadlineExceeded)
