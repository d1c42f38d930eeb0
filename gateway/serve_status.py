"""Keeps the model registry's live state current: reads each deployment's status from the Serve
controller, asks a newly ready model for its facts once, exports replica counts, and tells the
listeners (admission) each model's running replicas after every read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from core.replica import Replica
from gateway.metrics import GatewayMetrics
from gateway.registry import ModelRegistry, ModelState

logger = logging.getLogger("aigc.gateway")


class ServeStatus:
    def __init__(self, registry: ModelRegistry, metrics: GatewayMetrics | None = None) -> None:
        self.registry = registry
        self.metrics = metrics
        # Called with (model name, running replicas) after every status read (admission).
        self.replica_listeners: list[Callable[[str, int], None]] = []

    async def refresh(self) -> None:
        """Reads deployment status from the Serve controller; asks new ready models for facts."""
        from ray import serve

        status = await asyncio.to_thread(serve.status)
        try:
            await self._refresh_direct()
        except Exception:  # the models' status still counts; calls go through Serve meanwhile
            logger.warning("could not read the direct endpoints", exc_info=True)
        for model in self.registry.config.models:
            app = status.applications.get(model.modality.value)
            dep = app.deployments.get(model.name) if app else None
            st = self.registry.state[model.name]
            if dep is None:
                st.ready, st.running_replicas, st.starting_replicas = False, 0, 0
            else:
                states = {str(k).rsplit(".", 1)[-1]: int(v) for k, v in dep.replica_states.items()}
                st.running_replicas = states.get("RUNNING", 0)
                st.starting_replicas = states.get("STARTING", 0) + states.get(
                    "PENDING_MIGRATION", 0
                )
                healthy = str(dep.status).endswith(("HEALTHY", "UPSCALING", "DOWNSCALING"))
                st.ready = st.running_replicas > 0 and healthy
            self._publish(model.name, st)
            if dep is None:
                continue
            if st.ready and st.facts is None:
                with contextlib.suppress(Exception):
                    described = self.registry.replica(model).unary(Replica.describe)
                    st.facts = await asyncio.wait_for(_awaited(described), 10.0)

    async def _refresh_direct(self) -> None:
        """The direct endpoints the replicas registered (gateway.direct)."""
        models = self.registry.direct_models()
        if not models:
            return
        from gateway.direct import dead_replicas, read_endpoints

        found = await asyncio.to_thread(read_endpoints)
        for model, direct in models:
            endpoints = found.get(model.name, [])
            unknown = direct.unknown(endpoints)
            dead = await asyncio.to_thread(dead_replicas, unknown) if unknown else set()
            direct.update(endpoints, dead)
            if self.metrics is not None:
                self.metrics.replicas.labels(model.name, "direct").set(len(direct.live))

    def _publish(self, name: str, st: ModelState) -> None:
        if self.metrics is not None:
            self.metrics.replicas.labels(name, "running").set(st.running_replicas)
            self.metrics.replicas.labels(name, "starting").set(st.starting_replicas)
        for listener in self.replica_listeners:
            listener(name, st.running_replicas)

    async def refresh_forever(self, period_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.warning("could not read Serve status", exc_info=True)
            await asyncio.sleep(period_s)


async def _awaited(response: Any) -> Any:
    return await response
