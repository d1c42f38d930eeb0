"""Time to first token, one request at a time, against several OpenAI-compatible servers that
are up together: a cross-check of `load_tests.llm`'s c=1 cells with nothing else in flight.

    .venv-vllm/bin/python -m load_tests.ttft_probe --server vllm=http://127.0.0.1:8072/v1 \\
        --server aigc-vllm=http://127.0.0.1:8071/v1 --model smollm2

Each round sends `--requests` streamed chat completions (temperature 0, `--max-tokens`,
ignore_eos) to each server in turn, the order alternating between rounds, through
load_tests.llm's client (load_tests.openai_stream: a new client and connection per request);
TTFT is the first chunk with content.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from load_tests.openai_stream import one_stream

PROMPTS = [
    "Tell me a story about a lighthouse keeper.",
    "Write a short poem about the sea.",
    "Describe a city under the sea.",
    "What is the capital of France?",
]


async def ttft_ms(base_url: str, model: str, prompt: str, max_tokens: int) -> float:
    """load_tests.llm's stream, without its usage and prompt-cache fields: only TTFT counts."""
    timed = await one_stream(
        base_url, model, prompt, max_tokens, extra_body={"ignore_eos": True}, usage=False
    )
    return timed["ttft"] * 1000


async def main(a: argparse.Namespace) -> None:
    servers = dict(s.split("=", 1) for s in a.server)
    for url in servers.values():  # warm-up: each prompt once
        for p in PROMPTS:
            await ttft_ms(url, a.model, p, a.max_tokens)
    results: dict[str, list[float]] = {name: [] for name in servers}
    for r in range(a.rounds):
        order = list(servers.items())
        for name, url in order if r % 2 == 0 else order[::-1]:
            xs = [
                await ttft_ms(url, a.model, PROMPTS[i % len(PROMPTS)], a.max_tokens)
                for i in range(a.requests)
            ]
            results[name] += xs
            print(f"round {r + 1} {name}: TTFT p50 {statistics.median(xs):.0f} ms", flush=True)
    for name, xs in results.items():
        print(f"all rounds {name}: TTFT p50 {statistics.median(xs):.0f} ms over {len(xs)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", action="append", required=True, metavar="NAME=URL")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--requests", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(p.parse_args()))
