"""How many gateways share the models, so that together they admit what one would.

Each gateway admits against its own estimate of a model's capacity (gateway/admission.py). With
N gateways in front of the same replicas (gateway pods behind a Service, or `aigc gateway
--address` beside `aigc up`), each must count on 1/N of it, or the replicas see N times the
in-flight bound. The gateways find N through one small named Ray actor in their namespace:
every gateway reports itself each `gateway.refresh_models_s` and is counted while its last
report is younger than three periods. A gateway that dies stops reporting and drops out; a
lost registry actor is restarted by Ray and refilled by the next reports. Without Ray (unit
tests with stand-in handles) a gateway counts itself only.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

logger = logging.getLogger("aigc.gateway")
REGISTRY_NAME = "aigc-gateways"


class GatewayRegistry:
    """The Ray actor (no CPU): gateway id -> when its report expires."""

    def __init__(self) -> None:
        self.expires: dict[str, float] = {}

    def report(self, gateway_id: str, ttl_s: float) -> int:
        now = time.monotonic()
        self.expires[gateway_id] = now + ttl_s
        self.expires = {g: t for g, t in self.expires.items() if t > now}
        return len(self.expires)

    def leave(self, gateway_id: str) -> int:
        self.expires.pop(gateway_id, None)
        return len(self.expires)


class Peers:
    """This gateway's membership: `count()` reports it and returns the live gateways (>= 1)."""

    def __init__(self, period_s: float) -> None:
        self.id = uuid.uuid4().hex
        self.ttl_s = 3 * period_s
        self.count_seen = 1
        self._actor: Any = None

    @staticmethod
    def available() -> bool:
        try:
            import ray
        except ImportError:
            return False
        return bool(ray.is_initialized())

    def _registry(self) -> Any:
        if self._actor is None:
            import ray

            actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(GatewayRegistry)
            self._actor = actor.options(  # type: ignore[attr-defined]
                name=REGISTRY_NAME, get_if_exists=True, lifetime="detached"
            ).remote()
        return self._actor

    async def count(self) -> int:
        """Reports this gateway; the number of live gateways (the last one seen if the
        registry cannot be reached now)."""
        try:
            n = int(await self._registry().report.remote(self.id, self.ttl_s))
        except Exception:
            logger.warning("could not reach the gateway registry", exc_info=True)
            self._actor = None  # look it up (or create it) again next time
            return self.count_seen
        self.count_seen = max(1, n)
        return self.count_seen

    async def leave(self) -> None:
        if self._actor is None:
            return
        try:
            await self._actor.leave.remote(self.id)
        except Exception:
            logger.debug("could not leave the gateway registry", exc_info=True)
