"""One Ray cluster for tests/cluster: a head with no CPUs for replicas (like the KubeRay head),
two worker nodes, each a `ray start` session with its own temp dir and Ray auth off; the apps
deployed by `aigc up --address` in a process of its own, which is also the gateway.

The test process is no Ray driver: it calls the gateway with the real `aigc.Client` over gRPC,
reads Serve's status (replicas and their node ids) from the dashboard's REST API and the
gateway's `aigc_model_replicas` gauge from its /metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from load_tests.cluster import RayCluster
from load_tests.procs import AigcUp

WORKER_CPUS = 2
# Serve pushes autoscaling metrics every 10 s by default (handles in the gateway, replicas on
# the nodes); every 0.5 s here, with the short windows of the test config, so scaling follows
# a load step in seconds. Serve settings only: the decisions are Serve's own.
FAST_METRICS = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}
SMALL = {"num_cpus": 0.25}


def cluster_config() -> dict[str, Any]:
    """Echo engines (2 cores suffice): three fixed two-replica models, one per modality, and an
    autoscaled image model with a fixed service time and one request per batch."""
    two = {"min_replicas": 2, "max_replicas": 2}
    models = [
        {"name": "echo-text", "modality": "text", "engine": "echo",
         "options": {"delay_s": 0.05}, "resources": SMALL, "scaling": two},
        {"name": "echo-image", "modality": "image", "engine": "echo",
         "options": {"delay_s": 0.02}, "resources": SMALL, "scaling": two,
         "batching": {"max_batch_size": 4}, "limits": {"max_images": 4}},
        {"name": "echo-audio", "modality": "audio", "engine": "echo",
         "resources": SMALL, "scaling": two},
        {"name": "echo-scale", "modality": "image", "engine": "echo",
         "options": {"delay_s": 0.2}, "resources": SMALL,
         "batching": {"max_batch_size": 1}, "limits": {"max_images": 1},
         "scaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                     "upscale_delay_s": 0.5, "downscale_delay_s": 2, "look_back_period_s": 2,
                     "max_replicas_per_node": 2},
         # Serve sees the queue: up to 4 requests per live replica leave the gateway
         "admission": {"inflight_batches": 4}},
    ]  # fmt: skip
    return {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": -1,
                    "drain_delay_s": 0.2, "grace_period_s": 2, "refresh_models_s": 0.5},
        "ray": {"namespace": "aigc-cluster-test"},
        "models": models,
    }  # fmt: skip


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster(env=FAST_METRICS)  # torn down after the module, before other tests
    try:
        cluster.start_head()
        cluster.add_worker("w1", WORKER_CPUS)
        cluster.add_worker("w2", WORKER_CPUS)
        cluster.wait_nodes(3)
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def aigc_up(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AigcUp]:
    path = Path(tmp_path_factory.mktemp("cluster")) / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster_config(), sort_keys=False))
    driver_tmp = Path(ray_cluster.root) / "driver"  # a private temp dir for the driver too
    driver_tmp.mkdir(exist_ok=True)
    up = AigcUp.start(
        path, ray_cluster.address, env={**FAST_METRICS, "RAY_TMPDIR": str(driver_tmp)}
    )
    try:
        yield up
    finally:
        up.stop()
