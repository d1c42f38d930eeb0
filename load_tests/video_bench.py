"""`python -m load_tests.video_bench`: /v1/videos measured (issue 33; BENCHMARKS.md), on the
offline video models of configs/local.yaml (`fashion-video`, the default, and `faces-video`),
one `aigc up` of those models, everything side by side in one run.

1. Frames per second generated and encoded: `--clips` clips of `--seconds` s each (walk,
   generator, H.264 MP4, thumbnail and spritesheet: the engine's one path), served through the
   gateway with the real `openai` client (all created at once with `videos.create`, one
   watcher listing them with `videos.list` every `--poll-ms`, each clip fetched with
   `download_content` as soon as it is listed completed), against the same engine called
   in-process in a process of its own: the same model, clips (prompt, seconds, seeds), frame
   count and size, made as many at once as the gateway's video runner makes them
   (`gateway.jobs.video_concurrency`). Frames/s = frames / (first create -> last download),
   in-process: frames / (first clip started -> last clip's MP4 in hand). The in-process side
   runs before the stack starts and again after it stops (an idle Ray stack takes CPU of its
   own, which must not fall on the in-process side); the ratio is against their mean.
   Goal: served >= 0.9x in-process.
2. A 4-second clip's time to `completed` (the create sent -> the poll that sees `completed`,
   so up to one poll interval late): one job alone (`--single` jobs, one after another), and
   8 jobs submitted at once (p50 and max per job, and the total: first create -> last
   completed). The in-process time of one 4 s clip is shown beside the single job.

Every served clip's MP4 is checked (PyAV: frame count, size) after its timing. Results:
bench-results/video.json and .md, the markdown table on stdout.

    python -m load_tests.video_bench --clips 16 --seconds 12 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from load_tests.machine import facts, heading, wait_quiet
from load_tests.procs import PY, AigcUp, server_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
LOCAL_CONFIG = ROOT / "configs" / "local.yaml"
MODELS = ("fashion-video", "faces-video")
GOAL = 0.9
LATENCY_SECONDS = 4
AT_ONCE = 8


def prompt_for(labels: list[str] | tuple[str, ...]) -> str:
    """A prompt the model reads: two of its labels in turn, or any text for an unconditional
    model (its walk is a function of the seed alone)."""
    if len(labels) >= 2:
        return f"a {labels[0]} turning into a {labels[-1]}"
    return f"a {labels[0]}" if labels else "a walk"


def config(tmp: Path, models: list[str], video_concurrency: int | None) -> Path:
    """configs/local.yaml's video models as they are served by `make up` (weights made
    absolute), on free ports, their job store in `tmp`."""
    from core.config import load_config

    local = load_config(LOCAL_CONFIG).by_name()
    jobs: dict[str, Any] = {"state_dir": str(tmp / "state")}
    if video_concurrency is not None:
        jobs["video_concurrency"] = video_concurrency
    data = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": 0,
                    "jobs": jobs},
        "ray": {"num_cpus": 4, "metrics_export_port": 0, "namespace": "aigc-video-bench"},
        "models": [local[m].model_dump(mode="json") for m in models],
    }  # fmt: skip
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---- in-process: the engine, no Ray, no gateway, no job store -----------------------------
async def measure_inprocess(
    config_path: str, model_name: str, clips: int, seconds: int, concurrency: int, single: int
) -> dict[str, Any]:
    from core.config import load_config
    from core.registry import engine_class
    from core.types import VideoRequest

    model = load_config(config_path).by_name()[model_name]
    engine = engine_class(model.modality.value, model.engine)(model)
    await engine.start()
    described = engine.facts()
    prompt = prompt_for(described.labels)
    fps = int(engine.options.fps)  # type: ignore[attr-defined]

    async def one(k: int, length: int) -> float:
        t0 = time.perf_counter()
        request = VideoRequest(f"inproc-{k}", model.name, prompt, length, seed=k)
        async for chunk in engine.generate_stream(request):  # type: ignore[attr-defined]
            if chunk.result is not None:
                assert chunk.result.frames == length * fps and chunk.result.video
        return time.perf_counter() - t0

    await one(10_000, seconds)  # warm up: allocator, x264, thread pools
    gate = asyncio.Semaphore(concurrency)

    async def gated(k: int) -> float:
        async with gate:
            return await one(k, seconds)

    start = time.perf_counter()
    times = await asyncio.gather(*(gated(k) for k in range(clips)))
    wall = time.perf_counter() - start
    alone = [await one(20_000 + k, LATENCY_SECONDS) for k in range(single)]
    await engine.stop()
    frames = clips * seconds * fps
    return {
        "model": model.name, "prompt": prompt, "size": described.image_size, "clips": clips,
        "seconds": seconds, "fps": fps,
        "concurrency": concurrency, "frames": frames, "wall_s": wall, "frames_per_s": frames / wall,
        "clip_s": list(times), "clip_4s_alone_s": alone,
    }  # fmt: skip


async def inprocess(
    config_path: Path, model: str, args: argparse.Namespace, concurrency: int
) -> dict[str, Any]:
    """measure_inprocess in a process of its own (nothing of the served side in it)."""
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "load_tests.video_bench", "inprocess", "--config", str(config_path),
        "--model", model, "--clips", str(args.clips), "--seconds", str(args.seconds),
        "--concurrency", str(concurrency), "--single", str(args.single),
        stdout=asyncio.subprocess.PIPE, env=server_env(),
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"in-process {model} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# ---- served: the gateway's /v1/videos, the real openai client -----------------------------
async def served_clip(
    client: Any, model: str, prompt: str, seconds: int, seed: int, poll_s: float,
    download: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """create -> retrieve every poll_s until completed -> download_content; the times since
    the create was sent."""
    t0 = time.perf_counter()
    video = await client.videos.create(
        model=model, prompt=prompt, seconds=str(seconds), extra_body={"seed": seed}
    )
    while video.status not in ("completed", "failed"):
        await asyncio.sleep(poll_s)  # a client polling the API, as create_and_poll does
        video = await client.videos.retrieve(video.id)
    completed = time.perf_counter() - t0
    if video.status != "completed":
        raise RuntimeError(f"video {video.id} failed: {video.error}")
    data = b""
    if download:
        data = (await client.videos.download_content(video.id)).content
    return {"id": video.id, "completed_s": completed, "downloaded_s": time.perf_counter() - t0,
            "mp4": data}  # fmt: skip


def check_mp4(data: bytes, frames: int, size: int) -> None:
    """The clip decodes (PyAV) to `frames` frames of the model's size (sides made even)."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        n = len(list(container.decode(stream)))
        even = size + size % 2
        if n != frames or (stream.width, stream.height) != (even, even):
            raise AssertionError(f"MP4: {n} frames {stream.width}x{stream.height}, "
                                 f"expected {frames} of {even}x{even}")  # fmt: skip


