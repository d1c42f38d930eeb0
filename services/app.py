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

from aigc.config import Modality, ModelConfig
from aigc.registry import REPLICAS, load_object

INGRESS_NAME = "ingress"


def replica_class(modality: Modality) -> Any:
    return load_object(REPLICAS[modality.value])


def deployment_options(model: ModelConfig) -> dict[str, Any]:
    """Serve deployment options for one model: the single place config becomes Serve settings."""
    s, r = model.scaling, model.resources
    actor: dict[str, Any] = {"num_cpus": r.num_cpus}
    if r.num_gpus:
        actor["num_gpus"] = r.num_gpus
    if r.memory_gb:
        actor["memory"] = int(r.memory_gb * 2**30)
    options: dict[str, Any] = {
        "name": model.name,
        "max_ongoing_requests": model.max_ongoing_requests,
        "max_queued_requests": s.max_queued_requests,
        "ray_actor_options": actor,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 20.0,
    }
    if s.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = s.max_replicas_per_node
    if s.min_replicas == s.max_replicas:
        options["num_replicas"] = s.min_replicas
    else:
        autoscaling: dict[str, Any] = {
            "min_replicas": s.min_replicas,
            "max_replicas": s.max_replicas,
            "target_ongoing_requests": s.target_ongoing_requests,
            "upscale_delay_s": s.upscale_delay_s,
            "downscale_delay_s": s.downscale_delay_s,
            "look_back_period_s": s.look_back_period_s,
        }
        if s.initial_replicas is not None:
            autoscaling["initial_replicas"] = s.initial_replicas
        options["autoscaling_config"] = autoscaling
    return options


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
