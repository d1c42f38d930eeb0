"""The served models: names and aliases -> configs, typed handles to their deployments, and each
model's live state (readiness, replica counts, its facts, `core.replica.ModelFacts`), which
`gateway.serve_status.ServeStatus` keeps current from the Serve controller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import AigcConfig, Modality, ModelConfig
from core.errors import ModelNotFound
from core.replica import ModelFacts
from gateway.metrics import UNKNOWN_MODEL
from gateway.replicas import ReplicaHandle

if TYPE_CHECKING:
    from gateway.direct import DirectReplicas


@dataclass
class ModelState:
    ready: bool = False
    running_replicas: int = 0
    starting_replicas: int = 0
    facts: ModelFacts | None = None  # what the replica reported once it was ready


class ModelRegistry:
    def __init__(
        self,
        config: AigcConfig,
        handle_factory: Callable[[ModelConfig], Any] | None = None,
    ) -> None:
        self.config = config
        self.models = config.by_name()
        self.state = {m.name: ModelState() for m in config.models}
        self._handles: dict[str, ReplicaHandle] = {}
        self._handle_factory = handle_factory or _serve_handle

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
            direct = None
            if model.direct_calls and self._handle_factory is _serve_handle:
                from gateway.direct import DirectReplicas

                direct = DirectReplicas(model.name)
            h = ReplicaHandle(self._handle_factory(model), direct)
            self._handles[model.name] = h
        return h

    def direct_models(self) -> list[tuple[ModelConfig, DirectReplicas]]:
        """The models called directly, with their endpoints (`ServeStatus` keeps them)."""
        out = []
        for model in self.config.models:
            direct = self.replica(model).direct
            if direct is not None:
                out.append((model, direct))
        return out

    def facts(self, model: ModelConfig) -> ModelFacts:
        """The model's facts, or empty ones until its replica has reported them."""
        return self.state[model.name].facts or ModelFacts()

    def modality_ready(self, modality: Modality) -> bool:
        return any(self.state[m.name].ready for m in self.config.models_of(modality))


def _serve_handle(model: ModelConfig) -> Any:
    """The model's Serve handle. Requests and responses cross with the standard library's
    pickle, not cloudpickle (Serve's default): both ends import our domain types
    (core.types), so nothing needs pickling by value, and cloudpickle's by-value checks cost
    the gateway CPU on every call and every streamed chunk (BENCHMARKS.md section 12)."""
    from ray import serve

    handle = serve.get_deployment_handle(model.name, app_name=model.modality.value)
    return handle.options(request_serialization="pickle", response_serialization="pickle")
