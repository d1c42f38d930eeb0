"""Project rules no schema knows: ports agree between the config, containers, probes, Services
and NetworkPolicies; API keys and the job store's URL come from Secrets (referenced, never
committed); images are pinned; every model has resources and bounds that fit the worker groups;
the Dockerfile's Ray is pyproject's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from control.k8s.kustomize import Rendered, kind_name
from control.k8s.layout import Layout
from control.k8s.render import SERVE_HTTP_PORT
from core.config import AigcConfig

GATEWAY = "aigc-gateway"  # Deployment, Service and NetworkPolicy of the gateway
# The gateway's HTTP front end (gateway.http_port): readiness and liveness.
READY_PATH = "/readyz"
LIVE_PATH = "/livez"
# The job store's PostgreSQL port, which the gateway's NetworkPolicy must let it reach.
POSTGRES_PORT = 5432


def _pod_specs(r: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in r.docs:
        spec = d.get("spec", {})
        if "template" in spec and d["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield kind_name(d), spec["template"]["spec"]
    for rs in r.of("RayService"):
        cluster = rs["spec"]["rayClusterConfig"]
        yield "RayService head", cluster["headGroupSpec"]["template"]["spec"]
        for g in cluster.get("workerGroupSpecs", []):
            yield f"RayService worker group {g['groupName']}", g["template"]["spec"]


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {
        p.get("name", str(p["containerPort"])): p["containerPort"]
        for p in container.get("ports", [])
    }


def _number(port: Any, named: dict[str, int]) -> int | None:
    """A port given by number or by container port name."""
    return named.get(port) if isinstance(port, str) else port


def _cpus(quantity: Any) -> float:
    q = str(quantity)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def check_images(r: Rendered) -> list[str]:
    errors = []
    for where, pod in _pod_specs(r):
        for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            image = c.get("image", "")
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and (not tag or tag == "latest"):
                errors.append(f"{where}: container {c['name']} image {image!r} is not pinned")
    return errors


def _client_ports(cfg: AigcConfig) -> tuple[dict[str, int], list[str]]:
    """Ports clients reach (name -> number): gRPC, and HTTP unless it is off."""
    ports = {"grpc": cfg.gateway.port}
    http = cfg.gateway.http_port
    if http == 0:
        return ports, ["gateway.http_port 0 (any free port) cannot be probed: pin it, or -1 = off"]
    if http > 0:
        ports["http"] = http
    return ports, []


def _check_probes(container: dict[str, Any], cfg: AigcConfig) -> list[str]:
    """Startup: gRPC health (attached to Ray). Readiness and liveness: the HTTP front end's
    /readyz and /livez when it is on, else gRPC health."""
    from aigc.wire import MODELS_SERVICE, SERVICE_NAMES

    errors = []
    ports = _ports(container)
    http_on = cfg.gateway.http_port > 0
    health_names = {"", MODELS_SERVICE, *SERVICE_NAMES.values()}
    http_paths = {"readinessProbe": READY_PATH, "livenessProbe": LIVE_PATH}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container.get(probe, {})
        if http_on and probe in http_paths:
            get = spec.get("httpGet")
            if not get:
                errors.append(f"gateway {probe} must be an HTTP probe (GET {http_paths[probe]})")
                continue
            port = _number(get.get("port"), ports)
            if port != cfg.gateway.http_port:
                errors.append(
                    f"gateway {probe} port {get.get('port')} != HTTP port {cfg.gateway.http_port}"
                )
            if get.get("path") != http_paths[probe]:
                errors.append(f"gateway {probe} path {get.get('path')!r} != {http_paths[probe]}")
            continue
        grpc = spec.get("grpc")
        if not grpc:
            errors.append(f"gateway {probe} must be a native gRPC probe")
            continue
        if grpc["port"] != cfg.gateway.port:
            errors.append(f"gateway {probe} port {grpc['port']} != gRPC port {cfg.gateway.port}")
        if grpc.get("service", "") not in health_names:
            errors.append(f"gateway {probe} service {grpc.get('service')!r} is not served")
    return errors


def _check_exposed(r: Rendered, ports: dict[str, int], clients: dict[str, int]) -> list[str]:
    """The Service targets only container ports and carries every client port; the gateway's
    NetworkPolicy admits every client port."""
    errors = []
    svc = r.one("Service", GATEWAY)
    targets = {_number(p.get("targetPort", p["port"]), ports) for p in svc["spec"]["ports"]}
    for p in svc["spec"]["ports"]:
        if _number(p.get("targetPort", p["port"]), ports) not in ports.values():
            errors.append(f"Service {GATEWAY} port {p['name']} targets no container port")
    policy = r.one("NetworkPolicy", GATEWAY)
    admitted = {
        _number(p.get("port"), ports)
        for rule in policy["spec"].get("ingress", [])
        for p in rule.get("ports", [])
    }
    for name, port in clients.items():
        if port not in targets:
            errors.append(f"Service {GATEWAY} exposes no {name} port ({port})")
        if port not in admitted:
            errors.append(f"NetworkPolicy {GATEWAY} admits nothing on the {name} port ({port})")
    return errors


def check_api_keys(r: Rendered, cfg: AigcConfig) -> list[str]:
    """A deployed gateway requires API keys, and they come from a Secret, never the manifest."""
    security = cfg.gateway.security
    if not security.auth_enabled:
        return ["gateway.security: a deployed gateway must require API keys (api_keys_env)"]
    if not security.api_keys_env:
        return []
    return _secret_env(r, security.api_keys_env, "API keys")


def _secret_env(r: Rendered, name: str, what: str) -> list[str]:
    """The gateway container sets $name from a Secret that must exist (secretKeyRef, not
    optional): a value in the manifest would carry the secret in the repository."""
    container = r.one("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    var = {e["name"]: e for e in container.get("env", [])}.get(name)
    if var is None:
        return [f"gateway container does not set ${name} ({what})"]
    ref = var.get("valueFrom", {}).get("secretKeyRef")
    if not ref:
        return [f"gateway ${name} must come from a Secret (secretKeyRef)"]
    if ref.get("optional"):
        return [f"gateway ${name}: its Secret must not be optional"]
    return []


def check_no_secrets(r: Rendered) -> list[str]:
    """Secrets are created at install; the manifests only reference them."""
    return [
        f"{kind_name(secret)} is in the manifests: Secrets are created at install"
        for secret in r.of("Secret")
    ]


def check_jobs_database(r: Rendered, cfg: AigcConfig) -> list[str]:
    """Every gateway pod shares one job store: PostgreSQL, its URL (password included) from a
    Secret the manifests reference and never carry, reachable through the NetworkPolicy."""
    jobs = cfg.gateway.jobs
    if not jobs.enabled:
        return []
    errors = []
    if jobs.database:
        errors.append(
            "gateway.jobs.database: a deployed gateway reads the job store's URL from a Secret "
            "(jobs.database_env), never from the config (the ConfigMap would carry the password)"
        )
    if not jobs.database_env:
        return [
            *errors,
            "gateway.jobs.database_env must be set: without a shared database each gateway pod "
            "keeps batches in its own SQLite, and they go with the pod",
        ]
    errors += _secret_env(r, jobs.database_env, "the job store")
    policy = r.one("NetworkPolicy", GATEWAY)["spec"]
    ports = [p for rule in policy.get("egress", []) for p in rule.get("ports", [])]
    if "Egress" in policy.get("policyTypes", []) and not any(
        isinstance(p.get("port"), int) and p["port"] <= POSTGRES_PORT <= p.get("endPort", p["port"])
        for p in ports
    ):
        errors.append(
            f"NetworkPolicy {GATEWAY} lets the gateway reach nothing on PostgreSQL's port "
            f"{POSTGRES_PORT} (the job store)"
        )
    return errors


def check_ports(r: Rendered, cfg: AigcConfig) -> list[str]:
    container = r.one("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    ports = _ports(container)
    clients, errors = _client_ports(cfg)
    want = {**clients, "metrics": cfg.gateway.metrics_port}
    for name, port in want.items():
        if ports.get(name) != port:
            errors.append(f"gateway container port {name} is {ports.get(name)}, config says {port}")
    if cfg.gateway.http_port < 0 and "http" in ports:
        errors.append("gateway container exposes http but gateway.http_port is -1 (off)")
    errors += _check_probes(container, cfg)
    errors += _check_exposed(r, ports, clients)
    serve = yaml.safe_load(r.one("RayService")["spec"]["serveConfigV2"])
    serve_port = serve.get("http_options", {}).get("port", SERVE_HTTP_PORT)
    metrics = cfg.ray.metrics_export_port
    cluster = r.one("RayService")["spec"]["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    for name, group in groups:
        ray_ports = _ports(group["template"]["spec"]["containers"][0])
        if ray_ports.get("serve") != serve_port:
            errors.append(f"ray group {name}: container port serve != Serve http port {serve_port}")
        if ray_ports.get("metrics") != metrics:
            errors.append(f"ray group {name}: container port metrics != {metrics}")
        if group["rayStartParams"].get("metrics-export-port") != str(metrics):
            errors.append(f"ray group {name}: rayStartParams metrics-export-port != {metrics}")
    command = " ".join(container.get("args", []) + container.get("command", []))
    if f"--metrics-export-port={metrics}" not in command:
        errors.append(f"gateway `ray start` must pin --metrics-export-port={metrics}")
    errors += _check_collisions(want, command)
    return errors


def _check_collisions(gateway: dict[str, int], command: str) -> list[str]:
    """The gateway's own ports differ from each other and from the Ray ports its pod pins."""
    errors = []
    ray = {f"ray --{m[1]}": int(m[2]) for m in re.finditer(r"--([a-z-]+-port)=(\d+)", command)}
    low, high = ray.pop("ray --min-worker-port", None), ray.pop("ray --max-worker-port", None)
    seen: dict[int, str] = {}
    for name, port in [*gateway.items(), *ray.items()]:
        if port in seen:
            errors.append(f"gateway pod: port {port} is both {seen[port]} and {name}")
        seen[port] = name
    if low is not None and high is not None:
        for name, port in gateway.items():
            if low <= port <= high:
                errors.append(f"gateway {name} port {port} is in Ray's worker range {low}-{high}")
    return errors


