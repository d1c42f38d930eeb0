"""A Ray cluster of several nodes on one machine, for `aigc up --address` (load_tests.procs's
AigcUp) to run on: the multi-node tests (tests/cluster).

Each node is a `ray start --block` process (a load_tests.procs.Child) in a session of its own,
with its own temp dir (short, under /tmp:
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
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load_tests.procs import PY, Child, free_port, node_env, session_pids
from load_tests.wait import wait_for

# While the head starts, its dashboard refuses connections (OSError) or its state API answers
# without the node list yet (a body without the keys alive_nodes reads): "not yet", not an error.
STARTING: tuple[type[BaseException], ...] = (OSError, KeyError, TypeError, ValueError)


@dataclass
class Node:
    name: str
    child: Child  # `ray start --block`, its output in ROOT/NAME.log
    temp_dir: str
    num_cpus: float

    @property
    def pid(self) -> int:
        """Its session's id (the session holds the raylet and every worker it started)."""
        return self.child.proc.pid

    def alive(self) -> bool:
        return self.child.proc.poll() is None

    def kill(self) -> None:
        """The node is lost: its raylet and its workers (the replicas on it) die together."""
        self.child.kill()


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
        log = Path(self.root) / f"{name}.log"
        node = Node(name, Child(cmd, node_env(temp_dir, self.env), log=log), temp_dir, num_cpus)
        self.nodes[name] = node
        return node

    def start_head(self, timeout_s: float = 120) -> None:
        self._start(
            "head", 0,
            ["--head", f"--port={self.port}", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"],
        )  # fmt: skip
        if not wait_for(self.alive_nodes, timeout_s, retry_on=STARTING):
            raise RuntimeError(f"Ray head did not start; see {self.root}/head.log")

    def add_worker(self, name: str, num_cpus: float) -> Node:
        return self._start(name, num_cpus, [f"--address={self.address}"])

    def wait_nodes(self, count: int, timeout_s: float = 120) -> None:
        if not wait_for(lambda: len(self.alive_nodes()) == count, timeout_s, retry_on=STARTING):
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
            sid = node.pid
            if not wait_for(lambda: not session_pids(sid), 30):  # noqa: B023 (called here)
                for pid in session_pids(sid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
