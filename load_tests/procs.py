"""Every child process the benchmarks and the multi-node tests start: a benchmark server
(`python -m load_tests.servers`), `aigc up`, an OpenAI-compatible server (llama-server, vLLM's),
a Ray node (load_tests.cluster), the load generator (`aigc bench`), the in-process limit.

Each runs in a session of its own, as a terminal runs it: none shares a GIL or an event loop
with another, and stopping one reaches everything it started (SIGKILL to the session when it
does not stop in time). This process only starts them, waits and collects JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_tests.wait import wait_for

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A benchmark server's or the load generator's environment: this one, Ray auth off."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(extra or {})}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def node_env(temp_dir: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A Ray node's or `aigc up`'s environment: NODE_ENV, none of DROP_ENV, `temp_dir` as
    RAY_TMPDIR."""
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env.update(NODE_ENV)
    env.update(extra or {})
    if temp_dir is not None:
        env["RAY_TMPDIR"] = temp_dir
    return env


def _session_rows(sid: int) -> list[tuple[int, str, str]]:
    """(PID, state, ARGS) of every process in session `sid`."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,sid=,stat=,args="], capture_output=True, text=True
    )
    rows = [line.split(None, 3) for line in out.stdout.splitlines()]
    return [(int(r[0]), r[2], r[3]) for r in rows if len(r) == 4 and int(r[1]) == sid]


def session_processes(sid: int) -> list[str]:
    """'PID ARGS' of every process in session `sid` (what a terminal's Ctrl-C reaches)."""
    return [f"{pid} {args}" for pid, _, args in _session_rows(sid)]


def session_pids(sid: int) -> list[int]:
    return [pid for pid, _, _ in _session_rows(sid)]


def live_session_pids(sid: int) -> list[int]:
    """The processes of session `sid` that are still running (zombies, which only wait for
    their parent to reap them, left out)."""
    return [pid for pid, state, _ in _session_rows(sid) if "Z" not in state]


def kill_session(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Child:
    """A command in a session of its own. Its output goes to `log` when given; otherwise a
    thread reads it (stderr too, unless `merge_stderr` is off: then stderr stays this
    process's) into `lines`, each prefixed with time.perf_counter() when `stamp`."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str] | None = None,
        *,
        log: Path | None = None,
        cwd: Path | None = None,
        merge_stderr: bool = True,
        stamp: bool = False,
    ) -> None:
        self.lines: list[str] = []
        self.reader: threading.Thread | None = None  # reads the output until the process ends
        self._ended = False
        self._read_more = threading.Condition()
        if log is not None:
            with log.open("w") as f:  # the child keeps it
                self.proc: subprocess.Popen[str] = subprocess.Popen(
                    cmd, stdout=f, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                    start_new_session=True,
                )  # fmt: skip
            return
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else None,
            text=True, env=env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, args=(stamp,), daemon=True)
        self.reader.start()

    def _read(self, stamp: bool) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._read_more:
                self.lines.append(
                    f"{time.perf_counter():.2f} {line.rstrip()}" if stamp else line.rstrip()
                )
                self._read_more.notify_all()
        with self._read_more:
            self._ended = True
            self._read_more.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout_s: float) -> str | None:
        """The first output line that satisfies `predicate`, as soon as it is read; None when
        the output ends or timeout_s passes first."""
        end = time.monotonic() + timeout_s
        seen = 0
        with self._read_more:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = end - time.monotonic()
                if self._ended or left <= 0:
                    return None
                self._read_more.wait(left)

    def stop(
        self, sig: int = signal.SIGTERM, timeout_s: float = 90, group: bool = False
    ) -> int | None:
        """`sig` to the process (`group`: to its whole session), then SIGKILL to the session
        when it has not exited after timeout_s; its exit code. Returns once nothing of its
        session is left (what outlives the process, an engine core say, gets SIGKILL after
        a grace period): the next server measured is then alone on the machine."""
        if self.proc.poll() is None:
            if group:
                kill_session(self.proc, sig)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        sid = self.proc.pid
        if not wait_for(lambda: not live_session_pids(sid), 30.0, step_s=0.2, retry_on=()):
            for pid in live_session_pids(sid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not live_session_pids(sid), 10.0, step_s=0.2, retry_on=())
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to the session: the process and everything it started die together."""
        kill_session(self.proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)


# ---- a benchmark server (load_tests.servers) ---------------------------------------------
@dataclass
class Server:
    kind: str
    child: Child
    port: int
    http_port: int | None = None  # the gateway's OpenAI HTTP front end
    metrics_port: int | None = None  # the gateway's /metrics
    ray_address: str | None = None  # the Ray cluster a gateway server runs on

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_server(
    kind: str,
    config: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
    cwd: str | None = None,
) -> Server:
    """`python -m load_tests.servers KIND`, once it has printed its ready line (JSON); `cwd`:
    another checkout's code (the same venv)."""
    cmd = [PY, "-m", "load_tests.servers", kind, "--config", config]
    child = Child(cmd, server_env(env), merge_stderr=False, cwd=Path(cwd) if cwd else None)
    line = await asyncio.to_thread(child.wait_line, lambda _: True, timeout_s)
    try:
        if line is None:
            raise TimeoutError(f"no ready line in {timeout_s} s, or it exited")
        ready = json.loads(line)
        port = int(ready["port"])
    except (TimeoutError, ValueError, KeyError) as exc:
        await stop_server(Server(kind, child, 0))
        raise RuntimeError(f"server {kind} did not start: {exc!r}") from exc
    return Server(
        kind,
        child,
        port,
        ready.get("http_port"),
        ready.get("metrics_port"),
        ready.get("ray_address"),
    )


async def stop_server(server: Server, timeout_s: float = 90) -> None:
    """SIGTERM (the server drains and shuts Ray down), then SIGKILL to its session if stuck."""
    await asyncio.to_thread(server.child.stop, signal.SIGTERM, timeout_s)


# ---- `aigc up` ---------------------------------------------------------------------------
@dataclass
class AigcUp:
    """`aigc up [--address CLUSTER] --config CONFIG` in a session of its own, as a terminal runs
    it: it deploys the apps and runs the gateway (on a cluster, a Ray driver that holds no
    resources). Used by the cluster tests, the Ctrl-C test, the LLM benchmark and
    scripts/measure_shutdown.py. `command="gateway"`: `aigc gateway --address CLUSTER`, one more
    gateway for apps already deployed (the durable batch tests)."""

    child: Child
    port: int = 0
    http_port: int = 0  # the OpenAI HTTP front end, when on
    metrics_port: int = 0

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
        command: str = "up",
    ) -> AigcUp:
        """Returns once it prints that it is ready; raises (with its last lines) if it exits or
        times out first. `stamp`: each kept line starts with time.perf_counter()."""
        cmd = [PY, "-m", "aigc.cli", command, "--config", str(config), *args]
        if address is not None:
            cmd += ["--address", address]
        up = cls(Child(cmd, node_env(None, env), cwd=ROOT, stamp=stamp))
        ready = up.child.wait_line(lambda line: "ready; Ctrl-C stops" in line, timeout_s)
        if ready is None or up.proc.poll() is not None:
            up.stop()
            raise RuntimeError(
                f"aigc {command} did not become ready:\n" + "\n".join(up.lines[-40:])
            )
        for line in up.lines:  # the addresses it printed before it was ready
            if "] gateway      grpc://" in line:
                up.port = int(line.split("grpc://", 1)[1].split()[0].rsplit(":", 1)[1])
            elif "] openai       http://" in line:
                up.http_port = _port_of_url(line)
            elif "] gateway metrics  http://" in line:
                up.metrics_port = _port_of_url(line)
        return up

    @property
    def proc(self) -> subprocess.Popen[str]:
        return self.child.proc

    @property
    def lines(self) -> list[str]:
        return self.child.lines

    @property
    def reader(self) -> threading.Thread | None:
        return self.child.reader

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self, timeout_s: float = 120) -> int | None:
        """SIGINT, as Ctrl-C (drain, delete the apps), then SIGKILL to the session if stuck."""
        return self.child.stop(signal.SIGINT, timeout_s)


