"""The overload benchmark's arithmetic (the runs themselves need a stack: `python -m
load_tests.overload`), and a small run of the refusal-cost benchmark (no stack needed)."""

from __future__ import annotations

import math

import pytest

from load_tests.overload import bucket_p99_ms, table, verdicts


def test_p99_comes_from_the_bucket_of_what_was_observed_between_scrapes() -> None:
    before = {0.0001: 50.0, 0.001: 50.0, math.inf: 50.0}  # earlier runs' refusals
    after = {0.0001: 50.0, 0.001: 149.0, math.inf: 150.0}  # this run: 99 fast, 1 slow
    assert bucket_p99_ms(before, after) == pytest.approx(1.0)
    assert bucket_p99_ms(after, after) is None  # nothing refused in between


def test_verdicts_are_ratios_of_the_same_run() -> None:
    def run(**kw: object) -> dict[str, object]:
        return {"window_s": 10.0, "admitted": 100, "admitted_expired": 0, **kw}

    runs = {
        "saturated": run(steady_request_throughput=20.0),
        "x1": run(steady_deadline_goodput=19.0),
        "x4": run(steady_deadline_goodput=18.0, admitted_expired_share=0.0, admitted=200),
        "x1-mix": run(per_priority={"interactive": {"p99_e2el_ms": 100.0}}),
        "x4-mix": run(
            per_priority={"interactive": {"p99_e2el_ms": 150.0}}, batch_share_of_refused=0.7
        ),
    }
    pair = [run(admitted=110, admitted_expired=1), run(admitted=110)]
    v = verdicts(runs, pair)
    assert v["x4_goodput_over_saturated"] == pytest.approx(0.9)
    assert v["mix_interactive_p99_x4_over_x1"] == pytest.approx(1.5)
    assert v["two_gateways_admitted_over_one"] == pytest.approx(220 / 200)
    assert v["two_gateways_admitted_expired_share"] == pytest.approx(1 / 220)
    assert "| m | 20.0 | 0.000 | 0.90 |" in table([{"model": "m", **v}])


def test_refusal_cost_refuses_every_call_on_both_servers() -> None:
    """A small run of `python -m load_tests.refusal_cost`: both servers refuse each call with
    RESOURCE_EXHAUSTED (the harness asserts it), and the table compares the two."""
    import asyncio

    from load_tests import refusal_cost

    runs = asyncio.run(refusal_cost.run(calls=200, repeats=1))
    assert [r["kind"] for r in runs] == ["bare", "gateway"]
    summary = refusal_cost.summarize(runs)
    for kind in ("bare", "gateway"):
        assert summary[kind]["server_cpu_us"] > 0 and summary[kind]["calls_per_s"] > 0
    assert "Gateway / bare" in refusal_cost.table(summary)
