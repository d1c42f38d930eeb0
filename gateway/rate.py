"""What an admission gate learns from completions: the model's service rate and service time.

Rate measurement (Little's law): a completed request that spent W seconds in flight while the
in-flight cost averaged L saw the model drain L / W cost units per second. A batched model
drains faster the more it is given, up to its batch size, so a sample taken while the gate was
not saturated is only a lower bound on the rate: it may raise the estimate, never lower it.
Samples taken at the bound (or with a queue) move the EWMA both ways. The estimate is kept per
replica, so a change in replicas rescales it at once. Each gateway learns from its own
completions, so several gateways on one stack each see their share of the rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RateModel:
    mean_cost: float  # EWMA of completed requests' cost
    service_s: float  # in-flight time of a request on an idle model
    rate_per_replica: float  # cost units per second one replica drains
    smoothing: float = 0.2
    samples: int = 0  # completions learned from (0: still the prior)

    def observe_cost(self, cost: float) -> None:
        """A completed request's cost (every completion, even one with no measurable life)."""
        self.mean_cost += self.smoothing * (cost - self.mean_cost)

    def learn(
        self, cost: float, life: float, mean_inflight: float, saturated: bool, share: float
    ) -> None:
        """A completion that spent `life` seconds in flight while the gate's in-flight cost
        averaged `mean_inflight`; `share`: this gateway's replicas (live replicas / gateways).
        `saturated`: the gate was at its bound or had a queue for most of that life."""
        if life <= 0:
            return
        a = self.smoothing
        # Little's law on this gateway's own traffic gives its share of the drain rate.
        sample = mean_inflight / life / share
        if saturated or sample > self.rate_per_replica:
            self.rate_per_replica += a * (sample - self.rate_per_replica)
        if mean_inflight <= cost * 1.5 or not saturated:
            # A request that ran (nearly) alone or below capacity shows the idle service time.
            normalised = life / max(1.0, cost / self.mean_cost)
            self.service_s += a * (normalised - self.service_s)
        self.samples += 1
