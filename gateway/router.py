"""Model names -> configs and typed handles to their deployments; readiness, replica counts
and each model's facts (`core.replica.ModelFacts`) for ListModels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import AigcConfig, Modality, ModelConfig
from core.errors import ModelNotFound
from core.replica import ModelFacts, Replica
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.replicas import ReplicaHandle

logger = logging.getLogger("aigc.gateway")


@dataclass
class ModelState:
    ready: bool = False
    running_replicas: int = 0
    starting_replicas: int = 0
    facts: ModelFacts | None = None  # what the replica reported once it was ready


class ModelRouter:
    def __init__(
        self,
        config: AigcConfig,
        metrics: GatewayMetrics | None = None,
        handle_factory: Callable[[ModelConfig], Any] | None = None,
    ) -> None:
        self.config = config
        self.models = config.by_name()
        self.state = {m.name: ModelState() for m in config.models}
        self.metrics = metrics
        self._handles: dict[str, ReplicaHandle] = {}
        self._handle_factory = handle_factory or _serve_handle
        # Called with (model name, running replicas) after every status read (admission).
        self.replica_listeners: list[Callable[[str, int], None]] = []

    def resolve(self, modality: Modality, name: str) -> ModelConfig:
        if not name:
            default = self.config.default_model(modality)
            if default is None:
                raise ModelNotFound(f"no {modality.value} model is configured", field="model")
            return default
        model = self.models.get(name)
        if model is None or model.modality != modality:
            choices = ", ".join(m.name for m in self.config.models_of(modality)) or "none"
            what = f"is a {model.modality.value} model" if model else "is not served"
            raise ModelNotFound(
                f"model {name!r} {what}; {modality.value} models: {choices}", field="model"
            )
        return model

    def label(self, modality: Modality, name: str) -> str:
        """Metric label: a configured name, never a client-chosen string."""
        try:
            return self.resolve(modality, name).name
        except ModelNotFound:
            return UNKNOWN_MODEL

    def replica(self, model: ModelConfig) -> ReplicaHandle:
        """Typed calls to the model's deployment (`core.replica` names the methods)."""
        h = self._handles.get(model.name)
        if h is None:
            h = ReplicaHandle(self._handle_factory(model))
            self._handles[model.name] = h
        return h

    def facts(self, model: ModelConfig) -> ModelFacts:
        """The model's facts, or empty ones until its replica has reported them."""
        return self.state[model.name].facts or ModelFacts()

    def modality_ready(self, modality: Modality) -> bool:
        return any(self.state[m.name].ready for m in self.config.models_of(modality))

    async def refresh(self) -> None:
        """Reads deployment status from the Serve controller; asks new ready models for facts."""
        from ray import serve

        status = await asyncio.to_thread(serve.status)
        for model in self.config.models:
            app = status.applications.get(model.modality.value)
            dep = app.deployments.get(model.name) if app else None
            st = self.state[model.name]
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
                    described = self.replica(model).unary(Replica.describe)
                    st.facts = await asyncio.wait_for(_awaited(described), 10.0)

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


def _serve_handle(model: ModelConfig) -> Any:
    from ray import serve

    return serve.get_deployment_handle(model.name, app_name=model.modality.value)
