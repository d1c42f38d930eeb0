"""One streamed chat completion through the real `openai` client, timed: the client of the LLM
benchmark (load_tests.llm) and of its TTFT cross-check (load_tests.ttft_probe).

`aigc bench --protocol http` (load_tests.bench.http_calls) speaks the wire itself instead: it
times every SSE event of every modality into a RequestRecord, where this measures what a user
of the `openai` package sees.
"""

from __future__ import annotations

import time
from typing import Any


async def one_stream(
    base_url: str,
    model: str,
    prompt: str,
    max_tokens: int,
    *,
    extra_body: dict[str, Any],
    usage: bool = True,
) -> dict[str, float]:
    """One streamed chat completion (temperature 0) on a connection of its own (llama-server
    closes kept-alive connections after a stream, which a reused connection meets as a
    disconnect), so every server pays the same connection setup. Seconds: `ttft` (to the first
    chunk with content), `tpot` ((e2e - ttft) / (tokens - 1)); `tokens` from the usage the
    stream ends with (`usage`: asked for with stream_options; else 0)."""
    import openai

    t0 = time.perf_counter()
    first = None
    tokens = 0
    usage_option: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=900)
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        **usage_option,
        extra_body=extra_body,
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    await client.close()
    ttft = (first or end) - t0
    return {"ttft": ttft, "tokens": tokens, "tpot": (end - t0 - ttft) / max(1, tokens - 1)}
