"""Speed of the default text model (smollm2): in-process vs served, plus `make up` time to ready.

1. In-process: ``python -m load_tests.inprocess`` (the engine alone, no Ray, no RPC) keeps
   c sequences in flight for ``--seconds``: output tokens/s.
2. Served: ``aigc up`` with a copy of ``configs/local.yaml`` holding only smollm2 (same
   settings), then ``aigc bench`` (closed loop, streaming, the same workload generator) at each
   c: output tokens/s, TTFT and TPOT p50/p99; the replica's resident memory.
3. ``aigc up`` with the whole ``configs/local.yaml`` (what ``make up`` runs once assets exist):
   seconds until it reports every model ready.

Each side runs alone (the other is stopped). Results: ``bench-results/smollm2/summary.json``
and a markdown table on stdout. Ports are taken free so a running stack is not disturbed.

    python scripts/demo_models/bench_smollm2.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from load_tests.procs import AigcUp, free_port  # noqa: E402

PY = sys.executable
AIGC = str(Path(PY).with_name("aigc"))


def config_copy(out: Path, only: str | None) -> Path:
    """configs/local.yaml with absolute weights and free metrics ports (optionally one model)."""
    src = REPO / "configs" / "local.yaml"
    cfg = yaml.safe_load(src.read_text())
    cfg["gateway"]["metrics_port"] = 0
    cfg["ray"]["metrics_export_port"] = free_port()
    models = [m for m in cfg["models"] if only is None or m["name"] == only]
    for m in models:
        w = m.get("weights")
        if w and w.startswith(("./", "../")):
            m["weights"] = str((src.parent / w).resolve())
    cfg["models"] = models
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def up(config: Path, log: Path) -> tuple[AigcUp, float]:
    """Starts `aigc up` (load_tests.procs.AigcUp); returns it and the seconds it reported
    until every model was ready."""
    server = AigcUp.start(
        config, args=("--port", str(free_port()), "--metrics-port", "0"), timeout_s=900
    )
    m = re.search(r"all models ready in ([\d.]+)s", "\n".join(server.lines))
    if not m:
        down(server, log)
        raise RuntimeError(f"aigc up did not report its ready time; see {log}")
    return server, float(m.group(1))


def down(server: AigcUp, log: Path) -> None:
    """Stops it as Ctrl-C does and keeps its output in `log`."""
    server.stop()
    log.write_text("\n".join(server.lines) + "\n")


def replica_rss_mb(pattern: str) -> list[float]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    sizes = []
    for pid in out:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        m = re.search(r"VmRSS:\s+(\d+) kB", status)
        if m:
            sizes.append(int(m.group(1)) / 1024)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--skip-full-up", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "smollm2")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    one = config_copy(args.out / "smollm2-only.yaml", "smollm2")
    summary: dict[str, Any] = {
        "seconds": args.seconds,
        "max_tokens": args.max_tokens,
        "load_average_at_start": os.getloadavg(),
        "in_process": {},
        "served": {},
    }

    for c in args.concurrency:
        cmd = [PY, "-m", "load_tests.inprocess", "--config", str(one), "--model", "smollm2"]
        cmd += ["--batch", str(c), "--seconds", str(args.seconds)]
        cmd += ["--max-tokens", str(args.max_tokens)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        summary["in_process"][c] = row
        print(f"in-process c={c}: {row['output_throughput']:.1f} tok/s", flush=True)

    one_log = args.out / "up-smollm2.log"
    server, ready_s = up(one, one_log)
    summary["served_stack_ready_seconds"] = ready_s
    try:
        summary["replica_rss_mb"] = replica_rss_mb("ServeReplica:text:smollm2")
        for c in args.concurrency:
            run_dir = args.out / f"served-c{c}"
            cmd = [AIGC, "bench", "--target", server.target, "--concurrency", str(c)]
            cmd += ["--duration", str(args.seconds), "--warmup", str(max(2, c))]
            cmd += ["--workload", f"text:smollm2,max_tokens={args.max_tokens}"]
            cmd += ["--output-dir", str(run_dir), "--no-plots", "--quiet", "--timeout", "600"]
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            s = json.loads((run_dir / "summary.json").read_text())
            summary["served"][c] = {
                k: s.get(k)
                for k in (
                    "steady_output_throughput",
                    "output_throughput",
                    "median_ttft_ms",
                    "p99_ttft_ms",
                    "median_tpot_ms",
                    "p99_tpot_ms",
                    "completed",
                    "failed",
                )
            }
            print(f"served c={c}: {summary['served'][c]}", flush=True)
        summary["replica_rss_mb_after"] = replica_rss_mb("ServeReplica:text:smollm2")
    finally:
        down(server, one_log)

    if not args.skip_full_up:
        full = config_copy(args.out / "local-all.yaml", None)
        server, full_s = up(full, args.out / "up-all.log")
        summary["make_up_ready_seconds"] = full_s
        summary["replica_rss_mb_full_stack"] = replica_rss_mb("ServeReplica:")
        down(server, args.out / "up-all.log")

    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        "\n| c | in-process tok/s | served tok/s | served/in-process | TTFT p50 / p99 ms "
        "| TPOT p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for c in args.concurrency:
        i = summary["in_process"][c]["output_throughput"]
        s = summary["served"][c]
        tput = s["steady_output_throughput"] or s["output_throughput"]
        print(
            f"| {c} | {i:.1f} | {tput:.1f} | {tput / i:.0%} | "
            f"{s['median_ttft_ms']:.0f} / {s['p99_ttft_ms']:.0f} | "
            f"{s['median_tpot_ms']:.0f} / {s['p99_tpot_ms']:.0f} |"
        )
    print(f"replica RSS MB: {summary['replica_rss_mb']} -> {summary['replica_rss_mb_after']}")
    print(f"one-model stack ready in {ready_s:.1f} s")
    if "make_up_ready_seconds" in summary:
        print(f"configs/local.yaml stack ready in {summary['make_up_ready_seconds']:.1f} s")


if __name__ == "__main__":
    main()
