"""Child processes for the benchmarks: a server, the load generator, the in-process limit.

Each runs in its own process so none shares a GIL or an event loop with another; this
process only starts them, waits and collects JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    kind: str
    proc: asyncio.subprocess.Process
    port: int
    http_port: int | None = None  # the gateway's OpenAI HTTP front end
    metrics_port: int | None = None  # the gateway's /metrics
    ray_address: str | None = None  # the Ray cluster a gateway server runs on

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(extra or {})}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def start_server(
    kind: str, config: str, env: dict[str, str] | None = None, timeout_s: float = 600
) -> Server:
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "load_tests.servers", kind, "--config", config,
        stdout=asyncio.subprocess.PIPE, env=_env(env),
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
        ready = json.loads(line)
        port = int(ready["port"])
    except (TimeoutError, ValueError, KeyError) as exc:
        await stop_server(Server(kind, proc, 0))
        raise RuntimeError(f"server {kind} did not start: {exc!r}") from exc
    return Server(
        kind,
        proc,
        port,
        ready.get("http_port"),
        ready.get("metrics_port"),
        ready.get("ray_address"),
    )


async def stop_server(server: Server, timeout_s: float = 90) -> None:
    """SIGTERM (the server drains and shuts Ray down), then SIGKILL to its group if stuck."""
    proc = server.proc
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def bench(target: str, out_dir: Path, args: list[str]) -> dict[str, Any]:
    """Runs `aigc bench` against target; returns its summary."""
    cmd = [PY, "-m", "aigc.cli", "bench", "--target", target, "--quiet", "--no-plots"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, *args, "--output-dir", str(out_dir), env=_env(None)
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
        stdout=asyncio.subprocess.PIPE, env=_env(None),
    )  # fmt: skip
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
