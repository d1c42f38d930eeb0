"""Offline validation of the Kubernetes overlays: what `kubectl apply` and the operators would
reject, caught without a cluster. Every overlay is rendered with `kubectl kustomize`."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from control.k8s import crds as crd_schemas
from control.k8s.crds import check_custom, crd_dir
from control.k8s.kustomize import Rendered, kustomize
from control.k8s.layout import OVERLAYS, Layout
from control.k8s.render import drift, load_overlay_config, render
from control.k8s.rules import check_dockerfile, check_project
from control.k8s.validate import check_builtin, check_serve_config
from core.config import AigcConfig, ModelConfig

REPO = Path(__file__).resolve().parents[2]
LAYOUT = Layout.at(REPO)
NAMES = sorted(OVERLAYS)


@functools.cache
def _build(overlay: str) -> Rendered:
    return Rendered(overlay, kustomize(LAYOUT.overlay_dir(overlay)))


def _config(overlay: str) -> AigcConfig:
    return load_overlay_config(LAYOUT.overlay_config(overlay))


@pytest.fixture(params=NAMES)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return _build(request.param)


@pytest.fixture(scope="module")
def crds() -> Path:
    """The compact schemas committed in k8s/crds, or $AIGC_CRD_DIR."""
    directory = crd_dir(LAYOUT.k8s_dir)
    assert directory.is_dir(), f"{directory} is not a directory (${crd_schemas.CRD_ENV})"
    return directory


def _serve(r: Rendered) -> str:
    return str(r.one("RayService")["spec"]["serveConfigV2"])


def test_generated_files_match_the_config() -> None:
    for overlay in NAMES:
        assert drift(LAYOUT, overlay) == []


def test_render_is_deterministic() -> None:
    assert render(LAYOUT, "cpu") == render(LAYOUT, "cpu")


def test_overlay_has_every_kind(rendered: Rendered) -> None:
    kinds = {d["kind"] for d in rendered.docs}
    assert kinds >= {
        "RayService", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap",
    }  # fmt: skip


def test_builtin_kinds_are_valid(rendered: Rendered) -> None:
    assert check_builtin(rendered.docs) == []


def test_custom_resources_match_the_crds(rendered: Rendered, crds: Path) -> None:
    assert check_custom(rendered.docs, crds) == []


def test_serve_config_is_valid(rendered: Rendered) -> None:
    assert check_serve_config(_serve(rendered)) == []


def test_project_rules(rendered: Rendered) -> None:
    assert check_project(rendered, _config(rendered.overlay)) == []


def test_relative_weights_are_paths_inside_the_image() -> None:
    assert _config("cpu").by_name()["fortune"].weights == "/app/models/fortune"
    m = ModelConfig(name="m", modality="image", engine="gan", weights="./w")
    image = PurePosixPath("/app/configs")
    assert m.with_weights_resolved(image).weights == "/app/configs/w"
    up = m.model_copy(update={"weights": "../../x/./y"})
    assert up.with_weights_resolved(image).weights == "/x/y"


def test_gateway_config_in_configmap_is_the_rendered_one(rendered: Rendered) -> None:
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
    assert check_dockerfile(LAYOUT) == []


def test_dashboard_is_grafana_json() -> None:
    dash = json.loads((LAYOUT.k8s_dir / "monitoring" / "dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in (
        "aigc_requests_total", "aigc_request_duration_seconds_bucket",
        "aigc_time_to_first_token_seconds_bucket", "aigc_inter_token_latency_seconds_bucket",
        "ray_aigc_replica_batch_size", "ray_aigc_replica_queue_wait_seconds_bucket",
        "ray_aigc_replica_batch_compute_seconds_bucket", "aigc_inflight_requests",
        "aigc_rejected_requests_total", "aigc_admission_inflight_cost",
        "aigc_admission_bound_cost", "aigc_admission_queued_cost",
        "aigc_admission_refused_requests_total", "aigc_admitted_expired_total",
        "aigc_admission_rate_cost_per_second",
    ):  # fmt: skip
        assert metric in exprs, metric


def test_dashboard_and_rules_name_only_metrics_the_gateway_exports(tmp_path: Path) -> None:
    """Every aigc_* series the dashboard and the alert rules query is one the gateway's
    registry (its metrics, the gate collector and the job store's) exposes: a renamed metric
    breaks this, not a panel or an alert that silently shows nothing."""
    import re
    from types import SimpleNamespace

    from prometheus_client.metrics_core import Metric

    from gateway.gate import CostGate
    from gateway.jobs.metrics import JobMetrics
    from gateway.jobs.store import JobStore
    from gateway.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    metrics.watch_gates(lambda: {"m": CostGate()})
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    store.migrate()
    metrics.registry.register(JobMetrics(store, SimpleNamespace(lines_run=0)))
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum")}
    exported = set()
    families: list[Metric] = list(metrics.registry.collect())
    for family in families:
        exported.add(family.name)
        exported.update(family.name + s for s in suffixes.get(family.type, ()))
    monitoring = LAYOUT.k8s_dir / "monitoring"
    text = (monitoring / "dashboard.json").read_text() + (
        monitoring / "prometheusrule.yaml"
    ).read_text()
    queried = set(re.findall(r"(?<![\w:])aigc_[a-z_]+", text))
    store.close()
    assert "aigc_admission_bound_cost" in queried and "aigc_requests_total" in queried
    assert {"aigc_batch_lines", "aigc_batch_lines_run_total"} <= queried
    assert queried <= exported, sorted(queried - exported)


def _alerts() -> dict[str, dict[str, Any]]:
    rule = yaml.safe_load((LAYOUT.k8s_dir / "monitoring" / "prometheusrule.yaml").read_text())
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_hold_a_severity_and_a_summary() -> None:
    for name, rule in _alerts().items():
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name


def test_batch_alerts() -> None:
    """A batch that stops progressing: lines pending (the same figure on every gateway: max)
    while the lines run, summed over gateways, have not moved for 15 minutes, held 15 minutes;
    and the oldest waiting batch past 20 hours (of its 24 h window)."""
    alerts = _alerts()
    stalled = alerts["AigcBatchStalled"]
    expr = " ".join(stalled["expr"].split())
    assert 'max(aigc_batch_lines{state="pending"}) > 0' in expr
    assert "and on() sum(rate(aigc_batch_lines_run_total[15m])) == 0" in expr
    assert stalled["for"] == "15m"
    waiting = alerts["AigcBatchWaitingLong"]
    assert waiting["expr"].strip() == "max(aigc_batch_oldest_waiting_seconds) > 20 * 3600"


# ---- the validators reject what they must (each would pass silently without its check)


def _cpu() -> Rendered:
    return _build("cpu")


def _edited(r: Rendered, kind: str, edit: Any) -> list[dict[str, Any]]:
    docs = copy.deepcopy(r.docs)
    edit(next(d for d in docs if d["kind"] == kind))
    return docs


def test_strict_schemas_reject_unknown_fields() -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    errors = check_builtin(_edited(_cpu(), "Deployment", typo), versions=("1.33.0",))
    assert any("readinesProbe" in e for e in errors)


def test_missing_schema_is_an_error() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert check_builtin([doc], versions=("1.33.0",))


def test_crd_schemas_reject_unknown_fields(crds: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True

    errors = check_custom(_edited(_cpu(), "RayService", typo), crds)
    assert any("enableInTreeAutoScaling" in e for e in errors)


def test_serve_config_rejects_misspelled_keys() -> None:
    serve = yaml.safe_load(_serve(_cpu()))
    serve["applications"][0]["deployments"][1]["num_replica"] = 2
    serve["applications"][0]["deployments"][1]["ray_actor_options"]["num_gpu"] = 1
    errors = check_serve_config(yaml.safe_dump(serve))
    assert any("num_replica" in e for e in errors) and any("num_gpu" in e for e in errors)


def _rule_errors(edit: Any) -> list[str]:
    return check_project(Rendered("cpu", _edited(_cpu(), "Deployment", edit)), _config("cpu"))


def _gateway(d: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
    return container


def test_project_rules_catch_port_and_image_mistakes() -> None:
    def wrong(d: dict[str, Any]) -> None:
        c = _gateway(d)
        c["startupProbe"]["grpc"]["port"] = 50052
        c["image"] = "ghcr.io/aigc-serve/aigc-serve:latest"

    errors = _rule_errors(wrong)
    assert any("startupProbe port 50052" in e for e in errors)
    assert any("not pinned" in e for e in errors)


def test_project_rules_know_the_http_port_and_probe_paths() -> None:
    def wrong(d: dict[str, Any]) -> None:
        c = _gateway(d)
        c["readinessProbe"]["httpGet"]["path"] = "/healthz"
        c["livenessProbe"] = {"httpGet": {"path": "/livez", "port": 8001}}
        next(p for p in c["ports"] if p["name"] == "http")["containerPort"] = 8001

    errors = _rule_errors(wrong)
    assert any("readinessProbe path '/healthz'" in e for e in errors)
    assert any("livenessProbe port 8001 != HTTP port 8000" in e for e in errors)
    assert any("container port http is 8001, config says 8000" in e for e in errors)


def test_project_rules_catch_port_collisions_on_the_gateway_pod() -> None:
    def clash(d: dict[str, Any]) -> None:
        c = _gateway(d)
        c["args"] = [c["args"][0].replace("listen-port=52365", "listen-port=8000")]

    errors = _rule_errors(clash)
    assert any("port 8000 is both http and ray --dashboard-agent-listen-port" in e for e in errors)


def test_project_rules_want_the_http_port_exposed_and_admitted() -> None:
    r = _cpu()
    docs = copy.deepcopy(r.docs)
    svc = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "aigc-gateway"
    )
    svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["name"] != "http"]
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    for rule in policy["spec"]["ingress"]:
        rule["ports"] = [p for p in rule.get("ports", []) if p["port"] != 8000]
    errors = check_project(Rendered("cpu", docs), _config("cpu"))
    assert any("Service aigc-gateway exposes no http port" in e for e in errors)
    assert any("NetworkPolicy aigc-gateway admits nothing on the http port" in e for e in errors)


def test_api_keys_come_from_the_secret() -> None:
    for overlay in NAMES:
        cfg = _config(overlay)
        assert cfg.gateway.security.api_keys_env == "AIGC_API_KEYS"
        env = {
            e["name"]: e for e in _gateway(_build(overlay).one("Deployment", "aigc-gateway"))["env"]
        }
        ref = env["AIGC_API_KEYS"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "aigc-api-keys", "key": "keys"}

    def literal(d: dict[str, Any]) -> None:
        env = _gateway(d)["env"]
        var = next(e for e in env if e["name"] == "AIGC_API_KEYS")
        var.pop("valueFrom")
        var["value"] = "ci:0123456789abcdef"

    assert any("must come from a Secret" in e for e in _rule_errors(literal))
    open_cfg = _config("cpu").model_copy(deep=True)
    gateway = open_cfg.gateway.model_copy(
        update={"security": open_cfg.gateway.security.model_copy(update={"api_keys_env": None})}
    )
    errors = check_project(_cpu(), open_cfg.model_copy(update={"gateway": gateway}))
    assert any("must require API keys" in e for e in errors)


def _with_jobs(**update: Any) -> AigcConfig:
    cfg = _config("cpu").model_copy(deep=True)
    jobs = cfg.gateway.jobs.model_copy(update=update)
    return cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"jobs": jobs})})


def test_jobs_database_comes_from_the_secret() -> None:
    """Every gateway pod shares one PostgreSQL; its URL (password included) is in the Secret
    aigc-jobs-database, which the Deployment references and no manifest carries."""
    for overlay in NAMES:
        cfg = _config(overlay)
        assert cfg.gateway.jobs.database_env == "AIGC_JOBS_DATABASE"
        assert cfg.gateway.jobs.database is None
        rendered = _build(overlay)
        env = {e["name"]: e for e in _gateway(rendered.one("Deployment", "aigc-gateway"))["env"]}
        ref = env["AIGC_JOBS_DATABASE"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "aigc-jobs-database", "key": "url"}  # not optional: no pod
        assert rendered.of("Secret") == []
        cm = next(
            d for d in rendered.of("ConfigMap") if d["metadata"]["name"].startswith("aigc-config")
        )
        assert "postgresql" not in cm["data"]["aigc.yaml"]

    def literal(d: dict[str, Any]) -> None:
        var = next(e for e in _gateway(d)["env"] if e["name"] == "AIGC_JOBS_DATABASE")
        var.pop("valueFrom")
        var["value"] = "postgresql+psycopg://aigc:secret@db:5432/aigc"

    assert any("AIGC_JOBS_DATABASE must come from a Secret" in e for e in _rule_errors(literal))

    def optional(d: dict[str, Any]) -> None:
        var = next(e for e in _gateway(d)["env"] if e["name"] == "AIGC_JOBS_DATABASE")
        var["valueFrom"]["secretKeyRef"]["optional"] = True

    assert any("must not be optional" in e for e in _rule_errors(optional))

    def missing(d: dict[str, Any]) -> None:
        c = _gateway(d)
        c["env"] = [e for e in c["env"] if e["name"] != "AIGC_JOBS_DATABASE"]

    assert any("does not set $AIGC_JOBS_DATABASE" in e for e in _rule_errors(missing))
    errors = check_project(_cpu(), _with_jobs(database_env=None))
    assert any("jobs.database_env must be set" in e for e in errors)
    errors = check_project(_cpu(), _with_jobs(database="postgresql+psycopg://a:b@db/aigc"))
    assert any("never from the config" in e for e in errors)
    assert check_project(_cpu(), _with_jobs(enabled=False, database_env=None)) == []

    committed = copy.deepcopy(_cpu().docs)
    committed.append(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aigc-jobs-database"},
         "stringData": {"url": "postgresql+psycopg://aigc:secret@db/aigc"}}
    )  # fmt: skip
    errors = check_project(Rendered("cpu", committed), _config("cpu"))
    assert any("Secret/aigc-jobs-database is in the manifests" in e for e in errors)

    def no_egress(d: dict[str, Any]) -> None:
        d["spec"]["egress"] = [
            rule for rule in d["spec"]["egress"]
            if all(p["port"] != 5432 for p in rule.get("ports", []))
        ]  # fmt: skip

    docs = _edited(_cpu(), "NetworkPolicy", no_egress)
    errors = check_project(Rendered("cpu", docs), _config("cpu"))
    assert any("reach nothing on PostgreSQL's port 5432" in e for e in errors)
