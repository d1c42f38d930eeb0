"""The summary math against hand-computed values: vLLM's TTFT/TPOT/ITL/e2el and goodput."""

from __future__ import annotations

import numpy as np
import pytest

from load_tests.bench.records import RequestRecord
from load_tests.bench.summary import parse_goodput, summarize


def stream(index: int, chunks: list[float], tokens: int, send: float = 0.0, **kw) -> RequestRecord:
    return RequestRecord(
        index=index,
        modality=kw.pop("modality", "text"),
        model="m",
        method="GenerateStream",
        stream=True,
        send=send,
        first_chunk=chunks[0],
        chunk_times=chunks,
        end=chunks[-1],
        output_tokens=tokens,
        **kw,
    )


def test_definitions_follow_vllm() -> None:
    r = stream(0, [0.1, 0.2, 0.4], tokens=3)
    assert r.ttft == pytest.approx(0.1)
    assert r.e2el == pytest.approx(0.4)
    assert r.itls == pytest.approx([0.1, 0.2])
    assert r.tpot == pytest.approx((0.4 - 0.1) / 2)  # (e2el - ttft) / (tokens - 1)


def test_tpot_needs_more_than_one_token() -> None:
    assert stream(0, [0.1], tokens=1).tpot is None
    s = summarize([stream(0, [0.1], tokens=1), stream(1, [0.1, 0.3], tokens=2)], duration=1.0)
    assert s["tpot_count"] == 1
    assert s["median_tpot_ms"] == pytest.approx(200.0)


def test_unary_ttft_is_e2el() -> None:
    r = RequestRecord(0, "image", "m", "Generate", False, send=1.0, end=1.25, images=4)
    assert r.ttft == r.e2el == pytest.approx(0.25)
    s = summarize([r], duration=2.0)
    assert s["images_per_second"] == pytest.approx(2.0)
    assert s["p99_ttft_ms"] == s["p99_e2el_ms"] == pytest.approx(250.0)


def test_itl_is_pooled_over_requests() -> None:
    a = stream(0, [0.1, 0.2, 0.3], tokens=3)
    b = stream(1, [0.5, 1.5], tokens=2)
    s = summarize([a, b], duration=2.0)
    pooled = np.array([0.1, 0.1, 1.0]) * 1000
    assert s["itl_count"] == 3
    assert s["mean_itl_ms"] == pytest.approx(pooled.mean())
    assert s["p90_itl_ms"] == pytest.approx(np.percentile(pooled, 90))
    assert s["std_itl_ms"] == pytest.approx(pooled.std())


def test_throughput_and_counts() -> None:
    records = [
        stream(i, [0.1 * i + 0.05, 0.1 * i + 0.1], tokens=4, prompt_tokens=3) for i in range(10)
    ]
    records.append(
        RequestRecord(10, "text", "m", "Generate", False, 0.0, end=0.2, status="UNAVAILABLE")
    )
    records.append(stream(11, [0.01], tokens=9, warmup=True))
    s = summarize(records, duration=4.0)
    assert (s["num_requests"], s["completed"], s["failed"]) == (11, 10, 1)
    assert s["errors_by_code"] == {"UNAVAILABLE": 1}
    assert s["request_throughput"] == pytest.approx(10 / 4.0)
    assert s["output_throughput"] == pytest.approx(40 / 4.0)
    assert s["total_token_throughput"] == pytest.approx(70 / 4.0)
    assert s["e2el_count"] == 10  # the failed and the warm-up request are not in latencies


def test_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(1)
    ends = rng.exponential(0.05, 200)
    records = [
        RequestRecord(i, "audio", "m", "Synthesize", False, 0.0, end=float(e))
        for i, e in enumerate(ends)
    ]
    s = summarize(records, duration=1.0)
    ms = ends * 1000
    for p in (50, 90, 95, 99):
        assert s[f"p{p}_e2el_ms"] == pytest.approx(np.percentile(ms, p))
    assert s["median_e2el_ms"] == pytest.approx(np.median(ms))


def test_goodput_counts_requests_meeting_every_slo() -> None:
    fast = stream(0, [0.05, 0.06, 0.07], tokens=3)  # ttft 50, tpot 10, e2el 70 ms
    slow_first = stream(1, [0.5, 0.51], tokens=2)  # ttft 500
    slow_tokens = stream(2, [0.05, 0.5], tokens=2)  # tpot 450
    s = summarize(
        [fast, slow_first, slow_tokens], duration=2.0, slos=parse_goodput(["ttft:100", "tpot:50"])
    )
    assert s["good_requests"] == 1
    assert s["request_goodput"] == pytest.approx(0.5)
    assert s["goodput_slos_ms"] == {"ttft": 100.0, "tpot": 50.0}


def test_goodput_parsing_rejects_unknown_keys() -> None:
    assert parse_goodput(["e2el:250"]) == {"e2el": 250.0}
    with pytest.raises(ValueError, match="ttft"):
        parse_goodput(["latency:5"])
    with pytest.raises(ValueError, match="positive"):
        parse_goodput(["ttft:0"])


def test_audio_real_time_factor() -> None:
    r = RequestRecord(0, "audio", "m", "Synthesize", False, 0.0, end=0.5, audio_seconds=2.0)
    s = summarize([r], duration=1.0)
    assert s["mean_audio_rtf"] == pytest.approx(0.25)
    assert s["audio_seconds_per_second"] == pytest.approx(2.0)


