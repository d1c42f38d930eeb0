"""CI smoke load test: a few seconds of `aigc bench` in both modes against the session stack.

It checks that the summary is complete and consistent, never how fast anything was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from load_tests.bench.cli import main as bench_main
from load_tests.bench.records import RequestRecord, read_jsonl
from load_tests.bench.summary import METRICS, PERCENTILES, summarize

pytestmark = pytest.mark.integration

STATS = ("mean", "median", "std", *(f"p{p}" for p in PERCENTILES))
REQUIRED = [
    "duration", "completed", "failed", "num_requests", "errors_by_code",
    "request_throughput", "output_throughput", "total_output_tokens", "request_goodput",
    "images_per_second", "audio_seconds_per_second", "mean_audio_rtf", "per_modality",
] + [f"{s}_{m}_ms" for m in METRICS for s in STATS]  # fmt: skip


def run_bench(
    stack: Any, tmp: Path, mode: list[str], workload: list[str], protocol: str = "grpc"
) -> tuple[dict, list]:
    port = stack.gateway.port if protocol == "grpc" else stack.gateway.http_port
    argv = ["--target", f"127.0.0.1:{port}", "--protocol", protocol, *mode]
    argv += ["--warmup", "4", "--seed", "5"]
    for item in workload:
        argv += ["--workload", item]
    argv += ["--goodput", "ttft:60000", "e2el:60000", "--output-dir", str(tmp), "--quiet"]
    assert bench_main(argv) == 0
    summary = json.loads((tmp / "summary.json").read_text())
    return summary, list(read_jsonl(tmp / "records.jsonl"))


def check_consistent(summary: dict[str, Any], records: list[RequestRecord]) -> None:
    missing = [k for k in REQUIRED if k not in summary]
    assert not missing, missing
    measured = [r for r in records if not r.warmup]
    assert summary["num_requests"] == len(measured) > 0
    assert summary["completed"] + summary["failed"] == summary["num_requests"]
    assert sum(summary["errors_by_code"].values()) == summary["failed"]
    assert summary["failed"] == 0, summary["errors_by_code"]
    assert summary["warmup_requests"] == sum(r.warmup for r in records) == 4
    sections = summary["per_modality"].values()
    assert sum(s["completed"] for s in sections) == summary["completed"]
    assert sum(s["total_output_tokens"] for s in sections) == summary["total_output_tokens"]
    assert summary["request_throughput"] == pytest.approx(
        summary["completed"] / summary["duration"]
    )
    assert summary["request_goodput"] == pytest.approx(summary["request_throughput"])
    for m in METRICS:
        if summary[f"{m}_count"]:
            values = [summary[f"p{p}_{m}_ms"] for p in PERCENTILES]
            assert values == sorted(values), (m, values)
            assert summary[f"median_{m}_ms"] == pytest.approx(summary[f"p50_{m}_ms"])
            assert 0 <= values[0] <= summary[f"p99_{m}_ms"]
    assert summary["p50_ttft_ms"] <= summary["p50_e2el_ms"]
    assert summary["itl_count"] == sum(max(0, len(r.chunk_times) - 1) for r in measured)
    for r in measured:
        assert r.send <= (r.first_chunk or r.end) <= r.end
    # The summary is a pure function of the raw records: recomputing it gives the same numbers.
    again = summarize(records, duration=summary["duration"], slos=summary["goodput_slos_ms"])
    for key in ("completed", "p99_e2el_ms", "median_itl_ms", "output_throughput"):
        assert again[key] == pytest.approx(summary[key])


def test_smoke_closed_loop(stack: Any, served_workload: list[str], tmp_path: Path) -> None:
    summary, records = run_bench(
        stack, tmp_path, ["--concurrency", "4", "--duration", "3"], served_workload
    )
    check_consistent(summary, records)
    assert summary["mode"] == "closed"
    if any(w.startswith("image") for w in served_workload):
        assert (
            summary["per_modality"]["image"]["total_images"]
            == 2 * (summary["per_modality"]["image"]["completed"])
        )


def test_smoke_open_loop(stack: Any, served_workload: list[str], tmp_path: Path) -> None:
    summary, records = run_bench(
        stack, tmp_path, ["--rate", "10", "--num-requests", "20"], served_workload
    )
    check_consistent(summary, records)
    assert summary["mode"] == "open"
    assert summary["send_lag_count"] == 20
    assert all(r.intended_send is not None for r in records if not r.warmup)


def test_smoke_over_the_openai_http_api(
    stack: Any, served_workload: list[str], tmp_path: Path
) -> None:
    """The same workload through the OpenAI front end: the same records, summary and checks."""
    summary, records = run_bench(
        stack, tmp_path, ["--concurrency", "4", "--num-requests", "16"], served_workload, "http"
    )
    check_consistent(summary, records)
    text = summary["per_modality"].get("text")
    if text:
        assert text["total_output_tokens"] > 0  # usage read from SSE and JSON bodies
    audio = summary["per_modality"].get("audio")
    if audio:
        assert audio["total_audio_seconds"] > 0
