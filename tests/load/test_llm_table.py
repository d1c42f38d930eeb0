"""load_tests.llm's table and ratios, from hand-made rows (the vLLM rows of issue 23)."""

from __future__ import annotations

from load_tests.llm import compare, table


def cells(tok_s: float, ttft_ms: float) -> list[dict]:
    return [
        {"concurrency": c, "max_tokens": 64, "output_throughput": tok_s * c,
         "median_ttft_ms": ttft_ms * c, "p99_ttft_ms": 2 * ttft_ms * c, "median_tpot_ms": 50.0,
         "p99_tpot_ms": 60.0}
        for c in (1, 16)
    ]  # fmt: skip


def test_vllm_rows_are_compared_and_their_threads_and_start_up_named() -> None:
    servers = [
        {"server": "llama-server", "skipped": "skipped: not chosen"},
        {"server": "vllm", "ready_seconds": 62.2, "cells": cells(10.0, 200.0)},
        {"server": "aigc-vllm", "ready_seconds": 31.4, "cells": cells(9.5, 210.0)},
    ]
    ratios = compare(servers, "aigc-vllm", "vllm")
    assert ratios == {
        "max_tokens=64 c=1": "0.95x tok/s, TTFT p50 +10 ms",
        "max_tokens=64 c=16": "0.95x tok/s, TTFT p50 +160 ms",
    }
    meta = {"command": "python -m load_tests.llm", "date": "d", "cores": 2, "cpu": "x",
            "commit": "abc", "load_at_start": 0.5}  # fmt: skip
    text = table({"meta": meta, "threads": 1, "servers": servers, "prompt_cache": True,
                  "ratios": {}, "vllm_ratios": ratios, "vllm_compile": False})  # fmt: skip
    assert (
        "vLLM rows: vLLM's own CPU threads (VLLM_CPU_OMP_THREADS_BIND=auto), enforce_eager" in text
    )
    assert "thread(s) in the llama.cpp" not in text  # no such row ran
    assert "Ready after: vllm 62.2 s, aigc-vllm 31.4 s." in text
    assert "aigc-serve + vllm / vLLM's own server" in text
    assert "- max_tokens=64 c=16: 0.95x tok/s, TTFT p50 +160 ms" in text
    assert "| aigc-vllm | 64 | 16 | 152.0 | 3360 |" in text
    assert "| llama-server | skipped: not chosen |" in text
