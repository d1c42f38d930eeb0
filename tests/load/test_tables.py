"""The BENCHMARKS.md tables and goal verdicts, from hand-made benchmark rows."""

from __future__ import annotations

from load_tests.benchmarks import batching_points
from load_tests.tables import batching_table, overhead_table


def row(path: str, c: int, p50: float, rps: float) -> dict:
    latency = {"p50_e2el_ms": p50, "p99_e2el_ms": 2 * p50}
    rates = {"request_throughput": rps / 2, "steady_request_throughput": rps}
    return {"path": path, "concurrency": c, **latency, **rates, "failed": 0}


def test_overhead_verdicts_use_p50_difference_and_steady_throughput_ratio() -> None:
    rows = [
        row("plain grpc.aio echo", 1, 0.5, 1800),
        row("gateway -> DeploymentHandle", 1, 1.8, 500),
        row("gateway -> DeploymentHandle", 64, 90, 900),
        row("Serve gRPC proxy", 64, 150, 400),
    ]
    text = overhead_table(rows)
    assert "adds 1.30 ms p50" in text and "(goal <= 1.5 ms: met)" in text
    assert "2.25x the throughput" in text and "(goal >= 2x: met)" in text
    assert "| Serve gRPC proxy | - | 150.00 / 300.00, 400 |" in text


def served(rate_key: str, value: float) -> dict:
    return {"steady_" + rate_key: value, rate_key: value / 2, "p50_e2el_ms": 10.0,
            "p99_e2el_ms": 20.0, "failed": 0}  # fmt: skip


def test_batching_verdicts_compare_served_with_in_process_at_the_goal_point() -> None:
    base = {"model": "faces", "modality": "image", "max_batch_size": 64, "serve_env": "default"}
    rows = [
        {**base, "concurrency": 64, "count": 1, "batched": True, "batch": 64,
         "served_model": "faces", "served": served("images_per_second", 600),
         "limit": {"images_per_second": 700}},
        {**base, "concurrency": 64, "count": 1, "batched": False, "batch": 1,
         "served_model": "faces-b1", "served": served("images_per_second", 150), "limit": None},
    ]  # fmt: skip
    text = batching_table(rows)
    assert "served 86% of in-process (goal >= 85%: met); 4.0x the unbatched" in text
    assert "| faces-b1 | 64 | 1 | off (max_batch_size 1) |" in text


def test_image_points_include_multi_image_requests_within_the_batch_limit() -> None:
    points = batching_points("image", 64)
    multi = [p for p in points if p["count"] == 8]
    assert multi and all(p["batch"] * 8 <= 64 for p in multi)
    assert {p["concurrency"] for p in points if not p["batched"]} == {1, 16, 64}
    assert all(p["batch"] <= 16 for p in batching_points("text", 16))
