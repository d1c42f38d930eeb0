"""The load generator against the plain grpc.aio echo server (no Ray): counts, modes, records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from aigc.v1 import common_pb2
from load_tests.baselines import start_plain_server
from load_tests.bench.cli import main as bench_main
from load_tests.bench.records import RequestRecord, read_jsonl
from load_tests.bench.runner import RunConfig, Runner, arrival_offsets
from load_tests.bench.summary import summarize
from load_tests.bench.workload import Workload, parse_item


def run_against_echo(config: dict, items: list[str], seed: int = 0) -> list[RequestRecord]:
    async def go() -> list[RequestRecord]:
        server, port = await start_plain_server()
        try:
            cfg = RunConfig(target=f"127.0.0.1:{port}", **config)
            workload = Workload([parse_item(s) for s in items], seed=seed)
            return await Runner(cfg, workload).run()
        finally:
            await server.stop(0)

    return asyncio.run(go())


def test_closed_loop_sends_exactly_the_requests_asked_plus_warmup() -> None:
    records = run_against_echo(
        {"concurrency": 4, "num_requests": 40, "warmup": 6},
        ["text,weight=2", "image,count=3", "audio,stream=false", "audio"],
    )
    measured = [r for r in records if not r.warmup]
    assert len(measured) == 40 and sum(r.warmup for r in records) == 6
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
    assert {r.modality for r in measured} == {"text", "image", "audio"}
    for r in measured:
        assert r.send <= (r.first_chunk or r.end) <= r.end
        assert r.chunk_times == sorted(r.chunk_times)
        if r.modality == "image":
            assert r.images == 3
        if r.modality == "text":
            assert r.output_tokens == len(r.chunk_times)  # echo: one word per message
    assert sorted(r.index for r in measured) == list(range(6, 46))
    # Times count from the first measured send; warm-up flowed into it without a pause.
    first = min(r.send for r in measured)
    assert first >= 0.0
    assert all(r.send <= first for r in records if r.warmup)


def test_open_loop_keeps_intended_and_actual_send_times() -> None:
    records = run_against_echo({"rate": 200.0, "num_requests": 30, "seed": 3}, ["text"], seed=3)
    assert len(records) == 30
    intended = sorted(r.intended_send for r in records if r.intended_send is not None)
    assert len(intended) == 30
    expected = arrival_offsets(200.0, 1.0, 30, seed=3)
    assert intended == pytest.approx(sorted(expected.tolist()))
    assert all(r.send >= (r.intended_send or 0.0) for r in records)  # never early


def test_arrivals_are_seeded_gamma_with_the_asked_mean() -> None:
    a = arrival_offsets(50.0, 1.0, 20_000, seed=7)
    assert np.array_equal(a, arrival_offsets(50.0, 1.0, 20_000, seed=7))
    gaps = np.diff(a)
    assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.05)
    bursty = np.diff(arrival_offsets(50.0, 0.25, 20_000, seed=7))
    assert bursty.mean() == pytest.approx(1 / 50.0, rel=0.1)
    # Coefficient of variation: 1 for Poisson, 1/sqrt(shape) for gamma.
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)


def test_requests_depend_on_index_and_seed_only() -> None:
    items = [parse_item("text,weight=3"), parse_item("image:faces,count=2")]
    a, b = Workload(items, seed=1), Workload(items, seed=1)
    assert [a.request(i).request for i in range(20)] == [b.request(i).request for i in range(20)]
    assert a.request(5).request != Workload(items, seed=2).request(5).request


def test_priority_is_sent_and_mix_is_half_batch_without_changing_other_fields() -> None:
    items = [parse_item("text"), parse_item("image,count=2")]
    plain = Workload(items, seed=3)
    batch = Workload(items, seed=3, priority="batch")
    mix = Workload(items, seed=3, priority="mix")
    n = 400
    tiers = [mix.request(i).priority for i in range(n)]
    assert 0.4 < tiers.count("batch") / n < 0.6
    for i in range(20):
        p, b, m = plain.request(i), batch.request(i), mix.request(i)
        assert p.priority == "interactive" and b.priority == "batch"
        assert p.request.priority == common_pb2.PRIORITY_INTERACTIVE
        assert b.request.priority == common_pb2.PRIORITY_BATCH
        wanted = {"batch": common_pb2.PRIORITY_BATCH}.get(m.priority, p.request.priority)
        assert m.request.priority == wanted
        b.request.priority = p.request.priority
        assert b.request == p.request  # only the tier differs
    with pytest.raises(ValueError, match="priority"):
        Workload(items, priority="urgent")


def test_http_requests_carry_the_tier_and_records_keep_tier_and_deadline() -> None:
    """The HTTP issuer asks for the batch tier as OpenAI's service_tier "flex", and its records
    carry the tier and deadline as the gRPC issuer's do (per-tier goodput needs both)."""
    pytest.importorskip("aiohttp")
    from load_tests.bench.http_calls import http_request

    items = [parse_item("text"), parse_item("image,count=2"), parse_item("audio")]
    for i in range(6):
        b = Workload(items, seed=3, priority="batch").request(i)
        p = Workload(items, seed=3).request(i)
        path_b, body_b = http_request(b, {"": ["cat"]})
        path_p, body_p = http_request(p, {"": ["cat"]})
        assert path_b == path_p and body_b.pop("service_tier") == "flex"
        assert body_b == body_p and "service_tier" not in body_p
        record = RequestRecord.for_planned(b, deadline=10.0)
        assert (record.priority, record.deadline, record.method) == ("batch", 10.0, b.item.method)


def test_workload_spec_errors_name_the_problem() -> None:
    assert parse_item("audio:speech,stream=false").method == "Synthesize"
    assert parse_item("text,max_tokens=7").max_tokens == 7
    with pytest.raises(ValueError, match="modality"):
        parse_item("video")
    with pytest.raises(ValueError, match="streaming"):
        parse_item("image,stream=true")
    with pytest.raises(ValueError, match="unknown key"):
        parse_item("text,colour=red")


def test_cli_writes_records_summary_and_plots(tmp_path: Path) -> None:
    async def serve_and_bench() -> int:
        server, port = await start_plain_server()
        try:
            argv = ["--target", f"127.0.0.1:{port}", "--concurrency", "2", "--num-requests", "20"]
            argv += ["--workload", "text", "--workload", "image", "--output-dir", str(tmp_path)]
            argv += [
                "--goodput",
                "e2el:60000",
                "--quiet",
                "--priority",
                "mix",
                "--deadline-s",
                "30",
            ]
            return await asyncio.to_thread(bench_main, argv)
        finally:
            await server.stop(0)

    assert asyncio.run(serve_and_bench()) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    records = list(read_jsonl(tmp_path / "records.jsonl"))
    assert summary["completed"] == len(records) == 20
    assert summary["request_goodput"] == pytest.approx(summary["request_throughput"])
    assert summary["deadline_goodput"] == pytest.approx(summary["request_throughput"])
    assert summary["deadline_s"] == 30 and summary["priority"] == "mix"
    assert {r.deadline for r in records} == {30.0}
    assert set(summary["per_priority"]) == {r.priority for r in records} == {"batch", "interactive"}
    again = summarize(records, duration=summary["duration"])
    assert again["p99_e2el_ms"] == pytest.approx(summary["p99_e2el_ms"])
    assert (tmp_path / "latency_cdf.png").stat().st_size > 0
    assert (tmp_path / "over_time.png").stat().st_size > 0
