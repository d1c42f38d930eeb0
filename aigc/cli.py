"""The `aigc` command: call every API from a shell, and run the commands other packages add.

The calling commands (text, image, audio, models, health, batch) need only the client install
(grpcio, protobuf). The server's commands (up, gateway, k8s) and `bench` are entry points in
the `aigc.commands` group: this module imports nothing of the server, and a command whose
extra is not installed says which install it needs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.longrunning import operations_pb2
from google.rpc import code_pb2

from aigc.client import (
    DEFAULT_ENDPOINT,
    DEFAULT_TARGET,
    Client,
    StreamCollector,
    batch_metadata,
    batch_of,
    batch_status,
    tool,
)
from aigc.png import Pixels, encode_png, grid
from aigc.v1 import batches_pb2, common_pb2, text_pb2
from aigc.wav import wav_bytes
from aigc.wire import BATCH_ENDPOINTS, HEALTH_SERVICES, PRIORITIES

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
def text_call(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """What `aigc text` asks the SDK for: the prompt (None for a chat) and the keywords of
    `Client.generate_text` / `stream_text`."""
    kw: dict[str, Any] = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "stop": args.stop or (),
        "seed": args.seed,
        "n": args.n,
        "priority": args.priority,
        "json_schema": args.json_schema,
        "json_object": args.json_object,
        "tools": args.tools,
        "tool_choice": args.tool_choice,
        "logprobs": args.logprobs,
        "presence_penalty": args.presence_penalty,
        "frequency_penalty": args.frequency_penalty,
        "repetition_penalty": args.repetition_penalty,
        "logit_bias": dict(args.logit_bias) if args.logit_bias else None,
    }
    prompt: str | None = args.prompt
    if args.chat or args.tools:  # tools are offered in a chat
        messages = ([("system", args.system)] if args.system else []) + [("user", args.prompt)]
        kw["messages"] = messages
        prompt = None
    return prompt, kw


def shown(token: str) -> str:
    """A token quoted, so that its spaces and newlines show."""
    return json.dumps(token, ensure_ascii=False)


def logprob_lines(logprobs: Sequence[text_pb2.TokenLogprob]) -> list[str]:
    """One line per token: the token, its logprob and probability, then its alternatives."""
    width = min(max((len(shown(t.token)) for t in logprobs), default=0), 20)
    lines = []
    for t in logprobs:
        line = f"  {shown(t.token):<{width}} {t.logprob:8.3f} {math.exp(t.logprob):7.2%}"
        if t.top:
            line += "  | " + "  ".join(f"{shown(a.token)} {a.logprob:.3f}" for a in t.top)
        lines.append(line)
    return lines


def print_extras(comp: text_pb2.Completion, prefix: str, logprobs: bool) -> None:
    """A completion's tool calls, `name(arguments)`, and its tokens' logprobs."""
    for call in comp.tool_calls:
        print(f"{prefix}{call.name}({call.arguments})")
    if logprobs:
        print(f"-- {prefix}logprobs (token, logprob, probability | alternatives)")
        print("\n".join(logprob_lines(comp.logprobs)))


def cmd_text(args: argparse.Namespace) -> int:
    prompt, kw = text_call(args)
    several = (args.n or 1) > 1
    with _client(args) as c:
        if args.stream:
            collector = StreamCollector()
            for chunk in c.stream_text(prompt, **kw):
                collector.add(chunk)
                prefix = f"[{chunk.index}] " if several and chunk.delta else ""
                print(prefix + chunk.delta, end="", flush=True)
            print()
            resp = collector.result()
            for comp in resp.completions:
                print_extras(comp, f"[{comp.index}] " if several else "", args.logprobs is not None)
            if resp.HasField("usage") and args.verbose:
                usage = resp.usage
                print(
                    f"-- usage: {usage.prompt_tokens} prompt, {usage.completion_tokens} completion"
                )
            return 0
        resp = c.generate_text(prompt, **kw)
        for comp in resp.completions:
            reason = text_pb2.FinishReason.Name(comp.finish_reason)
            prefix = f"[{comp.index}] " if len(resp.completions) > 1 else ""
            if comp.text or not comp.tool_calls:
                print(prefix + comp.text)
            print_extras(comp, prefix, args.logprobs is not None)
            if args.verbose:
                print(f"-- {reason}, {comp.completion_tokens} tokens")
    return 0


def json_file(kind: type) -> Any:
    """An argparse type: the JSON value of kind (dict or list) in a file."""

    def read(path: str) -> Any:
        try:
            value = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
        if not isinstance(value, kind):
            what = "a JSON object" if kind is dict else "a JSON list"
            raise argparse.ArgumentTypeError(f"{path} must hold {what}")
        return value

    return read


def tools_file(path: str) -> list[Any]:
    """A JSON list of OpenAI tool objects, each checked as the SDK reads it."""
    tools: list[Any] = json_file(list)(path)
    for i, t in enumerate(tools):
        try:
            if not isinstance(t, dict):
                raise ValueError("not a JSON object")
            tool(t)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{path}: tool {i}: {exc}") from None
    return tools


def token_bias(text: str) -> tuple[int, float]:
    """ID=BIAS, e.g. 198=-100."""
    token, sep, bias = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return int(token), float(bias)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TOKEN_ID=BIAS, got {text!r}") from None


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


def cmd_video(args: argparse.Namespace) -> int:
    """Creates the job, draws its progress until it is done, writes the MP4."""
    with _client(args) as c:
        job = c.create_video(
            args.prompt, model=args.model, seconds=args.seconds or 0, seed=args.seed,
            narration=args.narration or "",
        )  # fmt: skip
        while job.status in ("queued", "in_progress"):
            bar = "#" * (job.progress // 5)
            print(f"\r{job.id} [{bar:<20}] {job.progress:3d}% {job.status:<11}", end="", flush=True)
            time.sleep(args.poll)
            job = c.get_video(job.id)
        print(f"\r{job.id} [{'#' * 20}] {job.progress:3d}% {job.status:<11}")
        if job.status != "completed":
            field = f" ({job.error_field})" if job.error_field else ""
            print(f"failed: {job.error_message}{field}", file=sys.stderr)
            return 1
        data = b"".join(part.data for part in c.video_content(job.id, args.variant))
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output} ({job.seconds}s, {job.size}, {len(data)} bytes)")
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


# ---- batches -----------------------------------------------------------------------------
NEWLINE = b"\n"


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE, e.g. job=nightly."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def existing_file(path: str) -> Path:
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return Path(path)


def counted(n: int, what: str = "line") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def when(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) if seconds else "-"


class Progress:
    """A batch's progress from its request counts, on a stream (stderr): one line redrawn in
    place on a terminal, a line per change otherwise."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.last = ""

    def line(self, meta: batches_pb2.BatchMetadata) -> str:
        counts = meta.request_counts
        done = counts.completed + counts.failed
        filled = self.width * done // counts.total if counts.total else 0  # full when all are
        bar = "#" * filled + "." * (self.width - filled)
        status = batches_pb2.BatchStatus.Name(meta.status).removeprefix("BATCH_STATUS_").lower()
        failed = f", {counts.failed} failed" if counts.failed else ""
        return f"[{bar}] {done}/{counts.total}{failed} {status}"

    def show(self, meta: batches_pb2.BatchMetadata) -> None:
        text = self.line(meta)
        if text == self.last:
            return
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self.last)))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = text

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def wait_batch(
    c: Client, name: str, poll_s: float, progress: Progress | None = None
) -> operations_pb2.Operation:
    """Waits (WaitOperation, `poll_s` at a time) until the batch is done, showing progress."""
    try:
        while True:
            op = c.wait_operation(name, poll_s)
            if progress is not None:
                progress.show(batch_metadata(op))
            if op.done:
                return op
    finally:
        if progress is not None:
            progress.end()


