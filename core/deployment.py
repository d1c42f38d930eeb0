"""Serve deployment settings of one model: the single place the config becomes Serve options.

Used where Serve applications are built (`services.app`) and where they are rendered for
Kubernetes (`control.k8s`), which must not need Ray to do so.
"""

from __future__ import annotations

from typing import Any

from core.config import ModelConfig

# Every Serve application's ingress deployment (`services.app.ModalityIngress`).
INGRESS_NAME = "ingress"
# A stopping replica: Serve drains its own requests (checking every WAIT_LOOP_S), then runs
# the replica's __del__ (which drains its direct calls: services.replica), within TIMEOUT_S
# in all before the controller kills it.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 20.0
GRACEFUL_SHUTDOWN_WAIT_LOOP_S = 2.0


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
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_TIMEOUT_S,
        "graceful_shutdown_wait_loop_s": GRACEFUL_SHUTDOWN_WAIT_LOOP_S,
        "logging_config": {"enable_access_log": model.access_log},
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
