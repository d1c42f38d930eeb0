"""Times `aigc up` from Ctrl-C to exit and lists what it left behind.

python scripts/measure_shutdown.py [--config configs/local.yaml] [--signal INT|TERM]
    [--inflight N]

Runs `aigc up` in a session of its own with a private RAY_TMPDIR, waits for "ready", then
sends the signal to the whole process group (what a terminal's Ctrl-C does) or to the main
process only (--pid-only). Reports seconds from the signal to exit, warnings printed, and
processes of that session still alive afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load_tests.procs import AigcUp, free_port, session_processes  # noqa: E402


def private_config(path: Path, out_dir: Path) -> Path:
    """The config with absolute weights and a free Ray metrics port (others may hold 8080)."""
    cfg = yaml.safe_load(path.read_text())
    for m in cfg["models"]:
        if m.get("weights") and not str(m["weights"]).startswith("/"):
            m["weights"] = str((path.parent / m["weights"]).resolve())
    cfg.setdefault("ray", {})["metrics_export_port"] = free_port()
    out = out_dir / "config.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs/local.yaml"))
    p.add_argument("--signal", default="INT", choices=["INT", "TERM"])
    p.add_argument("--pid-only", action="store_true", help="signal the main process only")
    p.add_argument("--inflight", type=int, default=0, help="text streams running at the signal")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shut-", dir="/tmp"))
    config = private_config(Path(args.config).resolve(), tmp)
    ray_tmp = tempfile.mkdtemp(prefix="r-", dir="/tmp")
    port = free_port()
    try:
        up = AigcUp.start(
            config,
            args=("--port", str(port), "--metrics-port", "0"),
            env={"RAY_TMPDIR": ray_tmp},
            timeout_s=600,
            stamp=True,
        )
    except RuntimeError as exc:
        print(exc)
        return 1
    proc, lines = up.proc, up.lines
    results: list[str] = []
    started = threading.Semaphore(0)

    def stream() -> None:  # a text stream that is still running when the signal lands
        from aigc.client import Client

        words = " ".join(f"w{i}" for i in range(24))
        try:
            with Client(f"127.0.0.1:{port}", timeout=60) as c:
                chunks = 0
                for _ in c.stream_text(words):
                    chunks += 1
                    if chunks == 1:
                        started.release()
                results.append(f"OK, {chunks} chunks")
        except Exception as exc:
            started.release()
            results.append(f"{type(exc).__name__}: {getattr(exc, 'code', lambda: '')()}")

    threads = [threading.Thread(target=stream) for _ in range(args.inflight)]
    for t in threads:
        t.start()
    for _ in threads:
        started.acquire(timeout=60)
    sig = signal.SIGINT if args.signal == "INT" else signal.SIGTERM
    t0 = time.perf_counter()
    print(f"{t0:.2f} sending SIG{args.signal} to {'pid' if args.pid_only else 'group'}")
    if args.pid_only:
        proc.send_signal(sig)
    else:
        os.killpg(proc.pid, sig)
    rc = proc.wait(300)
    took = time.perf_counter() - t0
    time.sleep(2.0)  # processes that outlive the driver briefly are still leftovers
    left = [row[:100] for row in session_processes(proc.pid)]
    print("\n".join(lines))
    for t in threads:
        t.join(60)
    for k, r in enumerate(results):
        print(f"stream {k}: {r}")
    warnings = [ln for ln in lines if "WARN" in ln or "failed" in ln or "Traceback" in ln]
    print(
        f"exit code {rc}; signal -> exit {took:.1f}s; warnings {len(warnings)}; "
        f"processes left {len(left)}"
    )
    for row in left:
        print("  left:", row)
    extra = subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True, text=True).stdout
    if extra.strip():
        print("  processes naming", ray_tmp, ":", extra.split())
    return 0


if __name__ == "__main__":
    sys.exit(main())
