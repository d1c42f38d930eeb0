"""Gateway and replica /metrics account for known traffic exactly, by model and code."""

from __future__ import annotations

import threading

import grpc
import pytest

from tests.conditions import wait_until
from tests.integration.helpers import replica_stats, rpc_error, scrape, total

pytestmark = pytest.mark.integration


def test_gateway_counts_every_request_by_model_and_code(stack, client):
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"
    before = scrape(url)
    unary = [client.generate_text("hello", max_tokens=4) for _ in range(3)]
    streams = [list(client.stream_text("hello", max_tokens=6, seed=i)) for i in range(2)]
    rpc_error(lambda: client.generate_text("", max_tokens=4))
    rpc_error(lambda: client.generate_text("hi", model="no-such-model"))
    # slow-text sends a word every 250 ms: 400 words take 100 s, so after the first chunk the
    # stream is still running when the cancel lands
    call = client.stream_text(" ".join(["word"] * 400), model="slow-text", max_tokens=400)
    assert next(call).delta == "word"
    call.cancel()
    client.generate_images(count=3)
    client.synthesize("Hello there.")
    req = "aigc_requests_total"
    slow = {"model": "slow-text", "method": "GenerateStream"}
    cancelled = {**slow, "code": "CANCELLED"}

    def cancel_counted() -> bool:
        return total(scrape(url), req, **cancelled) - total(before, req, **cancelled) == 1

    def slow_series() -> dict[str, float]:  # what a failure needs to show: slow-text's codes
        now = scrape(url)
        return {
            dict(labels)["code"]: value - before.get((name, labels), 0.0)
            for (name, labels), value in now.items()
            if name == req and ("model", "slow-text") in labels
        }

    # the gateway learns of the cancel asynchronously: poll (bounded) until it has counted it
    assert wait_until(cancel_counted), slow_series()
    after = scrape(url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta(req, model="tiny", method="Generate", code="OK") == 3
    assert delta(req, model="tiny", method="Generate", code="INVALID_ARGUMENT") == 1
    assert delta(req, model="unknown", method="Generate", code="NOT_FOUND") == 1
    assert delta(req, model="tiny", method="GenerateStream", code="OK") == 2
    assert delta(req, model="tiny", method="GenerateStream") == 2  # nothing else for tiny
    assert delta(req, **slow) == delta(req, **cancelled) == 1  # it never finished
    assert delta(req, model="shapes", method="Generate", code="OK") == 1
    assert delta(req, model="speech", method="Synthesize", code="OK") == 1
    assert delta("aigc_images_total", model="shapes") == 3
    assert delta("aigc_audio_seconds_total", model="speech") > 0.3
    # histograms: one observation per finished request
    dur = "aigc_request_duration_seconds_count"
    assert delta(dur, model="tiny", method="Generate") == 4  # 3 OK + 1 invalid
    assert delta(dur, **slow) == 1  # the cancelled stream too
    # TTFT <= e2e: every stream observed both, and first tokens come before the end
    ttft_sum = delta("aigc_time_to_first_token_seconds_sum", model="tiny")
    ttft_n = delta("aigc_time_to_first_token_seconds_count", model="tiny")
    e2e_sum = delta("aigc_request_duration_seconds_sum", model="tiny", method="GenerateStream")
    assert ttft_n == 2  # the two complete streams
    assert 0 < ttft_sum <= e2e_sum
    assert delta("aigc_time_to_first_token_seconds_count", model="slow-text") == 1  # cancelled
    # tokens: exactly what the responses reported (the invalid request counts none)
    usages = [r.usage for r in unary] + [s[-1].usage for s in streams]
    assert delta("aigc_output_tokens_total", model="tiny") == sum(
        u.completion_tokens for u in usages
    )
    assert delta("aigc_prompt_tokens_total", model="tiny") == sum(u.prompt_tokens for u in usages)
    # TPOT needs two tokens or more
    tpot_n = sum(s[-1].usage.completion_tokens > 1 for s in streams)
    assert delta("aigc_time_per_output_token_seconds_count", model="tiny") == tpot_n
    assert total(after, "aigc_inflight_requests", model="tiny") == 0
    assert total(after, "aigc_inflight_requests", model="slow-text") == 0


def test_replica_metrics_show_real_batching(stack, target):
    from aigc import Client

    def burst() -> None:
        with Client(target, timeout=60) as c:
            c.generate_images(count=2)

    threads = [threading.Thread(target=burst) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    url = stack.ray_metrics_url
    name = "ray_aigc_replica_batch_size"

    def batched() -> bool:
        m = scrape(url)
        count = total(m, f"{name}_count", model="shapes")
        singles = total(m, f"{name}_bucket", model="shapes", le="1.0")
        loaded = total(m, "ray_aigc_replica_model_load_seconds", model="tiny")
        text_steps = total(m, f"{name}_count", model="tiny")
        return count > 0 and count - singles > 0 and loaded > 0 and text_steps > 0

    # Ray exports replica metrics every few seconds: poll (bounded) until they arrive.
    assert wait_until(batched, timeout_s=60, step_s=1.0), "no batch larger than 1 exported"
    m = scrape(url)
    assert total(m, "ray_aigc_replica_batch_compute_seconds_count", model="shapes") > 0
    assert total(m, "ray_aigc_replica_queue_wait_seconds_count", model="shapes") > 0
    assert total(m, "ray_aigc_replica_model_load_seconds", model="tiny") > 0
    # text: the engine's batch is sequences per step
    assert total(m, f"{name}_count", model="tiny") > 0


def test_batches_overlap_up_to_max_concurrent_batches(stack, target):
    """echo-image: batches of 4 images that take 50 ms each, 2 in flight at most. Concurrent
    4-image requests fill one batch each, so the replica runs two at once, never three."""
    from aigc import Client

    def one(seed: int) -> None:
        with Client(target, timeout=60) as c:
            c.generate_images(model="echo-image", count=4, seed=seed)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = replica_stats("echo-image", "image")
    assert stats["batches_in_flight_peak"] == 2  # overlapped, and capped by the config
    assert stats["batches_in_flight"] == 0


def test_unknown_model_names_do_not_create_series(stack, client):
    for i in range(3):
        err = rpc_error(lambda i=i: client.generate_images(model=f"made-up-{i}"))
        assert err.code() == grpc.StatusCode.NOT_FOUND
    m = scrape(f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics")
    assert not any("made-up" in str(labels) for (_, labels) in m)
