"""Ctrl-C on `aigc up` stops everything it started, quietly.

Runs `aigc up` (echo engines, its own RAY_TMPDIR) in a session of its own, sends SIGINT to the
process group as a terminal does, and checks the exit, the output after the signal, and that
no process of that session (Ray's included) outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def echo_config(path: Path) -> Path:
    models = [
        {"name": f"echo-{m}", "modality": m, "engine": "echo", "resources": {"num_cpus": 0.1}}
        for m in ("text", "image", "audio")
    ]
    config = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "drain_delay_s": 0.5},
        "ray": {"num_cpus": 1, "metrics_export_port": free_port(), "namespace": "aigc-up-test"},
        "models": models,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,sid=,args="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in out.stdout.splitlines()]
    return [f"{r[0]} {r[2]}" for r in rows if len(r) == 3 and int(r[1]) == sid]


def test_ctrl_c_stops_every_process_without_warnings(tmp_path: Path) -> None:
    config = echo_config(tmp_path / "echo.yaml")
    ray_tmp = tempfile.mkdtemp(prefix="r-up-", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled"}
    aigc = str(Path(sys.executable).parent / "aigc")
    proc = subprocess.Popen(
        [aigc, "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "ready; Ctrl-C stops everything" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not ready.wait(0.5):
            assert proc.poll() is None, "\n".join(lines)
        running = session_processes(proc.pid)
        assert any("raylet" in p for p in running), running  # Ray lives in this session
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(120) == 0, "\n".join(lines)
        reader.join(10)
        after = lines[next(i for i, ln in enumerate(lines) if "stopping" in ln) :]
        noisy = [ln for ln in after if "WARN" in ln or "ERROR" in ln or "Traceback" in ln]
        assert not noisy, "\n".join(after)
        assert "Started a local Ray instance" not in "\n".join(after)
        assert after[-1].startswith("[aigc up] stopped in")
        end = time.monotonic() + 30  # the raylet ends its workers just after the driver exits
        while (left := session_processes(proc.pid)) and time.monotonic() < end:
            time.sleep(0.2)
        assert left == []
    finally:
        if proc.poll() is None or session_processes(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
