"""The `aigc` command: start the local stack and call every API from a shell."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
import wave
from pathlib import Path

import grpc
import numpy as np

from aigc.client import DEFAULT_TARGET, Client
from aigc.v1 import common_pb2, text_pb2

DEFAULT_CONFIG = "configs/local.yaml"


def _client(args: argparse.Namespace) -> Client:
    return Client(args.target, api_key=args.api_key, timeout=args.timeout)


# ---- up ----------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from aigc.config import load_config
    from aigc.stack import LocalStack

    config = load_config(args.config)
    stack = LocalStack(
        config, port=args.port, metrics_port=args.metrics_port, http_port=args.http_port
    )

    def say(msg: str) -> None:
        print(f"[aigc up] {msg}", flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stack.start(progress=say, timeout_s=args.ready_timeout)
            gw = stack.gateway
            assert gw is not None
            host = config.gateway.host
            say(f"gateway      grpc://{host}:{gw.port}  (aigc.v1, grpc.health.v1, reflection)")
            if gw.http_port is not None:
                say(f"openai       http://{host}:{gw.http_port}/v1  (OpenAI-compatible HTTP API)")
            say(f"gateway metrics  http://{host}:{gw.metrics_port}/metrics")
            say(f"ray metrics      {stack.ray_metrics_url}")
            say("ready; Ctrl-C stops everything")
            await stop.wait()
            say("stopping: draining in-flight requests")
        finally:
            await stack.stop()
            say("stopped")

    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(run())
    except TimeoutError as exc:
        print(f"aigc up: {exc}", file=sys.stderr)
        return 1
    return 0


# ---- calls -------------------------------------------------------------------------------
def cmd_text(args: argparse.Namespace) -> int:
    kw = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "stop": args.stop or (),
        "seed": args.seed,
        "n": args.n,
    }
    prompt: str | None = args.prompt
    if args.chat:
        messages = ([("system", args.system)] if args.system else []) + [("user", args.prompt)]
        kw["messages"] = messages
        prompt = None
    with _client(args) as c:
        if args.stream:
            usage = None
            for chunk in c.stream_text(prompt, **kw):
                prefix = f"[{chunk.index}] " if (args.n or 1) > 1 and chunk.delta else ""
                print(prefix + chunk.delta, end="", flush=True)
                if chunk.HasField("usage"):
                    usage = chunk.usage
            print()
            if usage is not None and args.verbose:
                print(
                    f"-- usage: {usage.prompt_tokens} prompt, {usage.completion_tokens} completion"
                )
            return 0
        resp = c.generate_text(prompt, **kw)
        for comp in resp.completions:
            reason = text_pb2.FinishReason.Name(comp.finish_reason)
            if len(resp.completions) > 1:
                print(f"[{comp.index}] ", end="")
            print(comp.text)
            if args.verbose:
                print(f"-- {reason}, {comp.completion_tokens} tokens")
    return 0


def _grid(images: list[np.ndarray]) -> np.ndarray:
    n = len(images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, c = images[0].shape
    pad = 2
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + k * (w + pad) : pad + k * (w + pad) + w,
        ] = img
    return grid


def cmd_image(args: argparse.Namespace) -> int:
    from services.image.encode import decode_png, encode_png

    with _client(args) as c:
        resp = c.generate_images(
            model=args.model, count=args.count, seed=args.seed, label=args.label
        )
    out = Path(args.output)
    if len(resp.images) == 1 or args.grid:
        data = (
            resp.images[0].data
            if len(resp.images) == 1
            else encode_png(_grid([decode_png(i.data) for i in resp.images]))
        )
        out.write_bytes(data)
        written = [out]
    else:
        written = []
        for k, img in enumerate(resp.images):
            path = out.with_name(f"{out.stem}-{k}{out.suffix}")
            path.write_bytes(img.data)
            written.append(path)
    for img in resp.images:
        label = f" label={img.label}" if img.label else ""
        print(f"{img.width}x{img.height} seed={img.seed}{label}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_audio(args: argparse.Namespace) -> int:
    speech = {"model": args.model, "voice": args.voice, "speed": args.speed, "seed": args.seed}
    with _client(args) as c:
        if args.stream:
            pcm, rate, t0 = bytearray(), 24000, time.perf_counter()
            for chunk in c.stream_speech(args.text, **speech):
                rate = chunk.sample_rate
                pcm += chunk.audio
                print(
                    f"chunk {chunk.index}: {chunk.duration_seconds:.2f}s audio at "
                    f"{time.perf_counter() - t0:.2f}s",
                    flush=True,
                )
            with wave.open(args.output, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(bytes(pcm))
            print(f"wrote {args.output} ({len(pcm) / 2 / rate:.2f}s)")
            return 0
        resp = c.synthesize(args.text, **speech)
    Path(args.output).write_bytes(resp.audio)
    secs, rate = resp.duration_seconds, resp.sample_rate
    print(f"wrote {args.output} ({secs:.2f}s at {rate} Hz, seed={resp.seed})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as c:
        resp = c.list_models()
    rows = [
        ("NAME", "MODALITY", "ENGINE", "READY", "PARAMS", "BATCH", "REPLICAS", "LICENSE", "SOURCE")
    ]
    for m in resp.models:
        modality = common_pb2.Modality.Name(m.modality).removeprefix("MODALITY_").lower()
        rows.append(
            (
                m.name + (" *" if m.default else ""),
                modality,
                m.engine,
                "yes" if m.ready else "no",
                f"{m.parameters / 1e6:.1f}M" if m.parameters else "-",
                str(m.batching.max_batch_size),
                f"{m.scaling.running_replicas} ({m.scaling.min_replicas}-{m.scaling.max_replicas})",
                m.license or "-",
                m.source or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
    for m in resp.models:
        if m.labels:
            print(f"{m.name} labels: {', '.join(m.labels)}")
        if m.voices:
            print(f"{m.name} voices: {', '.join(m.voices)}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from gateway.server import MODELS_SERVICE, SERVICE_NAMES

    with _client(args) as c:
        status = c.health("")
        print(f"overall: {status}")
        for name in [*SERVICE_NAMES.values(), MODELS_SERVICE]:
            print(f"{name}: {c.health(name)}")
    return 0 if status == "SERVING" else 1


PLUGINS = {"bench": "load_tests.cli:main", "k8s": "aigc.k8s:main"}
PLUGINS_HELP = {
    "bench": "load-test a gateway (closed or open loop); see `aigc bench --help`",
    "k8s": "render and check Kubernetes manifests; see `aigc k8s --help`",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aigc", description="aigc-serve: generative models over gRPC")
    sub = p.add_subparsers(dest="command", required=True)

    def call(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--target", default=DEFAULT_TARGET, help="gateway HOST:PORT")
        sp.add_argument("--api-key", default=None, help="sent as 'authorization: Bearer KEY'")
        sp.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
        return sp

    up = sub.add_parser("up", help="start local Ray, every Serve app and the gateway")
    up.add_argument("--config", default=DEFAULT_CONFIG)
    up.add_argument("--port", type=int, default=None, help="gateway port (default: config)")
    up.add_argument("--metrics-port", type=int, default=None)
    up.add_argument(
        "--http-port", type=int, default=None, help="OpenAI HTTP port (default: config; -1 off)"
    )
    up.add_argument("--ready-timeout", type=float, default=900.0)
    up.set_defaults(fn=cmd_up)

    t = call("text", "generate text")
    t.add_argument("prompt")
    t.add_argument("--model", default="")
    t.add_argument("--stream", action="store_true", help="print tokens as they come")
    t.add_argument("--chat", action="store_true", help="send the prompt as a user message")
    t.add_argument("--system", default=None, help="system message (with --chat)")
    t.add_argument("--max-tokens", type=int, default=None)
    t.add_argument("--temperature", type=float, default=None)
    t.add_argument("--top-p", type=float, default=None)
    t.add_argument("--top-k", type=int, default=None)
    t.add_argument("--stop", action="append", help="stop string (repeatable)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("-n", type=int, default=None, help="completions")
    t.add_argument("-v", "--verbose", action="store_true")
    t.set_defaults(fn=cmd_text)

    i = call("image", "generate images")
    i.add_argument("--model", default="")
    i.add_argument("--label", default="")
    i.add_argument("--count", type=int, default=None)
    i.add_argument("--seed", type=int, default=None)
    i.add_argument(
        "--grid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="several images: one grid PNG (default) or numbered files",
    )
    i.add_argument("-o", "--output", required=True)
    i.set_defaults(fn=cmd_image)

    a = call("audio", "synthesize speech")
    a.add_argument("text")
    a.add_argument("--model", default="")
    a.add_argument("--voice", default="")
    a.add_argument("--speed", type=float, default=None)
    a.add_argument("--seed", type=int, default=None)
    a.add_argument("--stream", action="store_true", help="receive sentence by sentence")
    a.add_argument("-o", "--output", required=True)
    a.set_defaults(fn=cmd_audio)

    # Subcommands owned by other packages take the rest of the command line.
    for name, help_text in PLUGINS_HELP.items():
        sub.add_parser(name, help=help_text)  # listed in --help; main() dispatches it

    call("models", "list served models").set_defaults(fn=cmd_models)
    call("health", "gateway and per-service health").set_defaults(fn=cmd_health)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PLUGINS:  # the plugin parses its own arguments, --help included
        from aigc.registry import load_object

        return int(load_object(PLUGINS[argv[0]])(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except grpc.RpcError as err:
        print(f"aigc: {err.code().name}: {err.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
