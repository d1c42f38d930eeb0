"""The server's commands, which the `aigc` command finds through the `aigc.commands` entry
points (pyproject.toml): `aigc up` (Ray, the Serve apps and the gateway) and `aigc gateway`
(one more gateway for apps already deployed: the Kubernetes gateway pods run it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

from control.stack import Stack
from core.config import AigcConfig, load_config

DEFAULT_CONFIG = "configs/local.yaml"


def _load_config(args: argparse.Namespace) -> AigcConfig:
    config = load_config(args.config)
    if args.address:  # the flag wins over the config's ray.address
        config = config.model_copy(
            update={"ray": config.ray.model_copy(update={"address": args.address})}
        )
    return config


def _serve(stack: Stack, args: argparse.Namespace, name: str) -> int:
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


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"aigc {name}", description=description)
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster HOST:PORT (or 'auto') to run on (default: config ray.address)",
    )
    p.add_argument("--port", type=int, default=None, help="gateway port (default: config)")
    p.add_argument("--metrics-port", type=int, default=None)
    p.add_argument(
        "--http-port", type=int, default=None, help="OpenAI HTTP port (default: config; -1 off)"
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=900.0,
        help="seconds to wait for the models before giving up; 0: serve at once and let "
        "grpc.health.v1 and /readyz report readiness (what the Kubernetes pods do)",
    )
    return p


def up(argv: list[str]) -> int:
    """`aigc up`: Ray (local, or joined with --address), every Serve app, and the gateway."""
    what = "start every Serve app and the gateway: on a local Ray, or on a cluster with --address"
    p = _parser("up", what)
    p.add_argument(
        "--keep-apps",
        action="store_true",
        help="with --address: leave the Serve apps running on Ctrl-C (default: delete them)",
    )
    args = p.parse_args(argv)
    stack = Stack(
        _load_config(args),
        port=args.port,
        metrics_port=args.metrics_port,
        http_port=args.http_port,
        keep_apps=args.keep_apps,
    )
    return _serve(stack, args, "up")


def gateway(argv: list[str]) -> int:
    """`aigc gateway`: one more gateway for the apps `aigc up --address` (or a RayService)
    deployed; it deploys nothing."""
    args = _parser(
        "gateway", "run one more gateway for the apps `aigc up --address` deployed (no deploy)"
    ).parse_args(argv)
    config = _load_config(args)
    if not config.ray.address:
        print("aigc gateway: give --address (or ray.address in the config)", file=sys.stderr)
        return 1
    stack = Stack(
        config,
        port=args.port,
        metrics_port=args.metrics_port,
        http_port=args.http_port,
        deploy_apps=False,
    )
    return _serve(stack, args, "gateway")
