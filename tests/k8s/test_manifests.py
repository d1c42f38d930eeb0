"""Offline validation of the Kubernetes overlays: what `kubectl apply` and the operators would
reject, caught without a cluster. Every overlay is rendered with `kubectl kustomize`."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from aigc import k8s

OVERLAYS = sorted(k8s.OVERLAYS)


@functools.cache
def _build(overlay: str) -> k8s.Rendered:
    return k8s.Rendered(overlay, k8s.kustomize(k8s.K8S_DIR / "overlays" / overlay))


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> k8s.Rendered:
    return _build(request.param)


@pytest.fixture(scope="module")
def crds() -> Path:
    directory = k8s.crd_dir()
    if directory is None:
        message = (
            f"${k8s.CRD_ENV} is unset: set it to the KubeRay/Prometheus Operator CRD directory"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert directory.is_dir(), f"${k8s.CRD_ENV}={directory} is not a directory"
    return directory


def _serve(r: k8s.Rendered) -> str:
    return str(r.one("RayService")["spec"]["serveConfigV2"])


def test_generated_files_match_the_config() -> None:
    for overlay in OVERLAYS:
        assert k8s.drift(overlay) == []


def test_render_is_deterministic() -> None:
    assert k8s.render("cpu") == k8s.render("cpu")


def test_overlay_has_every_kind(rendered: k8s.Rendered) -> None:
    kinds = {d["kind"] for d in rendered.docs}
    assert kinds >= {
        "RayService", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap",
    }  # fmt: skip


def test_builtin_kinds_are_valid(rendered: k8s.Rendered) -> None:
    assert k8s.check_builtin(rendered.docs) == []


def test_custom_resources_match_the_crds(rendered: k8s.Rendered, crds: Path) -> None:
    assert k8s.check_custom(rendered.docs, crds) == []


def test_serve_config_is_valid(rendered: k8s.Rendered) -> None:
    assert k8s.check_serve_config(_serve(rendered)) == []


def test_project_rules(rendered: k8s.Rendered) -> None:
    assert k8s.check_project(rendered, k8s.load_overlay_config(rendered.overlay)) == []


def test_gateway_config_in_configmap_is_the_rendered_one(rendered: k8s.Rendered) -> None:
    cm = [d for d in rendered.of("ConfigMap") if d["metadata"]["name"].startswith("aigc-config")]
    data = yaml.safe_load(cm[0]["data"]["aigc.yaml"])
    assert data["gateway"]["host"] == "0.0.0.0"
    assert all(m.get("weights") is None or not m["weights"].startswith(".") for m in data["models"])


def test_gpu_overlay_requests_gpus() -> None:
    r = _build("gpu")
    groups = r.one("RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpu = next(g for g in groups if g["groupName"] == "gpu")
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    serve = yaml.safe_load(_serve(r))
    actors = [d["ray_actor_options"] for a in serve["applications"] for d in a["deployments"]]
    assert any(0 < a.get("num_gpus", 0) < 1 for a in actors)


def test_dockerfile_pins_the_ray_version() -> None:
    assert k8s.check_dockerfile() == []


def test_dashboard_is_grafana_json() -> None:
    import json

    dash = json.loads((k8s.K8S_DIR / "monitoring" / "dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in (
        "aigc_requests_total", "aigc_request_duration_seconds_bucket",
        "aigc_time_to_first_token_seconds_bucket", "aigc_inter_token_latency_seconds_bucket",
        "ray_aigc_replica_batch_size", "ray_aigc_replica_queue_wait_seconds_bucket",
        "ray_aigc_replica_batch_compute_seconds_bucket", "aigc_inflight_requests",
        "aigc_rejected_requests_total",
    ):  # fmt: skip
        assert metric in exprs, metric


# ---- the validators reject what they must (each would pass silently without its check)


def _cpu() -> k8s.Rendered:
    return _build("cpu")


def _edited(r: k8s.Rendered, kind: str, edit: Any) -> list[dict[str, Any]]:
    docs = copy.deepcopy(r.docs)
    edit(next(d for d in docs if d["kind"] == kind))
    return docs


def test_strict_schemas_reject_unknown_fields() -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    errors = k8s.check_builtin(_edited(_cpu(), "Deployment", typo), versions=("1.33.0",))
    assert any("readinesProbe" in e for e in errors)


def test_missing_schema_is_an_error() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert k8s.check_builtin([doc], versions=("1.33.0",))


def test_crd_schemas_reject_unknown_fields(crds: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True

    errors = k8s.check_custom(_edited(_cpu(), "RayService", typo), crds)
    assert any("enableInTreeAutoScaling" in e for e in errors)


def test_serve_config_rejects_misspelled_keys() -> None:
    serve = yaml.safe_load(_serve(_cpu()))
    serve["applications"][0]["deployments"][1]["num_replica"] = 2
    serve["applications"][0]["deployments"][1]["ray_actor_options"]["num_gpu"] = 1
    errors = k8s.check_serve_config(yaml.safe_dump(serve))
    assert any("num_replica" in e for e in errors) and any("num_gpu" in e for e in errors)


def test_project_rules_catch_port_and_image_mistakes() -> None:
    def wrong(d: dict[str, Any]) -> None:
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["grpc"]["port"] = 50052
        c["image"] = "ghcr.io/aigc-serve/aigc-serve:latest"

    r = _cpu()
    errors = k8s.check_project(
        k8s.Rendered("cpu", _edited(r, "Deployment", wrong)), k8s.load_overlay_config("cpu")
    )
    assert any("readinessProbe port" in e for e in errors)
    assert any("not pinned" in e for e in errors)


def test_cli_render_writes_what_drift_compares(tmp_path: Path) -> None:
    assert k8s.main(["render", "--overlay", "cpu", "--out", str(tmp_path)]) == 0
    for name, text in k8s.render("cpu").items():
        assert (tmp_path / name).read_text() == text
