"""The KubeRay and Prometheus Operator CRD schemas: extracted from upstream, loaded, checked.

Upstream CRD files are ~2 MB, mostly `description` text. `extract` keeps only what validation
reads (types, properties, items, required, enums, bounds, formats, `x-kubernetes-*` markers)
and writes one compact JSON file per CRD under k8s/crds/, recording the upstream project,
version and licence beside it. JSON is YAML, so `load_crd_schemas` reads the compact copies and
upstream CRD files alike (`$AIGC_CRD_DIR` may point at either).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from control.k8s.kustomize import CRD_KINDS, kind_name

CRD_ENV = "AIGC_CRD_DIR"
TOOL = "scripts/extract_crd_schemas.py"
ANNOTATION = "aigc-serve/"


@dataclass(frozen=True)
class Upstream:
    project: str
    version: str
    license: str
    source: str  # where the CRD files live upstream, at that version


# Which project each CRD group comes from. Update the version here when the CRDs are refreshed.
UPSTREAMS: dict[str, Upstream] = {
    "ray.io": Upstream(
        "KubeRay",
        "v1.7.0",
        "Apache-2.0",
        "https://github.com/ray-project/kuberay/tree/v1.7.0/ray-operator/config/crd/bases",
    ),
    "monitoring.coreos.com": Upstream(
        "prometheus-operator",
        "v0.93.0",
        "Apache-2.0",
        "https://github.com/prometheus-operator/prometheus-operator/tree/v0.93.0/"
        "example/prometheus-operator-crd",
    ),
}

# Schema keywords kept as they are, and those dropped (documentation, defaults the API server
# applies). A keyword in neither set stops the extraction: it must be looked at, not lost.
_SCALARS = {
    "type", "format", "enum", "required", "pattern", "nullable",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties",
}  # fmt: skip
_SCHEMA_MAPS = {"properties", "patternProperties"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
_DROPPED = {"description", "default", "example", "title", "externalDocs"}


def strip_schema(schema: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The validation structure of one openAPIV3Schema node, every description dropped."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        at = f"{where}.{key}" if where else key
        if key in _SCALARS or key.startswith("x-kubernetes-"):
            out[key] = value
        elif key in _SCHEMA_MAPS:
            out[key] = {name: strip_schema(s, f"{at}.{name}") for name, s in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [strip_schema(s, f"{at}[{i}]") for i, s in enumerate(value)]
        elif key in ("items", "additionalProperties", "not"):
            if isinstance(value, dict):
                out[key] = strip_schema(value, at)
            elif isinstance(value, list):  # tuple-typed items
                out[key] = [strip_schema(s, f"{at}[{i}]") for i, s in enumerate(value)]
            else:  # additionalProperties: true/false
                out[key] = value
        elif key not in _DROPPED:
            raise ValueError(f"{at}: schema keyword {key!r} is neither kept nor dropped")
    return out


def strip_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """A minimal CRD: names, served versions and their stripped schemas, and where it came from."""
    spec = crd["spec"]
    upstream = UPSTREAMS.get(spec["group"])
    if upstream is None:
        raise ValueError(f"{crd['metadata']['name']}: no upstream recorded for {spec['group']}")
    annotations = crd["metadata"].get("annotations", {})
    stamped = annotations.get("operator.prometheus.io/version")
    if stamped is not None and f"v{stamped}" != upstream.version:
        raise ValueError(
            f"{crd['metadata']['name']} is prometheus-operator v{stamped}, UPSTREAMS says "
            f"{upstream.version}: update UPSTREAMS"
        )
    return {
        "apiVersion": crd["apiVersion"],
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": crd["metadata"]["name"],
            "annotations": {
                f"{ANNOTATION}upstream": f"{upstream.project} {upstream.version}",
                f"{ANNOTATION}license": upstream.license,
                f"{ANNOTATION}source": upstream.source,
                f"{ANNOTATION}generated-by": f"{TOOL}: schema structure only, no descriptions",
            },
        },
        "spec": {
            "group": spec["group"],
            "names": {"kind": spec["names"]["kind"], "plural": spec["names"]["plural"]},
            "scope": spec["scope"],
            "versions": [
                {
                    "name": v["name"],
                    "served": v.get("served", True),
                    "storage": v.get("storage", False),
                    "schema": {
                        "openAPIV3Schema": strip_schema(
                            v["schema"]["openAPIV3Schema"], f"{spec['names']['kind']}.{v['name']}"
                        )
                    },
                }
                for v in spec["versions"]
                if v.get("served", True)
            ],
        },
    }


def _read_crds(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # upstream CRDs are large: libyaml
    found = []
    paths = [p for pattern in ("*.yaml", "*.yml", "*.json") for p in directory.glob(pattern)]
    for path in sorted(paths):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                found.append((path, doc))
    return found


def _readme(crds: list[dict[str, Any]]) -> str:
    lines = [
        "# CRD schemas for offline validation",
        "",
        f"Generated by `{TOOL}` from the upstream CRD files; do not edit.",
        "Each file keeps only the schema structure `aigc k8s check` validates against (types,",
        "properties, items, required, enums, bounds, formats, `x-kubernetes-*` markers); every",
        "`description` and `default` is dropped. tests/k8s fails when these files differ from a",
        "fresh extraction (when the upstream files are beside the checkout, in",
        "`../shared/k8s/crds`). To refresh: update `UPSTREAMS` in control/k8s/crds.py, then",
        f"`.venv/bin/python {TOOL} --from DIR`.",
        f"`${CRD_ENV}` points the checks at another directory.",
        "",
        "| file | kind | upstream | licence | source |",
        "|---|---|---|---|---|",
    ]
    for crd in crds:
        a = crd["metadata"]["annotations"]
        lines.append(
            f"| {out_name(crd)} | {crd['spec']['names']['kind']} | {a[ANNOTATION + 'upstream']} "
            f"| {a[ANNOTATION + 'license']} | {a[ANNOTATION + 'source']} |"
        )
    lines += [
        "",
        "Both projects are licensed under the Apache License 2.0; these files are derived from",
        "theirs (reduced to the validation structure) and keep that licence.",
        "",
    ]
    return "\n".join(lines)


def out_name(crd: dict[str, Any]) -> str:
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.json"


def extract(source: Path) -> dict[str, str]:
    """File name -> text of the compact copy of every CRD in `source` (plus README.md)."""
    crds = [strip_crd(doc) for _, doc in _read_crds(source)]
    if not crds:
        raise FileNotFoundError(f"no CustomResourceDefinition in {source}")
    crds.sort(key=out_name)
    files = {out_name(c): json.dumps(c, separators=(",", ":")) + "\n" for c in crds}
    files["README.md"] = _readme(crds)
    return files


# ---------------------------------------------------------------- loading and checking


def crd_dir(k8s_dir: Path) -> Path:
    """`$AIGC_CRD_DIR` when set, else the compact copies committed in k8s/crds."""
    value = os.environ.get(CRD_ENV)
    return Path(value).resolve() if value else k8s_dir / "crds"


def _close_objects(schema: Any) -> Any:
    """Rejects unknown fields: structural CRD schemas allow them unless told otherwise."""
    if isinstance(schema, dict):
        out = {k: _close_objects(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_close_objects(v) for v in schema]
    return schema


@functools.cache
def load_crd_schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> closed openAPIV3Schema, for every served version of every CRD."""
    if not directory.is_dir():
        raise FileNotFoundError(f"CRD directory {directory} does not exist (${CRD_ENV})")
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for _, crd in _read_crds(directory):
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served", True):
                api = f"{spec['group']}/{version['name']}"
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(api, spec["names"]["kind"])] = _close_objects(schema)
    return schemas


def check_custom(docs: list[dict[str, Any]], directory: Path) -> list[str]:
    """Every custom resource against its CRD's schema, unknown fields rejected."""
    import jsonschema

    schemas = load_crd_schemas(directory)
    errors = []
    for doc in docs:
        if doc.get("kind") not in CRD_KINDS:
            continue
        schema = schemas.get((doc.get("apiVersion", ""), doc["kind"]))
        if schema is None:
            errors.append(f"{kind_name(doc)}: no CRD for {doc.get('apiVersion')} in {directory}")
            continue
        validator = jsonschema.Draft7Validator(schema)
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
            path = ".".join(str(p) for p in err.path)
            errors.append(f"{kind_name(doc)}: {path}: {err.message}")
    return errors