def check_capacity(r: Rendered, cfg: AigcConfig) -> list[str]:
    """Every deployment has resources and bounds, fits a group, and max replicas fit the cluster."""
    from core.deployment import deployment_options

    errors = []
    cluster = r.one("RayService")["spec"]["rayClusterConfig"]
    groups = cluster.get("workerGroupSpecs", [])
    cap: list[tuple[str, float, float, int]] = []  # name, cpus, gpus, max pods
    for g in groups:
        c = g["template"]["spec"]["containers"][0]
        limits = c.get("resources", {}).get("limits", {})
        gpus = float(limits.get("nvidia.com/gpu", 0))
        cpus = float(g["rayStartParams"].get("num-cpus", _cpus(limits.get("cpu", 0))))
        if "gpu" in g["groupName"] and not gpus:
            errors.append(f"worker group {g['groupName']} requests no nvidia.com/gpu")
        if gpus and str(g["rayStartParams"].get("num-gpus", gpus)) != str(int(gpus)):
            errors.append(f"worker group {g['groupName']}: num-gpus != nvidia.com/gpu limit")
        if gpus and not g["template"]["spec"].get("tolerations"):
            errors.append(f"worker group {g['groupName']} has GPUs but no tolerations")
        cap.append((g["groupName"], cpus, gpus, g["maxReplicas"]))
    need_cpu = need_gpu = 0.0
    for m in cfg.models:
        opts = deployment_options(m)
        actor = opts["ray_actor_options"]
        if not actor.get("num_cpus"):
            errors.append(f"model {m.name}: ray_actor_options.num_cpus must be set")
        if m.resources.memory_gb is None:
            errors.append(f"model {m.name}: resources.memory_gb must be set on Kubernetes")
        if "autoscaling_config" not in opts and m.scaling.max_replicas < 1:
            errors.append(f"model {m.name}: no replicas")
        cpus, gpus = actor.get("num_cpus", 0), actor.get("num_gpus", 0)
        if m.device.startswith("cuda") and not gpus:
            errors.append(f"model {m.name}: device {m.device} but resources.num_gpus is 0")
        if not any(c >= cpus and g >= gpus for _, c, g, _ in cap):
            errors.append(f"model {m.name}: one replica fits no worker group")
        need_cpu += cpus * m.scaling.max_replicas
        need_gpu += gpus * m.scaling.max_replicas
    have_cpu = sum(c * n for _, c, _, n in cap)
    have_gpu = sum(g * n for _, _, g, n in cap)
    if need_cpu > have_cpu or need_gpu > have_gpu:
        errors.append(
            f"max replicas need {need_cpu} CPUs / {need_gpu} GPUs; worker groups at maxReplicas "
            f"offer {have_cpu} / {have_gpu}"
        )
    return errors