async def served_throughput(
    client: Any, model: str, prompt: str, args: argparse.Namespace, fps: int, size: int,
    seed0: int,
) -> dict[str, Any]:  # fmt: skip
    """Every clip created at once; one watcher lists the jobs (`videos.list`) every poll_s and
    downloads each clip as soon as it is seen completed: the load a client adds stays one list
    per poll, not one retrieve per clip per poll (which, at 16 clips every 100 ms, took CPU
    the model needed on this machine)."""
    poll = args.poll_ms / 1000
    start = time.perf_counter()
    created = await asyncio.gather(
        *(client.videos.create(model=model, prompt=prompt, seconds=str(args.seconds),
                               extra_body={"seed": seed0 + k}) for k in range(args.clips))
    )  # fmt: skip
    waiting = {v.id for v in created}
    downloads: list[asyncio.Task[Any]] = []
    done_s: list[float] = []

    async def fetch(video_id: str) -> bytes:
        data: bytes = (await client.videos.download_content(video_id)).content
        done_s.append(time.perf_counter() - start)
        return data

    while waiting:
        await asyncio.sleep(poll)
        page = await client.videos.list(limit=100)
        for video in page.data:
            if video.id not in waiting or video.status not in ("completed", "failed"):
                continue
            if video.status != "completed":
                raise RuntimeError(f"video {video.id} failed: {video.error}")
            waiting.discard(video.id)
            downloads.append(asyncio.ensure_future(fetch(video.id)))
    mp4s = await asyncio.gather(*downloads)
    wall = time.perf_counter() - start
    for data in mp4s:
        check_mp4(data, args.seconds * fps, size)
    frames = args.clips * args.seconds * fps
    return {"frames": frames, "wall_s": wall, "frames_per_s": frames / wall,
            "clip_s": sorted(done_s)}  # fmt: skip


