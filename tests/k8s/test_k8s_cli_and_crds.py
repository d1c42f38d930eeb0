"""`aigc k8s` from any checkout (paths come from arguments, not the installed package), and
the committed compact CRD schemas against their upstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from control.k8s import crds as crd_schemas
from control.k8s import main
from control.k8s.crds import check_custom, crd_dir
from control.k8s.layout import OVERLAYS, Layout
from control.k8s.render import render
from tests.k8s.test_manifests import _cpu, _edited

REPO = Path(__file__).resolve().parents[2]
LAYOUT = Layout.at(REPO)
NAMES = sorted(OVERLAYS)


# ---- paths come from arguments, not from the installed package


def test_cli_render_writes_what_drift_compares(tmp_path: Path) -> None:
    assert main(["--repo", str(REPO), "render", "--overlay", "cpu", "--out", str(tmp_path)]) == 0
    for name, text in render(LAYOUT, "cpu").items():
        assert (tmp_path / name).read_text() == text


def test_cli_works_on_a_copy_of_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Renders and checks another directory (the current one by default), as an installed
    `aigc` would: a stale generated file there fails its check, the source tree is untouched."""
    import shutil

    for name in ("configs", "k8s"):
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    generated = tmp_path / "k8s/overlays/cpu/generated/aigc.yaml"
    generated.write_text(generated.read_text() + "# edited\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(crd_schemas.CRD_ENV, raising=False)
    assert main(["check", "--overlay", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL cpu: drift" in out and "k8s/overlays/cpu/generated/aigc.yaml is stale" in out
    assert f"CRD schemas from {tmp_path / 'k8s/crds'}" in out
    assert main(["render", "--overlay", "cpu"]) == 0
    assert generated.read_text() == (LAYOUT.overlay_dir("cpu") / "generated/aigc.yaml").read_text()
    assert main(["check", "--overlay", "cpu"]) == 0


def test_cli_outside_a_checkout_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["check"])
    assert "pass --repo DIR" in capsys.readouterr().err


def test_aigc_k8s_main_is_the_cli_entry_point() -> None:
    from aigc.cli import plugin_commands

    ep = plugin_commands()["k8s"]
    assert ep.load() is main
    assert ep.extras == ["server"]


# ---- the committed CRD schemas


def test_crd_copy_is_compact_and_records_its_upstream() -> None:
    files = sorted((LAYOUT.k8s_dir / "crds").glob("*.json"))
    assert {f.name.split("_")[0] for f in files} == {"ray.io", "monitoring.coreos.com"}
    assert sum(f.stat().st_size for f in files) < 1_000_000
    readme = (LAYOUT.k8s_dir / "crds/README.md").read_text()
    assert "KubeRay v1.7.0" in readme and "prometheus-operator v0.93.0" in readme
    assert "Apache-2.0" in readme

    def docs_in(node: Any) -> list[str]:  # "description": "text" anywhere (a field named
        if isinstance(node, dict):  # description maps to a schema, not to a string)
            found = [k for k, v in node.items() if k == "description" and isinstance(v, str)]
            return found + [d for v in node.values() for d in docs_in(v)]
        return [d for v in node for d in docs_in(v)] if isinstance(node, list) else []

    for f in files:
        assert docs_in(json.loads(f.read_text())) == [], f.name


def test_crds_default_to_the_repo_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(crd_schemas.CRD_ENV, raising=False)
    assert crd_dir(LAYOUT.k8s_dir) == LAYOUT.k8s_dir / "crds"
    monkeypatch.setenv(crd_schemas.CRD_ENV, str(tmp_path))
    assert crd_dir(LAYOUT.k8s_dir) == tmp_path.resolve()


UPSTREAM_CRDS = REPO.parent / "shared" / "k8s" / "crds"


@pytest.mark.skipif(
    not UPSTREAM_CRDS.is_dir(),
    reason=f"upstream CRDs not beside the checkout ({UPSTREAM_CRDS}); k8s/crds is used as is",
)
def test_crd_copy_is_fresh_against_upstream(tmp_path: Path) -> None:
    """k8s/crds is exactly what scripts/extract_crd_schemas.py makes of the upstream files."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(REPO / "scripts/extract_crd_schemas.py"), "--from",
         str(UPSTREAM_CRDS), "--to", str(tmp_path)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in (LAYOUT.k8s_dir / "crds").iterdir() if p.is_file()}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"k8s/crds is stale: run scripts/extract_crd_schemas.py ({stale})"


def test_the_upstream_and_compact_crds_validate_alike() -> None:
    """The dropped keywords change no verdict: the same typo fails against both."""
    if not UPSTREAM_CRDS.is_dir():
        pytest.skip(f"upstream CRDs not beside the checkout ({UPSTREAM_CRDS})")

    def typo(d: dict[str, Any]) -> None:
        d["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0

    for docs in (_cpu().docs, _edited(_cpu(), "RayService", typo)):
        assert check_custom(docs, UPSTREAM_CRDS) == check_custom(docs, LAYOUT.k8s_dir / "crds")
    assert check_custom(_edited(_cpu(), "RayService", typo), LAYOUT.k8s_dir / "crds")


def test_strip_keeps_structure_and_drops_descriptions() -> None:
    schema = {
        "type": "object",
        "description": "dropped",
        "required": ["description"],
        "properties": {
            # a field named "description" is structure, not documentation
            "description": {"type": "string", "description": "dropped", "default": "x"},
            "ports": {"type": "array", "items": {"type": "integer", "format": "int32",
                                                 "minimum": 1, "description": "dropped"},
                      "x-kubernetes-list-type": "atomic"},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }  # fmt: skip
    assert crd_schemas.strip_schema(schema) == {
        "type": "object",
        "required": ["description"],
        "properties": {
            "description": {"type": "string"},
            "ports": {"type": "array", "items": {"type": "integer", "format": "int32",
                                                 "minimum": 1},
                      "x-kubernetes-list-type": "atomic"},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"spec\.properties\.x\.\$ref"):
        crd_schemas.strip_schema({"properties": {"x": {"$ref": "#/y"}}}, "spec")
