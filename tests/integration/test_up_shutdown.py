"""Ctrl-C on `aigc up` stops everything it started, quietly.

Runs `aigc up` (echo engines, its own RAY_TMPDIR) in a session of its own (load_tests.procs's
AigcUp, as the multi-node tests do), sends SIGINT to the
process group as a terminal does, and checks the exit, the output after the signal, and that
no process of that session (Ray's included) outlives it.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from load_tests.procs import AigcUp, session_processes
from tests.conftest import free_port

pytestmark = pytest.mark.integration


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


def test_ctrl_c_stops_every_process_without_warnings(tmp_path: Path) -> None:
    config = echo_config(tmp_path / "echo.yaml")
    ray_tmp = tempfile.mkdtemp(prefix="r-up-", dir="/tmp")  # short: Ray's socket paths
    up = AigcUp.start(config, env={"RAY_TMPDIR": ray_tmp}, timeout_s=600)
    proc, lines = up.proc, up.lines
    try:
        running = session_processes(proc.pid)
        assert any("raylet" in p for p in running), running  # Ray lives in this session
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(120) == 0, "\n".join(lines)
        assert up.reader is not None
        up.reader.join(10)
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
