"""A Ray cluster of several nodes on one machine, and `aigc up --address` on it.

Used by the multi-node tests (tests/cluster) and the `scaling` benchmark. Each node is a
`ray start --block` process in a session of its own, with its own temp dir (short, under /tmp:
Ray's socket paths must stay under 108 bytes), its own ports and Ray auth off, as `aigc up`
runs a local one. The head has no CPUs for replicas (like the KubeRay head) and runs the
dashboard, whose REST API gives Serve's status (replicas with their node ids) without making
the caller a Ray driver. Removing a node is SIGKILL to its session: the raylet and every
worker process it started (the replicas on it) die at once, as when a machine is lost.

Nothing here runs `ray stop` (it would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load_tests.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# What `aigc up` sets for a local cluster (control/stack.py); on a cluster every node needs it.
NODE_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}
# Test-process settings that the real processes must not inherit (tests/conftest.py).
DROP_ENV = ("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "RAY_ADDRESS")


def wait_for(predicate: Callable[[], Any], timeout_s: float, step_s: float = 0.2) -> Any:
    """Polls until predicate() is truthy (returned) or timeout_s passes (returns the last)."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except Exception:  # a process not listening yet
            value = None
        if value or time.monotonic() >= end:
            return value
        time.sleep(step_s)


def _env(temp_dir: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env.update(NODE_ENV)
    env.update(extra or {})
    if temp_dir is not None:
        env["RAY_TMPDIR"] = temp_dir
    return env


def _kill_session(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def session_processes(sid: int) -> list[str]:
    """'PID ARGS' of every process in session `sid` (what a terminal's Ctrl-C reaches)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,sid=,args="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in out.stdout.splitlines()]
    return [f"{r[0]} {r[2]}" for r in rows if len(r) == 3 and int(r[1]) == sid]


def session_pids(sid: int) -> list[int]:
    return [int(p.split(None, 1)[0]) for p in session_processes(sid)]


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[Any]
    temp_dir: str
    num_cpus: float

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """The node is lost: its raylet and its workers (the replicas on it) die together."""
        _kill_session(self.proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)


@dataclass
class RayCluster:
    """A head (0 CPUs, the dashboard) and worker nodes, each a `ray start --block` session."""

    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: dict[str, Node] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # more settings for every node

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, num_cpus: float, args: list[str]) -> Node:
        temp_dir = os.path.join(self.root, name)
        os.makedirs(temp_dir, exist_ok=True)
        cmd = [
            str(Path(PY).parent / "ray"), "start", "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus:g}", "--num-gpus=0",
            f"--temp-dir={temp_dir}", f"--resources={json.dumps({f'node:{name}': 1})}",
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            *args,
        ]  # fmt: skip
        with open(os.path.join(self.root, f"{name}.log"), "w") as log:  # the child keeps it
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(temp_dir, self.env),
                start_new_session=True,
            )
        node = Node(name, proc, temp_dir, num_cpus)
        self.nodes[name] = node
        return node

    def start_head(self, timeout_s: float = 120) -> None:
        self._start(
            "head", 0,
            ["--head", f"--port={self.port}", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"],
        )  # fmt: skip
        if not wait_for(lambda: self.alive_nodes(), timeout_s):
            raise RuntimeError(f"Ray head did not start; see {self.root}/head.log")

    def add_worker(self, name: str, num_cpus: float) -> Node:
        return self._start(name, num_cpus, [f"--address={self.address}"])

    def wait_nodes(self, count: int, timeout_s: float = 120) -> None:
        if not wait_for(lambda: len(self.alive_nodes()) == count, timeout_s):
            raise RuntimeError(f"{count} Ray nodes not alive: {self.alive_nodes()}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.dashboard + path, timeout=20) as resp:
            return json.loads(resp.read().decode())

    def alive_nodes(self) -> dict[str, str]:
        """Ray node id -> our node name, for the nodes alive now (Ray's state API)."""
        out = {}
        for n in self.get("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]:
            if n["state"] != "ALIVE":
                continue
            names = [r[5:] for r in n.get("resources_total", {}) if r.startswith("node:")]
            names = [r for r in names if r in self.nodes]
            out[n["node_id"]] = names[0] if names else "?"
        return out

    def serve_replicas(self, app: str, deployment: str) -> list[dict[str, Any]]:
        """Serve's replicas of a deployment (its REST status): state, node id, actor id."""
        details = self.get("/api/serve/applications/")
        a = (details.get("applications") or {}).get(app) or {}
        d = (a.get("deployments") or {}).get(deployment) or {}
        return list(d.get("replicas") or [])

    def running_by_node(self, app: str, deployment: str) -> dict[str, int]:
        """Our node name -> RUNNING replicas of the deployment on it, from Serve's status."""
        names = self.alive_nodes()
        out: dict[str, int] = {}
        for r in self.serve_replicas(app, deployment):
            if r.get("state") == "RUNNING":
                name = names.get(r.get("node_id", ""), "dead")
                out[name] = out.get(name, 0) + 1
        return out

    def shutdown(self) -> None:
        """Every node's session at once (the apps were deleted by `aigc up`; nothing here needs
        a graceful stop), then any process of those sessions still there, then the temp dirs."""
        for node in self.nodes.values():
            node.kill()
        for node in self.nodes.values():
            sid = node.proc.pid
            if not wait_for(lambda: not session_pids(sid), 30):  # noqa: B023 (called here)
                for pid in session_pids(sid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class AigcUp:
    """`aigc up [--address CLUSTER] --config CONFIG` in a session of its own, as a terminal runs
    it: it deploys the apps and runs the gateway (on a cluster, a Ray driver that holds no
    resources). Used by the cluster tests, the Ctrl-C test and scripts/measure_shutdown.py."""

    proc: subprocess.Popen[str]
    lines: list[str]
    port: int = 0
    http_port: int = 0  # the OpenAI HTTP front end, when on
    metrics_port: int = 0
    reader: threading.Thread | None = None  # reads its output into `lines` until it exits

    @classmethod
    def start(
        cls,
        config: Path,
        address: str | None = None,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        timeout_s: float = 300,
        stamp: bool = False,
    ) -> AigcUp:
        """Returns once it prints that it is ready; raises (with its last lines) if it exits or
        times out first. `stamp`: each kept line starts with time.perf_counter()."""
        cmd = [PY, "-m", "aigc.cli", "up", "--config", str(config), *args]
        if address is not None:
            cmd += ["--address", address]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(None, env),
            cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        up = cls(proc, [])
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                up.lines.append(
                    f"{time.perf_counter():.2f} {line.rstrip()}" if stamp else line.rstrip()
                )
                if "] gateway      grpc://" in line:
                    up.port = int(line.split("grpc://", 1)[1].split()[0].rsplit(":", 1)[1])
                elif "] openai       http://" in line:
                    url = line.split("http://", 1)[1].split("/", 1)[0]
                    up.http_port = int(url.rsplit(":", 1)[1])
                elif "] gateway metrics  http://" in line:
                    url = line.split("http://", 1)[1].split("/", 1)[0]
                    up.metrics_port = int(url.rsplit(":", 1)[1])
                elif "ready; Ctrl-C stops" in line:
                    ready.set()
            ready.set()  # the process ended

        up.reader = threading.Thread(target=read, daemon=True)
        up.reader.start()
        if not ready.wait(timeout_s) or proc.poll() is not None:
            up.stop()
            raise RuntimeError("aigc up did not become ready:\n" + "\n".join(up.lines[-40:]))
        return up

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self, timeout_s: float = 120) -> int | None:
        """SIGINT, as Ctrl-C (drain, delete the apps), then SIGKILL to the session if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_session(self.proc)
                self.proc.wait(30)
        return self.proc.returncode