async def served_latency(
    client: Any, model: str, prompt: str, args: argparse.Namespace, seed0: int
) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    alone = []
    for k in range(args.single):
        c = await served_clip(client, model, prompt, LATENCY_SECONDS, seed0 + k, poll, False)
        alone.append(c["completed_s"])
    start = time.perf_counter()
    together = await asyncio.gather(
        *(served_clip(client, model, prompt, LATENCY_SECONDS, seed0 + 100 + k, poll, False)
          for k in range(AT_ONCE))
    )  # fmt: skip
    total = max(c["completed_s"] for c in together)
    return {"alone_s": alone, "together_s": [c["completed_s"] for c in together],
            "together_total_s": total, "together_wall_s": time.perf_counter() - start}  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import openai

    from core.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="video-bench-"))
    path = config(tmp, args.models, args.video_concurrency)
    concurrency = load_config(path).gateway.jobs.video_concurrency
    before = {m: await inprocess(path, m, args, concurrency) for m in args.models}
    for m, r in before.items():
        print(f"[video] in-process {m}: {r['frames_per_s']:.0f} frames/s", flush=True)
    up = AigcUp.start(path, timeout_s=600)
    rounds: list[dict[str, Any]] = []
    try:
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{up.http_port}/v1", api_key="bench", max_retries=0,
            timeout=600,
        )  # fmt: skip
        info = {}
        for m in args.models:
            b = before[m]
            info[m] = {"prompt": b["prompt"], "fps": b["fps"], "size": b["size"]}
            await served_clip(client, m, info[m]["prompt"], args.seconds, 10_000, 0.05)  # warm
        for k in range(args.rounds):
            row: dict[str, Any] = {}
            for m in args.models:
                i = info[m]
                made = await served_throughput(
                    client, m, i["prompt"], args, i["fps"], i["size"], 1000 * k
                )
                print(f"[video] round {k + 1} served {m}: {made['frames_per_s']:.0f} frames/s",
                      flush=True)  # fmt: skip
                latency = await served_latency(client, m, i["prompt"], args, 1000 * k + 500)
                print(f"[video] round {k + 1} {m}: 4 s clip alone p50 "
                      f"{statistics.median(latency['alone_s']):.2f} s, {AT_ONCE} at once total "
                      f"{latency['together_total_s']:.2f} s", flush=True)  # fmt: skip
                row[m] = {"throughput": made, "latency": latency}
            rounds.append(row)
        await client.close()
    finally:
        up.stop()
    after = {m: await inprocess(path, m, args, concurrency) for m in args.models}
    for r in rounds:
        for m, cell in r.items():
            limit = (before[m]["frames_per_s"] + after[m]["frames_per_s"]) / 2
            cell["ratio"] = cell["throughput"]["frames_per_s"] / limit
    command = "python -m load_tests.video_bench " + " ".join(sys.argv[1:])
    return {
        "machine": {**facts(), "command": command},
        "args": {k: v for k, v in vars(args).items() if k != "which"},
        "video_concurrency": concurrency,
        "models": info,
        "inprocess_before": before,
        "inprocess_after": after,
        "rounds": rounds,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(result: dict[str, Any]) -> str:
    a = result["args"]
    rows = [
        f"Frames per second generated and encoded, {a['clips']} clips of {a['seconds']} s, "
        f"{result['video_concurrency']} at once (the gateway's video_concurrency):",
        "",
        "| model | size, fps | in-process frames/s (before / after) | round | served frames/s "
        f"| served / in-process (goal >= {GOAL}) |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(result["rounds"], 1):
        for m, cell in r.items():
            b, f = result["inprocess_before"][m], result["inprocess_after"][m]
            i = result["models"][m]
            rows.append(
                f"| {m} | {i['size']}x{i['size']}, {i['fps']} | {b['frames_per_s']:.0f} / "
                f"{f['frames_per_s']:.0f} | {k} | {cell['throughput']['frames_per_s']:.0f} | "
                f"{cell['ratio']:.2f} |"
            )
    rows += [
        "",
        f"A {LATENCY_SECONDS} s clip's time to completed (create -> the poll that sees it; "
        f"polled every {a['poll_ms']} ms):",
        "",
        "| model | round | in-process, one clip (p50) | 1 job: p50 / max "
        f"| {AT_ONCE} jobs at once: p50 / max per job | {AT_ONCE} jobs: total |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(result["rounds"], 1):
        for m, cell in r.items():
            lat = cell["latency"]
            ref = result["inprocess_before"][m]["clip_4s_alone_s"]
            ref += result["inprocess_after"][m]["clip_4s_alone_s"]
            rows.append(
                f"| {m} | {k} | {_ms(statistics.median(ref)) if ref else '-'} | "
                f"{_ms(statistics.median(lat['alone_s']))} / {_ms(max(lat['alone_s']))} | "
                f"{_ms(statistics.median(lat['together_s']))} / {_ms(max(lat['together_s']))} | "
                f"{_ms(lat['together_total_s'])} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.video_bench",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("which", nargs="?", default="run", choices=["run", "inprocess"],
                        help="inprocess: one model's in-process side (a child of run)")  # fmt: skip
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    parser.add_argument("--clips", type=int, default=16, help="clips per throughput run")
    parser.add_argument("--seconds", type=int, default=12, help="length of those clips")
    parser.add_argument("--single", type=int, default=5, help="4 s jobs alone, one by one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--poll-ms",
        type=int,
        default=100,
        help="how often a client polls (retrieve, or the throughput watcher's list)",
    )
    parser.add_argument("--video-concurrency", type=int, default=None,
                        help="gateway.jobs.video_concurrency (default: as shipped)")  # fmt: skip
    parser.add_argument("--wait-quiet", action="store_true", help="wait for load < 0.5, no raylet")
    # the inprocess child's own
    parser.add_argument("--config")
    parser.add_argument("--model")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    if args.which == "inprocess":
        result = asyncio.run(
            measure_inprocess(args.config, args.model, args.clips, args.seconds,
                              args.concurrency, args.single)
        )  # fmt: skip
        print(json.dumps(result), flush=True)
        return 0
    if args.wait_quiet:
        wait_quiet()
    # openai's notice on every videos call that OpenAI's own Sora API is to shut down
    warnings.filterwarnings("ignore", message="The Sora API", category=DeprecationWarning)
    result = asyncio.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "video.json").write_text(json.dumps(result, indent=2) + "\n")
    md = f"{heading(result['machine'])}\n\n{table(result)}\n"
    (RESULTS / "video.md").write_text(md)
    print(md)
    for r in result["rounds"]:
        for m, cell in r.items():
            met = "MET" if cell["ratio"] >= GOAL else "MISSED"
            print(f"{met} {m}: served / in-process frames/s {cell['ratio']:.2f}x (goal >= {GOAL}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
