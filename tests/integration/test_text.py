"""Text generation through the real gateway and Serve: unary, streaming, cancellation, deadlines."""

from __future__ import annotations

import threading

import grpc
import pytest

from aigc.v1 import text_pb2
from tests.conditions import wait_until
from tests.integration.helpers import replica_stats

pytestmark = pytest.mark.integration


def test_unary_returns_completions_with_usage(client):
    resp = client.generate_text("the quick brown fox", max_tokens=12, seed=3, n=2)
    assert resp.model == "tiny"
    assert resp.id
    assert [c.index for c in resp.completions] == [0, 1]
    for c in resp.completions:
        assert 1 <= c.completion_tokens <= 12
        assert c.finish_reason in (text_pb2.FINISH_REASON_LENGTH, text_pb2.FINISH_REASON_STOP)
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens == sum(c.completion_tokens for c in resp.completions)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_seed_reproduces_and_stream_matches_unary(client):
    kw = {"max_tokens": 20, "seed": 42, "temperature": 1.0}
    a = client.generate_text("hello there", **kw)
    b = client.generate_text("hello there", **kw)
    assert a.completions[0].text == b.completions[0].text
    chunks = list(client.stream_text("hello there", **kw))
    assert "".join(c.delta for c in chunks) == a.completions[0].text
    assert chunks[-1].finish_reason == a.completions[0].finish_reason
    assert chunks[-1].HasField("usage")
    assert chunks[-1].usage.completion_tokens == a.usage.completion_tokens
    assert all(not c.HasField("usage") for c in chunks[:-1])


def test_stream_yields_several_messages_and_n_completions(client):
    chunks = list(client.stream_text("a computer is", max_tokens=30, n=2, seed=1, temperature=1))
    finals = [c for c in chunks if c.finish_reason != text_pb2.FINISH_REASON_UNSPECIFIED]
    assert sorted(c.index for c in finals) == [0, 1]
    assert len(chunks) > 2  # tokens arrive as they are generated, not at the end


def test_chat_messages_use_the_chat_template(client):
    resp = client.generate_text(
        messages=[("system", "be brief"), ("user", "hello")], max_tokens=5, seed=0
    )
    # prompt tokens include the template's role prefixes, so more than the raw words
    plain = client.generate_text("hello", max_tokens=5, seed=0)
    assert resp.usage.prompt_tokens > plain.usage.prompt_tokens


def test_greedy_is_deterministic_without_seed(client):
    a = client.generate_text("streaming tokens", max_tokens=10, temperature=0)
    b = client.generate_text("streaming tokens", max_tokens=10, temperature=0)
    assert a.completions[0].text == b.completions[0].text


def test_stop_string_ends_generation_before_it(client):
    # the first seed whose completion is long enough to take a stop string from its middle
    for seed in range(9, 29):
        full = client.generate_text("the lazy dog", max_tokens=40, seed=seed).completions[0].text
        if len(full) >= 4:
            break
    else:
        pytest.fail("20 seeds gave no completion of 4 characters or more")
    stop = full[2:4]
    resp = client.generate_text("the lazy dog", max_tokens=40, seed=seed, stop=[stop])
    assert resp.completions[0].finish_reason == text_pb2.FINISH_REASON_STOP
    assert resp.completions[0].text == full[: full.index(stop)]


def test_cancelled_stream_frees_the_replica(client):
    before = replica_stats("tiny", "text")["cancelled_requests_total"]
    call = client.stream_text("once upon a time", max_tokens=100, temperature=1.0, seed=5)
    first = next(call)  # generation is running on the replica
    assert first.id
    call.cancel()
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.CANCELLED

    def replica_saw_it() -> bool:
        s = replica_stats("tiny", "text")
        return s["cancelled_requests_total"] > before and s["running_sequences"] == 0

    assert wait_until(replica_saw_it), replica_stats("tiny", "text")


def test_deadline_exceeded_on_slow_stream(client):
    # echo-text waits 50 ms per token: 40 tokens cannot finish within 0.3 s
    prompt = " ".join(["word"] * 40)
    with pytest.raises(grpc.RpcError) as err:
        list(client.stream_text(prompt, model="echo-text", timeout=0.3))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_concurrent_streams_are_batched_and_all_complete(target):
    """Eight streams sent at once share the replica's model steps (the engine counts sequences
    per step), and each gets the text it would get alone."""
    from aigc import Client

    results: dict[int, str] = {}
    ready = threading.Barrier(8)

    def one(i: int) -> None:
        with Client(target, timeout=60) as c:
            c.health()  # connected before the barrier: the streams start together
            ready.wait(60)
            chunks = list(c.stream_text(f"prompt {i}", max_tokens=24, seed=i, temperature=1))
            results[i] = "".join(ch.delta for ch in chunks)

    before = replica_stats("tiny", "text")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == list(range(8))
    after = replica_stats("tiny", "text")
    steps = after["steps_total"] - before["steps_total"]
    sequences_stepped = after["batch_occupancy_sum"] - before["batch_occupancy_sum"]
    # one sequence per step would make these equal: some steps ran several streams at once
    assert 0 < steps < sequences_stepped, (steps, sequences_stepped)
    # Batched generation gives each request the same text as generating it alone.
    with Client(target, timeout=60) as c:
        for i in (0, 5):
            alone = c.generate_text(f"prompt {i}", max_tokens=24, seed=i, temperature=1)
            assert alone.completions[0].text == results[i]