def _port_of_url(line: str) -> int:
    url = line.split("http://", 1)[1].split("/", 1)[0]
    return int(url.rsplit(":", 1)[1])


# ---- an OpenAI-compatible server (llama-server, vLLM's) -----------------------------------
def start_openai_server(cmd: list[str], port: int, log: Path, what: str, ready_s: float) -> Child:
    """Starts a server (its output in `log`) and returns it once `/health` on `port` answers
    200; raises when it exits or is not healthy within ready_s (its session killed). Stop it
    with `.stop(group=True)`: its own children (vLLM's engine) get the signal too."""
    child = Child(cmd, log=log)

    def healthy() -> bool:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return bool(r.status == 200)

    try:
        if not wait_for(healthy, ready_s):  # OSError: not listening yet
            raise RuntimeError(f"{what} not healthy; see {log}")
    except RuntimeError:
        child.kill()
        raise
    return child


# ---- the load generator and the in-process limit, run to completion -----------------------
def closed_loop(concurrency: int, seconds: float, warmup: int, workload: str) -> list[str]:
    """`aigc bench` arguments for a closed loop of `concurrency` clients."""
    return ["--concurrency", str(concurrency), "--duration", str(seconds),
            "--warmup", str(warmup), "--workload", workload]  # fmt: skip


async def bench(target: str, out_dir: Path, args: list[str]) -> dict[str, Any]:
    """Runs `aigc bench` against target; returns its summary."""
    cmd = [PY, "-m", "aigc.cli", "bench", "--target", target, "--quiet", "--no-plots"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, *args, "--output-dir", str(out_dir), env=server_env()
    )
    rc = await proc.wait()
    summary: dict[str, Any] = json.loads((out_dir / "summary.json").read_text())
    summary["exit_code"] = rc
    return summary


async def inprocess(config: str, model: str, batch: int, count: int, seconds: float,
                    max_tokens: int) -> dict[str, Any]:  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "load_tests.inprocess", "--config", config, "--model", model,
        "--batch", str(batch), "--count", str(count), "--seconds", str(seconds),
        "--max-tokens", str(max_tokens),
        stdout=asyncio.subprocess.PIPE, env=server_env(),
    )  # fmt: skip
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
