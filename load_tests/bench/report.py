"""Human output: the live progress line, the final table (laid out like vLLM's) and PNG plots."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from load_tests.bench.records import RequestRecord
from load_tests.bench.runner import Progress


async def show_progress(
    progress: Progress, period_s: float = 1.0, out: TextIO = sys.stderr
) -> None:
    """Prints one status line per period until cancelled (a rewritten line on a terminal)."""
    tty = out.isatty()
    last_done, last_t = 0, time.perf_counter()
    while True:
        await asyncio.sleep(period_s)
        now = time.perf_counter()
        rate = (progress.done - last_done) / (now - last_t)
        last_done, last_t = progress.done, now
        line = (
            f"[{progress.phase} {now - progress.started:6.1f}s] sent {progress.sent} "
            f"done {progress.done} in-flight {progress.in_flight} errors {progress.errors} "
            f"{rate:7.1f} req/s"
        )
        out.write(("\r" + line + "   ") if tty else line + "\n")
        out.flush()


_ROWS: list[tuple[str, str, str]] = [
    ("Successful requests:", "completed", "d"),
    ("Failed requests:", "failed", "d"),
    ("Benchmark duration (s):", "duration", ".2f"),
    ("Total generated tokens:", "total_output_tokens", "d"),
    ("Request throughput (req/s):", "request_throughput", ".2f"),
    ("Steady request throughput (req/s):", "steady_request_throughput", ".2f"),
    ("Request goodput (req/s):", "request_goodput", ".2f"),
    ("Requests within deadline:", "within_deadline", "d"),
    ("Deadline goodput (req/s):", "deadline_goodput", ".2f"),
    ("Steady deadline goodput (req/s):", "steady_deadline_goodput", ".2f"),
    ("Refused (RESOURCE_EXHAUSTED):", "refused", "d"),
    ("P99 refusal latency (ms):", "p99_refusal_ms", ".2f"),
    ("Batch share of refusals:", "batch_share_of_refused", ".1%"),
    ("Admitted, then DEADLINE_EXCEEDED:", "admitted_expired", "d"),
    ("Expired share of admitted:", "admitted_expired_share", ".2%"),
    ("Output token throughput (tok/s):", "output_throughput", ".2f"),
    ("Images per second:", "images_per_second", ".2f"),
    ("Audio seconds per second:", "audio_seconds_per_second", ".2f"),
    ("Mean audio real-time factor:", "mean_audio_rtf", ".4f"),
]


def format_table(summary: dict[str, Any]) -> str:
    lines = ["{s:{c}^60}".format(s=" Serving Benchmark Result ", c="=")]
    for label, key, fmt in _ROWS:
        if key in summary and (summary[key] or key in ("completed", "failed", "duration")):
            lines.append(f"{label:<44}{summary[key]:>16{fmt}}")
    if summary.get("errors_by_code"):
        codes = ", ".join(f"{k} {v}" for k, v in sorted(summary["errors_by_code"].items()))
        lines.append(f"{'Errors by code:':<24}{codes:>36}")
    names = {"ttft": "Time to First Token", "tpot": "Time per Output Token (excl. 1st token)"}
    names |= {"itl": "Inter-token Latency", "e2el": "End-to-end Latency"}
    names |= {"send_lag": "Send lag (actual - intended)"}
    for metric, title in names.items():
        if not summary.get(f"{metric}_count"):
            continue
        lines.append("{s:{c}^60}".format(s=f" {title} ", c="-"))
        for stat in ("mean", "median", "p50", "p90", "p99"):
            key = f"{stat}_{metric}_ms"
            lines.append(
                f"{(stat.capitalize() + ' ' + metric.upper() + ' (ms):'):<44}{summary[key]:>16.2f}"
            )
    lines.append("=" * 60)
    for modality, section in summary.get("per_modality", {}).items():
        lines.append(
            f"{modality:>6}: {section['completed']} ok, {section['failed']} failed, "
            f"{section['request_throughput']:.1f} req/s, p50 e2el {section['p50_e2el_ms']:.1f} ms,"
            f" p99 e2el {section['p99_e2el_ms']:.1f} ms"
        )
    for tier, section in summary.get("per_priority", {}).items():
        lines.append(
            f"{tier:>11}: {section['within_deadline']} within deadline, "
            f"{section['refused']} refused, {section['admitted_expired']} expired, "
            f"p99 e2el {section['p99_e2el_ms']:.1f} ms"
        )
    return "\n".join(lines)


def plot(records: list[RequestRecord], out_dir: Path, bin_s: float = 1.0) -> list[Path]:
    """latency_cdf.png (e2el and TTFT per modality) and over_time.png (throughput and
    latency per time bin, by completion time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in records if not r.warmup and r.ok]
    if not measured:
        return []
    modalities = sorted({r.modality for r in measured})
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("e2el", "ttft"), strict=True):
        for k, m in enumerate(modalities):
            ms = np.sort([getattr(r, metric) * 1000 for r in measured if r.modality == m])
            ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, color=f"C{k}", label=m)
        ax.set_xlabel(f"{metric.upper()} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    written.append(_save(plt, fig, "Latency CDF per modality", out_dir / "latency_cdf.png"))

    start = min(r.send for r in measured)
    end = max(r.end for r in measured)
    bin_s = min(bin_s, end - start) or 1.0
    edges = start + bin_s * np.arange(int((end - start) / bin_s) + 1)  # full bins only
    centers = (edges[:-1] + edges[1:]) / 2 - start
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for k, m in enumerate(modalities):
        color = f"C{k}"
        ends = np.array([r.end for r in measured if r.modality == m])
        lat = np.array([r.e2el * 1000 for r in measured if r.modality == m])
        counts, _ = np.histogram(ends, edges)
        ax1.plot(centers, counts / bin_s, color=color, label=m)
        idx = np.digitize(ends, edges) - 1
        p50 = [
            np.median(lat[idx == i]) if np.any(idx == i) else np.nan for i in range(len(centers))
        ]
        p99 = [
            np.percentile(lat[idx == i], 99) if np.any(idx == i) else np.nan
            for i in range(len(centers))
        ]
        ax2.plot(centers, p50, color=color, label=f"{m} p50")
        ax2.plot(centers, p99, color=color, linestyle="--", label=f"{m} p99")
    ax1.set_ylabel("completed req/s")
    ax1.legend()
    ax1.grid(True, alpha=0.3)
    ax2.set_ylabel("e2el (ms)")
    ax2.set_xlabel("time since start (s)")
    ax2.legend()
    ax2.grid(True, alpha=0.3)
    written.append(_save(plt, fig, "Throughput and latency over time", out_dir / "over_time.png"))
    return written


def _save(plt: Any, fig: Any, title: str, path: Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
