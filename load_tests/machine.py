"""Facts recorded with every benchmark: date, machine, commit, load, and a quiet-machine wait."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any

from load_tests.bench.cli import commit
from load_tests.wait import wait_for


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def other_ray_running() -> bool:
    out = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True)
    return bool(out.stdout.strip())


def wait_quiet(max_load: float = 0.5, limit_s: float = 900, log: Any = print) -> bool:
    """Waits (up to limit_s) for a 1-minute load average below max_load and no raylet: on a
    2-core machine another process's work would show up as our latency."""

    seen = ""

    def quiet() -> bool:
        nonlocal seen
        load, busy = os.getloadavg()[0], other_ray_running()
        seen = f"load {load:.2f}, raylet running: {busy}"
        if load < max_load and not busy:
            return True
        log(f"waiting for a quiet machine ({seen})")
        return False

    if wait_for(quiet, limit_s, step_s=30, retry_on=()):
        return True
    log(f"machine still busy ({seen}); going on")
    return False


CpuTimes = dict[int, tuple[float, int, str]]  # pid -> (CPU seconds, session id, name)


def cpu_seconds() -> CpuTimes:
    """Every process's (CPU seconds so far, session id, name), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(d)] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[3]), name)
    return out


def cpu_spent(before: CpuTimes, after: CpuTimes) -> CpuTimes:
    """Each process's CPU seconds between two `cpu_seconds()` snapshots (a process started in
    between: all of its time)."""
    return {
        pid: (cpu - before.get(pid, (0.0, 0, ""))[0], sid, name)
        for pid, (cpu, sid, name) in after.items()
    }


def cpu_by_name(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    """CPU seconds spent between two `cpu_seconds()` snapshots, per process name (this
    process: "this script"), largest first."""
    used: dict[str, float] = {}
    for pid, (cpu, _sid, name) in cpu_spent(before, after).items():
        key = "this script" if pid == os.getpid() else name
        used[key] = used.get(key, 0.0) + cpu
    return dict(sorted(((k, v) for k, v in used.items() if v > 0), key=lambda kv: -kv[1]))


def facts() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "commit": commit(),
        "load_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def heading(meta: dict[str, Any]) -> str:
    """How a result file names the run: the command, then when, where, which commit."""
    header = f"{meta['date']}, {meta['cores']} x {meta['cpu']}, commit {meta['commit']}"
    return f"`{meta['command']}` ({header}, load {meta['load_at_start']:.2f} at start)"
