"""The `aigc` command: start the stack and call every API from a shell.

The calling commands (text, image, audio, models, health) need only the client install
(grpcio, protobuf); the server commands (up, gateway, k8s) need the `server` extra and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import signal
import sys
import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from aigc.client import DEFAULT_TARGET, HEALTH_SERVICES, PRIORITIES, Client
from aigc.png import Pixels, encode_png, grid
from aigc.v1 import common_pb2, text_pb2

if TYPE_CHECKING:
    from aigc.config import AigcConfig
    from aigc.stack import LocalStack

DEFAULT_CONFIG = "configs/local.yaml"
SERVER_EXTRA = "pip install 'aigc-serve[server]'"
# Command -> (modules it imports, the install that brings them).
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "up": (("ray", "torch", "pydantic", "yaml", "prometheus_client"), SERVER_EXTRA),
    "gateway": (("ray", "pydantic", "yaml", "prometheus_client"), SERVER_EXTRA),
    "k8s": (("pydantic", "yaml"), SERVER_EXTRA),
    "bench": (("numpy",), "pip install 'aigc-serve[bench]'"),
}


def missing_requirements(command: str) -> str | None:
    """One line naming the install a command lacks, or None when it can run."""
    modules, install = REQUIREMENTS.get(command, ((), ""))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"aigc {command} needs {', '.join(missing)}, which this install lacks: {install}"


def _client(args: argparse.Namespace) -> Client:
    return Client(args.target, api_key=args.api_key, timeout=args.timeout)


# ---- up / gateway --------------------------------------------------------------------------
def _load_config(args: argparse.Namespace) -> AigcConfig:
    from aigc.config import load_config

    config = load_config(args.config)
    if args.address:  # the flag wins over the config's ray.address
        config = config.model_copy(
            update={"ray": config.ray.model_copy(update={"address": args.address})}
        )
    return config


def _serve(stack: LocalStack, args: argparse.Namespace, name: str) -> int:
    """Starts the stack, prints where it listens, and stops it on Ctrl-C or SIGTERM."""

    def say(msg: str) -> None:
        print(f"[aigc {name}] {msg}", flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stack.start(progress=say, timeout_s=args.ready_timeout)
            gw = stack.gateway
            assert gw is not None
            host = stack.config.gateway.host
            say(f"gateway      grpc://{host}:{gw.port}  (aigc.v1, grpc.health.v1, reflection)")
            if gw.http_port is not None:
                say(f"openai       http://{host}:{gw.http_port}/v1  (OpenAI API; /readyz, /livez)")
            say(f"gateway metrics  http://{host}:{gw.metrics_port}/metrics")
            say(f"ray metrics      {stack.ray_metrics_url}")
            say(f"ray cluster      {stack.cluster_description}")
            if gw.http_port is not None:
                scheme = "https" if stack.config.gateway.security.tls else "http"
                say(f"playground   {scheme}://{host}:{gw.http_port}/  (open it in a browser)")
            say(f"ready; Ctrl-C stops {stack.stops}")
            await stop.wait()
            say("stopping: draining in-flight requests")
        finally:
            t0 = time.perf_counter()
            await stack.stop()
            say(f"stopped in {time.perf_counter() - t0:.1f}s")

    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(run())
    except (TimeoutError, LookupError) as exc:
        print(f"aigc {name}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from aigc.stack import LocalStack

    stack = LocalStack(
        _load_config(args),
        port=args.port,
        metrics_port=args.metrics_port,
        http_port=args.http_port,
        keep_apps=args.keep_apps,
    )
    return _serve(stack, args, "up")


def cmd_gateway(args: argparse.Namespace) -> int:
    from aigc.stack import LocalStack

    config = _load_config(args)
    if not config.ray.address:
        print("aigc gateway: give --address (or ray.address in the config)", file=sys.stderr)
        return 1
    stack = LocalStack(
        config,
        port=args.port,
        metrics_port=args.metrics_port,
        http_port=args.http_port,
        deploy_apps=False,
    )
    return _serve(stack, args, "gateway")


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
        "priority": args.priority,
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


def cmd_image(args: argparse.Namespace) -> int:
    several = (args.count or 1) > 1
    with _client(args) as c:  # a grid is drawn from raw pixels: no PNG decoding here
        resp = c.generate_images(
            model=args.model,
            count=args.count,
            seed=args.seed,
            label=args.label,
            raw=several and args.grid,
            priority=args.priority,
        )
    out = Path(args.output)
    if several and args.grid:
        pixels = [Pixels(i.width, i.height, i.channels, i.data) for i in resp.images]
        out.write_bytes(encode_png(grid(pixels)))
        written = [out]
    elif len(resp.images) == 1:
        out.write_bytes(resp.images[0].data)
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
    speech = {
        "model": args.model,
        "voice": args.voice,
        "speed": args.speed,
        "seed": args.seed,
        "priority": args.priority,
    }
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
        if m.aliases:
            print(f"{m.name} also answers to: {', '.join(m.aliases)}")
        if m.labels:
            print(f"{m.name} labels: {', '.join(m.labels)}")
        if m.voices:
            print(f"{m.name} voices: {', '.join(m.voices)}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    with _client(args) as c:
        status = c.health("")
        print(f"overall: {status}")
        for name in HEALTH_SERVICES:
            try:
                print(f"{name}: {c.health(name)}")
            except grpc.RpcError as err:  # a service this server does not run (no model)
                if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
                print(f"{name}: not served")
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

    def tiered(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = call(name, help_text)
        sp.add_argument(
            "--priority",
            choices=PRIORITIES,
            default=None,
            help="admission tier: batch work is refused first under load (default interactive)",
        )
        return sp

    def server(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--config", default=DEFAULT_CONFIG)
        sp.add_argument(
            "--address",
            default=None,
            help="Ray cluster HOST:PORT (or 'auto') to run on (default: config ray.address)",
        )
        sp.add_argument("--port", type=int, default=None, help="gateway port (default: config)")
        sp.add_argument("--metrics-port", type=int, default=None)
        sp.add_argument(
            "--http-port", type=int, default=None, help="OpenAI HTTP port (default: config; -1 off)"
        )
        sp.add_argument("--ready-timeout", type=float, default=900.0)
        return sp

    up = server(
        "up",
        "start every Serve app and the gateway: on a local Ray, or with --address on a cluster",
    )
    up.add_argument(
        "--keep-apps",
        action="store_true",
        help="with --address: leave the Serve apps running on Ctrl-C (default: delete them)",
    )
    up.set_defaults(fn=cmd_up)
    server(
        "gateway", "run one more gateway for the apps `aigc up --address` deployed (no deploy)"
    ).set_defaults(fn=cmd_gateway)

    t = tiered("text", "generate text")
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

    i = tiered("image", "generate images")
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

    a = tiered("audio", "synthesize speech")
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
    command = argv[0] if argv else ""
    # `aigc up --help` needs nothing; a plugin imports its package even to print its help.
    help_only = command not in PLUGINS and any(a in ("-h", "--help") for a in argv[1:])
    if command in REQUIREMENTS and not help_only and (problem := missing_requirements(command)):
        print(problem, file=sys.stderr)
        return 1
    if command in PLUGINS:  # the plugin parses its own arguments, --help included
        module, _, attr = PLUGINS[command].partition(":")
        return int(getattr(importlib.import_module(module), attr)(argv[1:]))
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
