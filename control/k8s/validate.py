"""Schema checks that need no cluster: built-in kinds (kubernetes-validate) and serveConfigV2
(Ray's ServeDeploySchema plus an unknown-key walk). Custom resources: crds.py."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel

from control.k8s.kustomize import CRD_KINDS, kind_name

K8S_VERSIONS = ("1.33.0", "1.37.0")


def check_builtin(
    docs: list[dict[str, Any]], versions: tuple[str, ...] = K8S_VERSIONS
) -> list[str]:
    """Strict kubernetes-validate for every non-CRD kind; a missing schema is an error."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    errors = []
    for doc in docs:
        if doc.get("kind") in CRD_KINDS:
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{kind_name(doc)} (k8s {version}): {path}: {exc.message}")
            except SchemaNotFoundError as exc:
                errors.append(f"{kind_name(doc)} (k8s {version}): {exc.message}")
    return errors


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """Pydantic models reachable through Optional/Union/list/dict annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def unknown_keys(data: Any, model: type[BaseModel], where: str) -> list[str]:
    """Keys pydantic would silently ignore (Ray's schemas allow extra keys), e.g. 'num_replica'."""
    if isinstance(data, list):
        return [
            e for i, item in enumerate(data) for e in unknown_keys(item, model, f"{where}[{i}]")
        ]
    if not isinstance(data, dict):
        return []
    errors = []
    fields = model.model_fields
    aliases = {f.alias: name for name, f in fields.items() if f.alias}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name not in fields:
            errors.append(f"{where}: unknown key {key!r}")
            continue
        for sub in _models_in(fields[name].annotation):
            errors += unknown_keys(value, sub, f"{where}.{key}")
            break
    return errors


def check_serve_config(text: str, where: str = "serveConfigV2") -> list[str]:
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from core.config import ModelConfig

    data = yaml.safe_load(text)
    try:
        schema = ServeDeploySchema.model_validate(data)
    except ValidationError as exc:
        return [f"{where}: {e['loc']}: {e['msg']}" for e in exc.errors()]
    errors = unknown_keys(data, ServeDeploySchema, where)
    for app in schema.applications:
        for model in (app.args or {}).get("models", []):
            try:
                ModelConfig.model_validate(model)
            except ValidationError as exc:
                errors.append(f"{where}.{app.name}.args: {exc.errors()[0]['msg']}")
    return errors
