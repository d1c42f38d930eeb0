"""Packages by role, imports one way (README, Layout).

    aigc      the client SDK and calling CLI: grpc and protobuf only, nothing of the server
    core      config, registry, engine options, domain types, errors and their status table,
              deployment options, the replica protocol: pydantic and yaml only
    services  the Serve deployments and engines          -> core, aigc (png, wav codecs)
    gateway   the data plane and its two front ends       -> core, aigc (v1 stubs, wire names)
    control   the stack launcher, `aigc up|gateway|k8s`   -> everything above
    load_tests, scripts: tools on top; nothing imports tests except tests.

Every import counts, at module level or inside a function or a TYPE_CHECKING block.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("aigc", "core", "services", "gateway", "control", "load_tests", "scripts", "tests")
ALLOWED: dict[str, set[str]] = {
    "aigc": set(),
    "core": set(),
    "services": {"core", "aigc"},
    "gateway": {"core", "aigc"},
    "control": {"core", "aigc", "services", "gateway"},
    "load_tests": {"core", "aigc", "services", "gateway", "control"},
    "scripts": {"core", "aigc", "services", "gateway", "control", "load_tests"},
}
# Third-party modules each bottom package may import (besides the standard library).
THIRD_PARTY = {
    "aigc": {"grpc", "grpc_health", "google"},
    "core": {"pydantic", "yaml"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def sources(package: str) -> list[Path]:
    return [p for p in sorted((ROOT / package).rglob("*.py")) if "_pb2" not in p.name]


def test_the_layers_are_the_documented_ones() -> None:
    """The table above is the one the tests check, and every package it names exists."""
    assert set(ALLOWED) | {"tests"} == set(OURS)
    for package in OURS:
        assert sources(package), package


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package: str) -> None:
    wrong = []
    for path in sources(package):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(THIRD_PARTY))
def test_bottom_packages_need_only_their_own_dependencies(package: str) -> None:
    allowed = THIRD_PARTY[package] | set(sys.stdlib_module_names) | {"__future__", package}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources(package)
        for line, module in imports_of(path)
        if module.split(".")[0] not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def test_the_shipped_bench_imports_nothing_else_of_load_tests() -> None:
    """`aigc bench` (load_tests.bench, what the `bench` extra ships) stands apart from the
    repository's own benchmarks, which build on it."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources("load_tests/bench")
        for line, module in imports_of(path)
        if module.split(".")[0] == "load_tests" and not module.startswith("load_tests.bench")
    ]
    assert sources("load_tests/bench")
    assert not wrong, "\n".join(wrong)


def test_the_package_graph_has_no_cycle() -> None:
    """Computed from the imports themselves, not from the table."""
    edges: dict[str, set[str]] = {p: set() for p in OURS}
    for package in OURS:
        for path in sources(package):
            for _, module in imports_of(path):
                top = module.split(".")[0]
                if top in OURS and top != package:
                    edges[package].add(top)
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for nxt in edges[node]:
            visit(nxt, (*path, node))
        done.add(node)

    for package in OURS:
        visit(package, ())


def loaded_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `code`."""
    probe = (
        code
        + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_client_loads_nothing_of_the_server() -> None:
    """What the SDK and `aigc --help` load at run time."""
    loaded = loaded_after(
        "import contextlib, io\n"
        "import aigc, aigc.client, aigc.png, aigc.wav, aigc.wire, aigc.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    aigc.cli.main(['--help'])"
    )
    server = {"core", "services", "gateway", "control", "load_tests", "ray", "torch", "numpy"}
    assert "aigc" in loaded
    assert not loaded & server, sorted(loaded & server)


def test_core_loads_no_server_runtime() -> None:
    loaded = loaded_after(
        "import core.config, core.registry, core.deployment, core.errors, core.replica, core.types"
    )
    heavy = {"ray", "torch", "grpc", "numpy", "services", "gateway", "control", "aigc"}
    assert "core" in loaded
    assert not loaded & heavy, sorted(loaded & heavy)