def test_open_loop_reports_lag_and_latency_from_schedule() -> None:
    r = stream(0, [1.2, 1.3], tokens=2, send=1.0, intended_send=0.5)
    s = summarize([r], duration=2.0)
    assert s["mean_send_lag_ms"] == pytest.approx(500.0)
    assert s["mean_e2el_from_intended_ms"] == pytest.approx(800.0)
    assert s["mean_e2el_ms"] == pytest.approx(300.0)


def test_per_modality_sections_add_up() -> None:
    records = [stream(0, [0.1, 0.2], tokens=2), stream(1, [0.1, 0.2], tokens=0, modality="audio")]
    s = summarize(records, duration=1.0)
    assert set(s["per_modality"]) == {"text", "audio"}
    assert sum(v["completed"] for v in s["per_modality"].values()) == s["completed"]


def test_empty_run_gives_zeros_like_vllm() -> None:
    s = summarize([], duration=0.0)
    assert s["completed"] == 0 and s["request_throughput"] == 0.0
    assert s["p99_ttft_ms"] == 0.0 and s["ttft_count"] == 0


def test_steady_rate_counts_completions_inside_the_window_only() -> None:
    inside = [
        RequestRecord(i, "image", "m", "Generate", False, -0.5, end=0.5 + i, images=2)
        for i in range(3)
    ]
    warm = RequestRecord(9, "image", "m", "Generate", False, -1.0, end=0.2, images=2, warmup=True)
    late = RequestRecord(10, "image", "m", "Generate", False, 3.5, end=4.5, images=2)
    s = summarize([*inside, warm, late], duration=4.5, window=4.0)
    assert s["steady_request_throughput"] == pytest.approx(4 / 4.0)  # warm-up one ended inside
    assert s["steady_images_per_second"] == pytest.approx(8 / 4.0)
    assert s["request_throughput"] == pytest.approx(4 / 4.5)  # vLLM's: measured ones, to the end
    assert s["per_modality"]["image"]["steady_request_throughput"] == pytest.approx(1.0)


def test_steady_token_rate_credits_stream_tokens_as_they_arrive() -> None:
    """Two streams of 4 tokens each: one whose messages straddle the window's end (half of
    them inside: 2 tokens), one wholly inside; a unary reply counts only if it ended inside."""
    straddling = stream(0, [0.5, 1.5, 2.5, 3.5], tokens=4)  # sent at 0.0; 2 of 4 before t=2
    inside = stream(1, [0.2, 0.4, 0.6, 0.8], tokens=4)
    unary_late = RequestRecord(2, "text", "m", "Generate", False, 0.0, end=2.5, output_tokens=5)
    unary_in = RequestRecord(3, "text", "m", "Generate", False, 0.0, end=1.5, output_tokens=3)
    s = summarize([straddling, inside, unary_late, unary_in], duration=4.0, window=2.0)
    assert s["steady_output_throughput"] == pytest.approx((2 + 4 + 3) / 2.0)
    assert s["steady_request_throughput"] == pytest.approx(2 / 2.0)  # completions inside


def test_admission_outcomes_goodput_against_deadlines_and_tiers() -> None:
    def rec(i: int, status: str, end: float, priority: str = "interactive") -> RequestRecord:
        r = RequestRecord(i, "text", "m", "Generate", False, 0.0, end=end, status=status)
        r.priority, r.deadline = priority, 1.0
        return r

    records = [
        rec(0, "OK", 0.5),
        rec(1, "OK", 0.9, "batch"),
        rec(2, "OK", 1.5),  # finished, but after its deadline: not goodput
        rec(3, "RESOURCE_EXHAUSTED", 0.002, "batch"),
        rec(4, "RESOURCE_EXHAUSTED", 0.004, "batch"),
        rec(5, "RESOURCE_EXHAUSTED", 0.010),
        rec(6, "DEADLINE_EXCEEDED", 1.0, "batch"),  # admitted, then expired
        rec(7, "UNAVAILABLE", 0.1),
    ]
    s = summarize(records, duration=2.0, window=1.0)
    assert (s["admitted"], s["refused"], s["admitted_expired"]) == (5, 3, 1)
    assert s["refused_share"] == pytest.approx(3 / 8)
    assert s["admitted_expired_share"] == pytest.approx(1 / 5)
    assert s["within_deadline"] == 2
    assert s["deadline_goodput"] == pytest.approx(2 / 2.0)
    assert s["steady_deadline_goodput"] == pytest.approx(2 / 1.0)  # both ended inside 1 s
    assert s["refusal_count"] == 3
    assert s["p99_refusal_ms"] == pytest.approx(np.percentile([2.0, 4.0, 10.0], 99))
    assert s["batch_share_of_refused"] == pytest.approx(2 / 3)
    batch, interactive = s["per_priority"]["batch"], s["per_priority"]["interactive"]
    assert (batch["refused"], batch["admitted"], batch["admitted_expired"]) == (2, 2, 1)
    assert batch["admitted_expired_share"] == pytest.approx(0.5)
    assert (interactive["refused"], interactive["within_deadline"]) == (1, 1)
    assert interactive["p99_e2el_ms"] == pytest.approx(np.percentile([500.0, 1500.0], 99))


def test_records_without_a_deadline_count_every_completion_as_goodput() -> None:
    r = RequestRecord(0, "image", "m", "Generate", False, 0.0, end=100.0, images=1)
    s = summarize([r], duration=100.0)
    assert s["within_deadline"] == 1 and s["refused"] == 0 and s["admitted_expired_share"] == 0
    assert "batch_share_of_refused" not in s
    assert set(s["per_priority"]) == {"interactive"}
