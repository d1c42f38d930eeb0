"""The batching limit: an engine called in-process at a fixed batch size, no RPC, no Ray.

`python -m load_tests.inprocess --config C --model M --batch B [--count K] [--seconds S]`
prints one JSON line. The requests come from the same workload generator and the same
proto -> domain conversion the gateway uses, so served and in-process runs do the same work.
Run it in its own process, with nothing else of ours on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from core.config import ModelConfig, load_config
from core.registry import engine_class
from gateway import convert
from load_tests.bench.workload import WorkItem, Workload


def _domain(model: ModelConfig, planned: Any, index: int) -> Any:
    rid = f"inproc-{index}"
    if model.modality.value == "text":
        return convert.text_request(planned.request, model, rid, None)
    if model.modality.value == "image":
        return convert.image_request(planned.request, model, rid, None)
    return convert.audio_request(planned.request, model, rid, None, stream=False)


async def measure(
    model: ModelConfig, batch: int, count: int, seconds: float, max_tokens: int, seed: int = 0
) -> dict[str, Any]:
    engine = engine_class(model.modality.value, model.engine)(model)
    await engine.start()
    modality = model.modality.value
    item = WorkItem(modality, model.name, stream=modality == "text", count=count)
    if modality == "text":
        item = WorkItem(modality, model.name, stream=True, max_tokens=max_tokens)
    workload = Workload([item], seed=seed)
    counter = iter(range(10**9))
    done = {"requests": 0, "items": 0, "tokens": 0, "audio_seconds": 0.0}

    def batch_of(n: int) -> list[Any]:
        return [_domain(model, workload.request(i), i) for i in (next(counter) for _ in range(n))]

    async def one_batch() -> None:
        requests = batch_of(batch)
        results = await engine.generate_batch(requests)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise failed[0]
        if modality == "image":
            done["items"] += sum(len(r.images) for r in results)
        else:
            done["audio_seconds"] += sum(r.duration_s for r in results)
            done["items"] += len(results)
        done["requests"] += len(results)

    async def text_worker(start: float, stop_at: float) -> None:
        # `batch` sequences kept in flight: the engine's own continuous batching fills up.
        # Tokens count as they arrive inside [start, stop_at] (what `aigc bench`'s steady rate
        # counts on the served side); the ramp-up before and the drain after are not measured.
        while time.perf_counter() < stop_at:
            [request] = batch_of(1)
            async for chunk in engine.stream(request):
                if start <= time.perf_counter() <= stop_at:
                    done["tokens"] += chunk.token_count
            if start <= time.perf_counter() <= stop_at:
                done["requests"] += 1

    async def run_for(duration: float) -> float:
        t0 = time.perf_counter()
        stop_at = t0 + duration
        while time.perf_counter() < stop_at:
            await one_batch()
        return time.perf_counter() - t0

    warmup = min(2.0, seconds / 3)  # allocator, thread pools, caches
    if modality == "text":
        start = time.perf_counter() + warmup
        await asyncio.gather(*(text_worker(start, start + seconds) for _ in range(batch)))
        elapsed = seconds
    else:
        await run_for(warmup)
        done.update(requests=0, items=0, tokens=0, audio_seconds=0.0)
        elapsed = await run_for(seconds)
    await engine.stop()
    return {
        "model": model.name,
        "modality": modality,
        "batch": batch,
        "count": count,
        "seconds": elapsed,
        "request_throughput": done["requests"] / elapsed,
        "images_per_second": done["items"] / elapsed if modality == "image" else 0.0,
        "output_throughput": done["tokens"] / elapsed,
        "audio_seconds_per_second": done["audio_seconds"] / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.inprocess")
    p.add_argument("--config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, required=True, help="requests (text: sequences) per batch")
    p.add_argument("--count", type=int, default=1, help="images per image request")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args(argv)
    model = load_config(args.config).by_name()[args.model]
    result = asyncio.run(measure(model, args.batch, args.count, args.seconds, args.max_tokens))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
