"""`pip install aigc-serve` (no extras) is a working client: no Ray, no torch, no numpy.

Builds the wheel, installs it into a clean venv (from the package registry) and runs that
venv's `aigc` against the test stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from scripts import locks

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel and its install requirements (built once per session)."""
    tmp = tmp_path_factory.mktemp("client-install")
    wheels = tmp / "wheels"
    # setuptools writes aigc_serve.egg-info into the source tree while it builds; left there, it
    # would shadow the venv's own metadata (entry points) for anything run from the checkout
    egg_info = ROOT / "aigc_serve.egg-info"
    had_egg_info = egg_info.exists()
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        cwd=tmp,
        timeout=300,
    )
    if not had_egg_info:
        shutil.rmtree(egg_info, ignore_errors=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("aigc_serve-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    # The client's requirements resolve within pyproject's ranges, held to the versions the
    # main lock tested (a release on the registry cannot change what this test installs).
    constraints = tmp / "constraints.txt"
    pinned = locks.pins(locks.LOCKS["main"].path)
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pinned.items()))
    python = str(env_dir / "bin" / "python")
    installed = run(
        [python, "-m", "pip", "install", "-q", "-c", str(constraints), str(wheel)],
        cwd=tmp,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return env_dir


def test_client_install_has_no_server_dependencies(client_venv: Path, tmp_path: Path) -> None:
    python = str(client_venv / "bin" / "python")
    where = run([python, "-c", "import aigc.client; print(aigc.client.__file__)"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(client_venv))  # the installed copy, not the source tree
    for module in ("ray", "torch", "numpy", "transformers", "onnxruntime"):
        probe = run([python, "-c", f"import {module}"], cwd=tmp_path)
        assert probe.returncode != 0, f"{module} is importable in the client-only venv"
        assert "ModuleNotFoundError" in probe.stderr


def test_client_install_calls_the_stack(client_venv: Path, target: str, tmp_path: Path) -> None:
    aigc = str(client_venv / "bin" / "aigc")
    health = run([aigc, "health", "--target", target], cwd=tmp_path, timeout=60)
    assert health.returncode == 0, health.stderr
    lines = health.stdout.splitlines()
    assert lines[0] == "overall: SERVING"
    assert "aigc.v1.TextGeneration: SERVING" in lines
    assert "aigc.v1.Models: SERVING" in lines

    text = run(
        [aigc, "text", "hello client install", "--model", "echo-text", "--target", target],
        cwd=tmp_path,
        timeout=60,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == "hello client install"  # the echo model returns the prompt

    png = tmp_path / "grid.png"
    image = run(
        [
            aigc,
            "image",
            "--model",
            "echo-image",
            "--count",
            "3",
            "-o",
            str(png),
            "--target",
            target,
        ],
        cwd=tmp_path,
        timeout=60,
    )
    assert image.returncode == 0, image.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the grid, drawn without numpy


@pytest.mark.parametrize("command", [["up"], ["gateway", "--address", "auto"], ["k8s", "render"]])
def test_server_commands_name_the_extra(
    client_venv: Path, tmp_path: Path, command: list[str]
) -> None:
    out = run([str(client_venv / "bin" / "aigc"), *command], cwd=tmp_path, timeout=60)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"aigc {command[0]} needs ")
    assert lines[0].endswith("pip install 'aigc-serve[server]'")
