"""`python -m load_tests.batch_mix`: the Batch API's two scheduling goals on one `aigc up`
(SmolLM2's F16 GGUF on llama.cpp, as `make up` serves it), measured side by side in one run.

1. Interactive TTFT while a batch runs: an interactive client (one streamed chat at a time,
   the real `openai` client) measures TTFT p50 on the idle server, then again while a batch of
   `--lines` chat lines runs on the flex tier. Goal: with the batch <= 1.25x idle.
2. The batch alone against a closed loop: the tokens/s a batch of `--lines` lines reaches
   (created -> completed, from the output file's usage) against a closed loop of
   `--concurrency` (the model's max_batch_size) streamed clients asking the same prompts
   with the same max_tokens. Goal: >= 0.8x.

The phases alternate (closed loop, batch alone, idle probe, probe beside the batch) for
`--rounds` rounds so load from other work falls on each alike. Results: bench-results/
batch-mix.json and a markdown table on stdout.

    python -m load_tests.batch_mix --lines 1000 --max-tokens 16 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from load_tests.llm_servers import Settings, smollm2_spec
from load_tests.machine import facts, heading
from load_tests.openai_stream import one_stream
from load_tests.procs import AigcUp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
PROMPTS = [f"Write one sentence about {t}." for t in ("the sea", "a cat", "a train", "rain")]


def config(tmp: Path, settings: Settings) -> Path:
    spec = smollm2_spec("llamacpp", settings)
    batch_size = spec["batching"]["max_batch_size"]
    data = {
        "gateway": {
            "host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": 0,
            "jobs": {"state_dir": str(tmp / "state"), "concurrency": batch_size},
        },
        "ray": {"num_cpus": 4, "metrics_export_port": 0, "namespace": "aigc-batch-mix"},
        "models": [spec],
    }  # fmt: skip
    import yaml

    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def closed_loop(base: str, clients: int, requests: int, max_tokens: int) -> dict[str, float]:
    """`requests` streamed chats by `clients` clients at once: tokens/s over the whole run."""
    queue = list(range(requests))
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        while queue:
            k = queue.pop()
            r = await one_stream(base, "smollm2", PROMPTS[k % len(PROMPTS)], max_tokens,
                                 extra_body={"ignore_eos": True})  # fmt: skip
            tokens += int(r["tokens"])

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}


def batch_file(lines: int, max_tokens: int) -> bytes:
    rows = [
        {
            "custom_id": f"line-{k}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "smollm2",
                "messages": [{"role": "user", "content": PROMPTS[k % len(PROMPTS)]}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            },
        }
        for k in range(lines)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def run_batch(base: str, data: bytes) -> tuple[str, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=base, api_key="bench", max_retries=0)
    upload = await client.files.create(file=("mix.jsonl", data), purpose="batch")
    batch = await client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    await client.close()
    return batch.id, time.perf_counter()


async def wait_batch(base: str, batch_id: str, started: float) -> dict[str, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=base, api_key="bench", max_retries=0)
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            break
        await asyncio.sleep(0.25)  # polling the API, as a batch client does
    seconds = time.perf_counter() - started
    tokens = 0
    if batch.output_file_id:
        text = (await client.files.content(batch.output_file_id)).text
        for row in text.splitlines():
            tokens += json.loads(row)["response"]["body"]["usage"]["completion_tokens"]
    await client.close()
    counts = batch.request_counts
    assert batch.status == "completed", batch
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "completed": counts.completed if counts else 0,
        "failed": counts.failed if counts else 0,
    }


async def probe(
    base: str, samples: int, max_tokens: int, until: asyncio.Task[Any] | None
) -> list[float]:
    """TTFTs of one interactive client, one streamed chat at a time (`until`: stop when that
    task ends, after at least 3 samples)."""
    out: list[float] = []
    for k in range(samples):
        if until is not None and until.done() and len(out) >= 3:
            break
        r = await one_stream(base, "smollm2", PROMPTS[k % len(PROMPTS)], max_tokens, extra_body={})
        out.append(r["ttft"])
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="batch-mix-"))
    settings = Settings(threads=args.threads)
    up = AigcUp.start(config(tmp, settings), timeout_s=600)
    base = f"http://127.0.0.1:{up.http_port}/v1"
    rounds = []
    try:
        await closed_loop(base, 2, 4, 8)  # warm up
        clients = smollm2_spec("llamacpp", settings)["batching"]["max_batch_size"]
        for _ in range(args.rounds):
            loop = await closed_loop(base, clients, args.lines, args.max_tokens)
            batch_id, started = await run_batch(base, batch_file(args.lines, args.max_tokens))
            alone = await wait_batch(base, batch_id, started)
            idle = await probe(base, args.samples, args.probe_tokens, None)
            batch_id, started = await run_batch(base, batch_file(args.lines, args.max_tokens))
            waiter = asyncio.create_task(wait_batch(base, batch_id, started))
            beside = await probe(base, args.samples, args.probe_tokens, waiter)
            await waiter
            rounds.append(
                {
                    "closed_loop": loop,
                    "batch_alone": alone,
                    "ttft_idle_s": idle,
                    "ttft_beside_batch_s": beside,
                    "throughput_ratio": alone["tok_s"] / loop["tok_s"],
                    "ttft_ratio": statistics.median(beside) / statistics.median(idle),
                }
            )
    finally:
        up.stop()
    command = "python -m load_tests.batch_mix " + " ".join(sys.argv[1:])
    return {"machine": {**facts(), "command": command}, "args": vars(args), "rounds": rounds}


def table(result: dict[str, Any]) -> str:
    rows = [
        "| round | closed loop tok/s | batch alone tok/s | ratio (goal >= 0.8) | TTFT p50 idle "
        "| TTFT p50 beside the batch | ratio (goal <= 1.25) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(result["rounds"], 1):
        idle, beside = (
            statistics.median(r["ttft_idle_s"]),
            statistics.median(r["ttft_beside_batch_s"]),
        )
        rows.append(
            f"| {k} | {r['closed_loop']['tok_s']:.1f} | {r['batch_alone']['tok_s']:.1f} | "
            f"{r['throughput_ratio']:.2f} | {idle * 1000:.0f} ms | {beside * 1000:.0f} ms "
            f"(n={len(r['ttft_beside_batch_s'])}) | {r['ttft_ratio']:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--probe-tokens", type=int, default=8)
    parser.add_argument("--samples", type=int, default=30, help="interactive TTFT samples")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch-mix.json").write_text(json.dumps(result, indent=2))
    print(heading(result["machine"]))
    print(table(result))
    for r in result["rounds"]:
        print(
            ("MET" if r["throughput_ratio"] >= 0.8 else "MISSED")
            + f" batch alone / closed loop: {r['throughput_ratio']:.2f}x (goal >= 0.8x)"
        )
        print(
            ("MET" if r["ttft_ratio"] <= 1.25 else "MISSED")
            + f" interactive TTFT p50 beside the batch / idle: {r['ttft_ratio']:.2f}x"
            + " (goal <= 1.25x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
