"""The `aigc` command: call every API from a shell, and run the commands other packages add.

The calling commands (text, image, audio, models, health) need only the client install
(grpcio, protobuf). The server's commands (up, gateway, k8s) and `bench` are entry points in
the `aigc.commands` group: this module imports nothing of the server, and a command whose
extra is not installed says which install it needs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from importlib import metadata
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import grpc

from aigc.client import DEFAULT_TARGET, Client
from aigc.png import Pixels, encode_png, grid
from aigc.v1 import common_pb2, text_pb2
from aigc.wav import wav_bytes
from aigc.wire import HEALTH_SERVICES, PRIORITIES

# Commands other packages add: entry points in this group, each `main(argv) -> int`. The
# server's (`up`, `gateway`, `k8s`) and the load harness's (`bench`) are declared in
# pyproject.toml with the extra they need; this module imports none of them.
COMMANDS_GROUP = "aigc.commands"
COMMAND_HELP = {
    "up": "start every Serve app and the gateway (local Ray, or --address on a cluster)",
    "gateway": "run one more gateway for apps already deployed (no deploy)",
    "bench": "load-test a gateway (closed or open loop); see `aigc bench --help`",
    "k8s": "render and check Kubernetes manifests; see `aigc k8s --help`",
}
DIST = "aigc-serve"


def plugin_commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def missing_requirements(ep: EntryPoint) -> str | None:
    """One line naming the install a command lacks (the extras its entry point names, read
    from this distribution's metadata), or None when it can run."""
    wanted = set(ep.extras)
    missing = []
    for req in metadata.requires(DIST) or []:
        name = re.match(r"[A-Za-z0-9._-]+", req)
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        if not name or not extra or extra.group(1) not in wanted or name.group(0) == DIST:
            continue
        try:
            metadata.version(name.group(0))
        except metadata.PackageNotFoundError:
            missing.append(name.group(0))
    if not missing:
        return None
    install = f"pip install '{DIST}[{','.join(sorted(wanted))}]'"
    return f"aigc {ep.name} needs {', '.join(missing)}, which this install lacks: {install}"


def _client(args: argparse.Namespace) -> Client:
    return Client(args.target, api_key=args.api_key, timeout=args.timeout)


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
            Path(args.output).write_bytes(wav_bytes(bytes(pcm), rate))
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
    for name in plugin_commands():
        sub.add_parser(name, help=COMMAND_HELP.get(name, f"see `aigc {name} --help`"))

    call("models", "list served models").set_defaults(fn=cmd_models)
    call("health", "gateway and per-service health").set_defaults(fn=cmd_health)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plugins = plugin_commands()
    if argv and argv[0] in plugins:  # the command parses its own arguments, --help included
        ep = plugins[argv[0]]
        if problem := missing_requirements(ep):
            print(problem, file=sys.stderr)
            return 1
        return int(ep.load()(argv[1:]))
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
