"""Builds one Serve application per modality from the config.

Each application has one deployment per model (its own batching, scaling and resources) and the
ingress Serve requires of an application. The gateway calls the model deployments directly
through `serve.get_deployment_handle(model, app_name=modality)`: no extra hop.

`build_app` is the `import_path` used by KubeRay's serveConfigV2 (`services.app:build_app`).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from core.config import Modality, ModelConfig
from core.deployment import INGRESS_NAME, deployment_options
from core.registry import REPLICAS, load_object


def replica_class(modality: Modality) -> Any:
    return load_object(REPLICAS[modality.value])


@serve.deployment(name=INGRESS_NAME, num_replicas=1, ray_actor_options={"num_cpus": 0})
class ModalityIngress:
    """The ingress Serve requires of an application; nothing calls it. The model deployments
    are bound to it only so that Serve deploys them as part of the application."""

    def __init__(self, **models: Any) -> None:
        del models


def build_modality_app(modality: Modality, models: list[ModelConfig]) -> Application:
    cls = replica_class(modality)
    bound = {
        m.name: cls.options(**deployment_options(m)).bind(m.model_dump(mode="json")) for m in models
    }
    ingress: Any = ModalityIngress
    return ingress.bind(**bound)  # type: ignore[no-any-return]


def build_app(args: dict[str, Any]) -> Application:
    """serveConfigV2 entry: args = {"modality": "...", "models": [model config, ...]}."""
    modality = Modality(args["modality"])
    models = [ModelConfig.model_validate(m) for m in args["models"]]
    wrong = [m.name for m in models if m.modality != modality]
    if wrong:
        raise ValueError(f"models {wrong} are not {modality.value} models")
    return build_modality_app(modality, models)
