"""The one config file: the gateway, security, Ray, and every model (`core.model_config`: its
engine, batching, scaling, resources and limits).

`aigc up`, the Serve applications and the Kubernetes manifests are all rendered from it. The
models are plain pydantic objects so they pickle into Ray replicas unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any

import yaml
from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from core.model_config import (
    AdmissionConfig,
    BatchingConfig,
    LimitsConfig,
    Modality,
    ModelConfig,
    ResourcesConfig,
    ScalingConfig,
    _Strict,
)

__all__ = [
    "AdmissionConfig",
    "AigcConfig",
    "BatchingConfig",
    "ConfigError",
    "GatewayConfig",
    "LimitsConfig",
    "Modality",
    "ModelConfig",
    "RayConfig",
    "ResourcesConfig",
    "ScalingConfig",
    "SecurityConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
]


class TlsConfig(_Strict):
    cert_file: str = Field(description="PEM server certificate chain.")
    key_file: str = Field(description="PEM private key of the certificate.")
    client_ca_file: str | None = Field(
        None, description="PEM CA bundle: when set, clients must present a certificate (mTLS)."
    )


class SecurityConfig(_Strict):
    """Off by default for the local stack; turn on for anything reachable from a network."""

    api_keys_file: str | None = Field(
        None, description="File with one 'name: key' per line (or a YAML mapping name -> key)."
    )
    api_keys_env: str | None = Field(
        None, description="Environment variable holding 'name:key,name:key'."
    )
    rate_limit_per_s: float | None = Field(None, gt=0, description="Requests/s per API key.")
    rate_limit_burst: int = Field(20, ge=1, description="Bucket size for the per-key limit.")
    tls: TlsConfig | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys_file or self.api_keys_env)


class JobsConfig(_Strict):
    """The job store (files, batches, videos) and the batch and video runners."""

    database: str | None = Field(
        None,
        description="SQLAlchemy URL of the job store: 'sqlite:///path' or "
        "'postgresql+psycopg://user@host/db' (several gateways on one PostgreSQL share the "
        "work). None: SQLite in state_dir.",
    )
    database_env: str | None = Field(
        None, description="Environment variable holding the URL (a Kubernetes Secret), if set."
    )
    state_dir: str = Field(
        "~/.local/state/aigc-serve",
        description="Where the default SQLite database lives.",
    )
    files_dir: str | None = Field(
        None, description="File bodies here (a directory or shared volume); None: in the database."
    )
    max_file_mb: int = Field(200, ge=1, le=4096, description="Largest upload to /v1/files.")
    max_lines: int = Field(50_000, ge=1, description="Most request lines in one batch.")
    lease_s: float = Field(
        30.0, gt=0, description="A gateway's hold on a batch; another takes over after it."
    )
    concurrency: int = Field(
        16, ge=1, le=1024, description="Lines of one batch in flight at once (flex tier)."
    )
    enabled: bool = Field(
        True,
        description="Serve /v1/files, /v1/batches and /v1/videos (with a video model), and "
        "run their jobs.",
    )
    video_concurrency: int = Field(
        2, ge=1, le=256, description="Video jobs one gateway makes at once (batch tier)."
    )
    video_ttl_s: int = Field(
        24 * 3600, ge=60, description="How long a completed clip's content is kept (expires_at)."
    )
    video_timeout_s: float = Field(
        1800.0, gt=0, description="Deadline of one clip's making; past it the job fails."
    )

    def url(self) -> str:
        import os

        if self.database_env and os.environ.get(self.database_env):
            return os.environ[self.database_env]
        if self.database:
            return self.database
        path = os.path.join(os.path.expanduser(self.state_dir), "jobs.sqlite")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return f"sqlite:///{path}"


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535, description="gRPC (aigc.v1) port; 0 picks a free one.")
    http_port: int = Field(
        8000,
        ge=-1,
        le=65535,
        description="OpenAI-compatible HTTP API port (/v1/...); 0 picks a free one, -1 turns "
        "the HTTP front end off.",
    )
    http_timeout_s: float | None = Field(
        600.0,
        gt=0,
        description="Deadline of an HTTP request that sends no x-request-timeout (or the openai "
        "SDK's x-stainless-timeout) header; None: no deadline.",
    )
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus /metrics (HTTP).")
    max_message_mb: int = Field(64, ge=1, le=1024, description="gRPC send/receive limit.")
    grace_period_s: float = Field(10.0, ge=0, description="Drain time on SIGTERM.")
    drain_delay_s: float = Field(
        2.0,
        ge=0,
        description="On SIGTERM, health says NOT_SERVING this long while new calls "
        "are still served (balancers notice), before the server stops taking calls.",
    )
    refresh_models_s: float = Field(5.0, gt=0, description="How often model readiness is read.")
    retries: int = Field(1, ge=0, le=3, description="Retries of unary image/audio on UNAVAILABLE.")
    security: SecurityConfig = SecurityConfig()
    jobs: JobsConfig = JobsConfig()


class RayConfig(_Strict):
    address: str | None = Field(None, description="Join this cluster; None starts a local one.")
    num_cpus: int | None = Field(None, ge=0, description="Logical CPUs for a local cluster.")
    num_gpus: int | None = Field(
        None, ge=0, description="GPUs for a local cluster; None lets Ray detect them."
    )
    metrics_export_port: int = Field(8080, ge=0, le=65535, description="Ray's /metrics port.")
    namespace: str = "aigc"


class AigcConfig(_Strict):
    gateway: GatewayConfig = GatewayConfig()
    ray: RayConfig = RayConfig()
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> AigcConfig:
        names = [n for m in self.models for n in (m.name, *m.aliases)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names and aliases must be unique; repeated: {dupes}")
        for modality in Modality:
            defaults = [m.name for m in self.models if m.modality == modality and m.default]
            if len(defaults) > 1:
                raise ValueError(f"more than one default {modality.value} model: {defaults}")
        return self

    def by_name(self) -> dict[str, ModelConfig]:
        """Every served name (names and aliases) -> its model."""
        return {n: m for m in self.models for n in (m.name, *m.aliases)}

    def modalities(self) -> list[Modality]:
        return [m for m in Modality if any(x.modality == m for x in self.models)]

    def models_of(self, modality: Modality) -> list[ModelConfig]:
        return [m for m in self.models if m.modality == modality]

    def default_model(self, modality: Modality) -> ModelConfig | None:
        """The model marked default, else the first of that modality."""
        models = self.models_of(modality)
        return next((m for m in models if m.default), models[0] if models else None)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


def _field_path(loc: tuple[int | str, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = ""
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict):
                name = str(node[item].get("name", ""))
            parts.append(f"[{item}]" + (f"({name})" if name else ""))
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(("." if parts else "") + item)
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def parse_config(
    data: Any, source: str = "<config>", base_dir: PurePath | None = None
) -> AigcConfig:
    try:
        cfg = AigcConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {_field_path(tuple(e['loc']), data)}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None
    if base_dir is not None:
        models = [m.with_weights_resolved(base_dir) for m in cfg.models]
        cfg = cfg.model_copy(update={"models": models})
    return cfg


def load_config(path: str | os.PathLike[str]) -> AigcConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)