def summary(op: operations_pb2.Operation) -> str:
    meta = batch_metadata(op)
    counts = meta.request_counts
    text = (
        f"{meta.batch_id} {batch_status(op)}: {counts.completed} completed, "
        f"{counts.failed} failed of {counts.total}"
    )
    if op.HasField("error"):
        text += f" ({code_pb2.Code.Name(op.error.code)}: {op.error.message})"
    return text


def cmd_batch_submit(args: argparse.Namespace) -> int:
    with _client(args) as c:
        op = c.submit_batch(
            args.file,
            endpoint=args.endpoint,
            completion_window=args.completion_window,
            metadata=dict(args.metadata or ()),
        )
        print(batch_metadata(op).batch_id, flush=True)
        if not args.wait:
            return 0
        op = wait_batch(c, op.name, args.poll, Progress(sys.stderr))
    print(summary(op))
    return 0 if batch_status(op) == "completed" else 1


def cmd_batch_list(args: argparse.Namespace) -> int:
    ops: list[operations_pb2.Operation] = []
    token = ""
    with _client(args) as c:
        while len(ops) < args.limit:
            page = c.list_operations(
                args.filter, page_size=min(args.limit - len(ops), 100), page_token=token
            )
            ops += page.operations
            token = page.next_page_token
            if not token:
                break
    rows = [("BATCH", "STATUS", "ENDPOINT", "DONE/TOTAL", "FAILED", "CREATED (UTC)")]
    for op in ops:
        meta = batch_metadata(op)
        counts = meta.request_counts
        rows.append(
            (
                meta.batch_id,
                batch_status(op),
                meta.endpoint,
                f"{counts.completed + counts.failed}/{counts.total}",
                str(counts.failed),
                when(meta.times.created_at),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_batch_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        op = c.get_operation(args.id)
    meta = batch_metadata(op)
    counts = meta.request_counts
    print(f"batch       {meta.batch_id}  ({op.name})")
    print(f"status      {batch_status(op)}")
    print(f"endpoint    {meta.endpoint}")
    print(f"requests    {counts.total} total, {counts.completed} completed, {counts.failed} failed")
    for field in batches_pb2.BatchTimes.DESCRIPTOR.fields:
        stamp = getattr(meta.times, field.name)
        if stamp:
            print(f"{field.name.removesuffix('_at') + ':':<11} {when(stamp)} UTC")
    if meta.output_file_id:
        print(f"output      {meta.output_file_id}")
    if meta.error_file_id:
        print(f"errors      {meta.error_file_id}")
    batch = batch_of(op)
    for error in batch.errors if batch is not None else ():
        line = f" (line {error.line})" if error.line else ""
        print(f"failed      {error.code}: {error.message}{line}")
    for key, value in sorted(batch.metadata.items()) if batch is not None else ():
        print(f"metadata    {key}={value}")
    return 0


def cmd_batch_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.cancel_operation(args.id)
        op = c.get_operation(args.id)
    print(f"{batch_metadata(op).batch_id} {batch_status(op)}")
    return 0


def cmd_batch_delete(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.delete_operation(args.id)
    print(f"deleted {args.id}")
    return 0


def cmd_batch_results(args: argparse.Namespace) -> int:
    with _client(args) as c:
        op = c.get_operation(args.id)
        meta = batch_metadata(op)
        if not op.done:
            print(
                f"aigc: batch {meta.batch_id} is {batch_status(op)}; its results are written when "
                "it ends (aigc batch submit --wait, aigc batch status)",
                file=sys.stderr,
            )
            return 1
        wanted = [(args.output, meta.output_file_id)]
        if args.errors:
            wanted.append((args.errors, meta.error_file_id))
        written = []
        for path, file_id in wanted:
            data = c.file_content(file_id) if file_id else b""
            Path(path).write_bytes(data)
            written.append(f"{path} ({counted(data.count(NEWLINE))})")
    print("wrote " + ", ".join(written))
    if meta.error_file_id and not args.errors:
        failed = counted(meta.request_counts.failed, "error line")
        print(f"{failed} in {meta.error_file_id} (--errors FILE writes them)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aigc", description="aigc-serve: generative models over gRPC")
    sub = p.add_subparsers(dest="command", required=True)

    def connected(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--target", default=DEFAULT_TARGET, help="gateway HOST:PORT")
        sp.add_argument("--api-key", default=None, help="sent as 'authorization: Bearer KEY'")
        sp.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
        return sp

    def call(name: str, help_text: str) -> argparse.ArgumentParser:
        return connected(sub.add_parser(name, help=help_text))

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
    fmt = t.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json-schema",
        type=json_file(dict),
        default=None,
        metavar="FILE",
        help="answer JSON that matches this JSON schema (a file)",
    )
    fmt.add_argument("--json-object", action="store_true", help="answer a JSON object")
    t.add_argument(
        "--tools",
        type=tools_file,
        default=None,
        metavar="FILE",
        help="a JSON list of OpenAI tool objects the model may call (implies --chat); "
        "calls print as name(arguments)",
    )
    t.add_argument(
        "--tool-choice",
        default=None,
        metavar="none|auto|required|NAME",
        help="whether the model calls a tool, or which one (default auto)",
    )
    t.add_argument(
        "--logprobs",
        type=int,
        default=None,
        metavar="N",
        help="print each token's logprob and its N best alternatives (0 to 20)",
    )
    t.add_argument("--presence-penalty", type=float, default=None, metavar="P", help="[-2, 2]")
    t.add_argument("--frequency-penalty", type=float, default=None, metavar="P", help="[-2, 2]")
    t.add_argument(
        "--repetition-penalty", type=float, default=None, metavar="P", help="(0, 2], 1 is off"
    )
    t.add_argument(
        "--logit-bias",
        type=token_bias,
        action="append",
        metavar="ID=BIAS",
        help="add BIAS ([-100, 100]) to token ID's logit (repeatable)",
    )
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

    v = call("video", "make a clip (a job: progress shown until it is done)")
    v.add_argument(
        "prompt", help="a conditional model's labels in turn: 'a sneaker turning into a bag'"
    )
    v.add_argument("--model", default="")
    v.add_argument("--seconds", type=int, default=None)
    v.add_argument("--seed", type=int, default=None)
    v.add_argument("--narration", default=None, help="text spoken as the clip's audio track")
    v.add_argument("--variant", choices=("video", "thumbnail", "spritesheet"), default="video")
    v.add_argument("--poll", type=float, default=0.25, help="seconds between polls")
    v.add_argument("-o", "--output", default="clip.mp4")
    v.set_defaults(fn=cmd_video)

    call("models", "list served models").set_defaults(fn=cmd_models)
    call("health", "gateway and per-service health").set_defaults(fn=cmd_health)

    b = sub.add_parser(
        "batch", help="batches of requests (OpenAI's Batch API): submit, list, status, results"
    )
    bsub = b.add_subparsers(dest="batch_command", required=True)

    def batch(name: str, help_text: str) -> argparse.ArgumentParser:
        return connected(bsub.add_parser(name, help=help_text))

    bs = batch("submit", "start a batch from a JSONL file of request lines; prints its id")
    bs.add_argument("file", type=existing_file, help="OpenAI's batch input: one JSON line each")
    bs.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        metavar="PATH",
        help=f"what every line calls: {', '.join(BATCH_ENDPOINTS)} (default {DEFAULT_ENDPOINT})",
    )
    bs.add_argument("--completion-window", default="24h")
    bs.add_argument(
        "--metadata", type=key_value, action="append", metavar="KEY=VALUE", help="(repeatable)"
    )
    bs.add_argument(
        "--wait",
        action="store_true",
        help="wait until it ends, progress on stderr; exit 0 only when it completed",
    )
    bs.add_argument(
        "--poll", type=float, default=1.0, metavar="SECONDS", help="progress interval (--wait)"
    )
    bs.set_defaults(fn=cmd_batch_submit)
    bl = batch("list", "batches, newest first")
    bl.add_argument(
        "--filter", default="", help='e.g. "done = false", "status = in_progress" (AND joins)'
    )
    bl.add_argument("--limit", type=int, default=20)
    bl.set_defaults(fn=cmd_batch_list)
    for name, help_text, fn in (
        ("status", "a batch's status, counts, times and result files", cmd_batch_status),
        ("cancel", "stop a running batch (what ran is kept)", cmd_batch_cancel),
        ("delete", "remove a finished batch and its result files", cmd_batch_delete),
    ):
        sp = batch(name, help_text)
        sp.add_argument("id", help="batch id (or operations/ID)")
        sp.set_defaults(fn=fn)
    br = batch("results", "write a finished batch's output (and error) lines")
    br.add_argument("id", help="batch id (or operations/ID)")
    br.add_argument("-o", "--output", required=True, help="the output lines (JSONL)")
    br.add_argument("--errors", default=None, metavar="FILE", help="the error lines (JSONL)")
    br.set_defaults(fn=cmd_batch_results)
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
