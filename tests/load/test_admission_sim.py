"""Issue 15's goals on the simulated batched model (load_tests.admission_sim): seeded arrivals
on a simulated clock, so the ratios are deterministic. The served stack is measured with
`aigc bench` (the overload recipe in docs/benchmarking.md)."""

from __future__ import annotations

import asyncio

import pytest

from load_tests.admission_sim import Case, simulate


def run(**kw) -> dict:  # type: ignore[no-untyped-def]
    return asyncio.run(simulate(Case(duration_s=40.0, **kw))).row()


@pytest.mark.parametrize("batch_s", [0.2, 1.0, 3.0])
def test_at_4x_overload_nothing_admitted_expires_and_goodput_stays_near_saturation(batch_s):
    row = run(load=4.0, batch_s=batch_s, deadline_s=max(2.0, 3 * batch_s + 1))
    assert row["expired_share_of_admitted"] <= 0.01
    assert row["goodput_vs_saturated"] >= 0.9
    assert row["rate_midway_vs_true"] == pytest.approx(1.0, rel=0.15)


def test_mixed_tiers_interactive_latency_holds_and_batch_is_refused_first():
    calm, busy = run(load=1.0, mix=True), run(load=4.0, mix=True)
    assert busy["p99_interactive_s"] <= 1.5 * calm["p99_interactive_s"]
    assert calm["batch_share_of_refused"] == 1.0  # at 1x only batch work is refused
    # at 4x the interactive half alone is 2x capacity: some of it must be refused too
    assert busy["batch_share_of_refused"] > 0.6
    assert busy["expired_share_of_admitted"] <= 0.01