def check_project(r: Rendered, cfg: AigcConfig) -> list[str]:
    errors = check_images(r) + check_ports(r, cfg) + check_api_keys(r, cfg)
    errors += check_jobs_database(r, cfg) + check_no_secrets(r)
    errors += check_capacity(r, cfg)
    cluster = r.one("RayService")["spec"]["rayClusterConfig"]
    if not cluster.get("enableInTreeAutoscaling"):
        errors.append("RayService: enableInTreeAutoscaling must be true")
    serve = yaml.safe_load(r.one("RayService")["spec"]["serveConfigV2"])
    if sorted(a["name"] for a in serve["applications"]) != sorted(
        m.value for m in cfg.modalities()
    ):
        errors.append("serveConfigV2 applications differ from the config's modalities")
    for app in serve["applications"]:
        for dep in app.get("deployments", []):
            if "num_replicas" not in dep and "autoscaling_config" not in dep:
                errors.append(f"app {app['name']} deployment {dep['name']}: no replica bounds")
            if "ray_actor_options" not in dep:
                errors.append(f"app {app['name']} deployment {dep['name']}: no resources")
    return errors


def check_dockerfile(layout: Layout) -> list[str]:
    """The Ray base image must be the Ray version pyproject.toml pins, and the image copies
    every package pyproject.toml installs."""
    pyproject, dockerfile = layout.repo / "pyproject.toml", layout.k8s_dir / "Dockerfile"
    if not pyproject.is_file() or not dockerfile.is_file():
        return [f"cannot read {pyproject} and {dockerfile}"]
    pin = re.search(r'"ray\[serve\]==([0-9.]+)(?:\.\*)?"', pyproject.read_text())
    arg = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile.read_text(), re.M)
    if not pin or not arg:
        return ["cannot find the Ray pin in pyproject.toml or ARG RAY_VERSION in k8s/Dockerfile"]
    errors = []
    if not arg.group(1).startswith(pin.group(1)):
        errors.append(f"k8s/Dockerfile RAY_VERSION {arg.group(1)} != pyproject ray {pin.group(1)}")
    include = re.search(r"^include = \[(.*)\]$", pyproject.read_text(), re.M)
    packages = re.findall(r'"(\w+)\*"', include.group(1)) if include else []
    copied = set(re.findall(r"^COPY (?:--\S+ )*(\w+) \1$", dockerfile.read_text(), re.M))
    errors += [
        f"k8s/Dockerfile does not COPY the package {p}/" for p in packages if p not in copied
    ]
    return errors
