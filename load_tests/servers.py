"""Servers for the benchmarks, one per process: `python -m load_tests.servers KIND [--config]`.

KIND is `gateway` (the full local stack from a config), `extra-gateway` (one more gateway for
the apps a `gateway` server deployed, on the Ray cluster named by $RAY_ADDRESS, as `aigc gateway
--address` runs), `plain` (grpc.aio echo, no Ray), `serve-proxy` (Ray Serve's gRPC proxy in
front of the echo engines) or `relay` (two grpc.aio hops without Ray: a front end that converts
proto <-> domain and calls the text echo engine through our direct port, `relay-backend`, in a
process of its own; the floor of a gateway in front of a replica process, without the
gateway's data plane and without Ray). Each prints one JSON line `{"port": N, ...}` on stdout
once it serves (`gateway` adds its Ray address), and stops cleanly on SIGTERM. Running the
server in its own process keeps the load generator's CPU and GIL apart from the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from load_tests.baselines import BENCH_CONFIG, SERVE_PROXY_SERVICERS
from load_tests.procs import free_port


def _ready(port: int, **extra: Any) -> None:
    print(json.dumps({"port": port, **extra}), flush=True)


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_gateway(config_path: str, extra: bool = False) -> None:
    import ray

    from control.stack import Stack
    from core.config import load_config

    config = load_config(config_path)
    if extra:
        ray_config = config.ray.model_copy(update={"address": os.environ["RAY_ADDRESS"]})
        config = config.model_copy(update={"ray": ray_config})
    stack = Stack(
        config, port=0, metrics_port=0, http_port=0, ray_metrics_port=0, deploy_apps=not extra
    )
    try:
        await stack.start(progress=lambda m: print(m, file=sys.stderr, flush=True))
        gw: Any = stack.gateway
        address = ray.get_runtime_context().gcs_address
        _ready(gw.port, metrics_port=gw.metrics_port, http_port=gw.http_port, ray_address=address)
        await _until_signal()
    finally:
        await stack.stop(grace_s=1.0)


async def run_extra_gateway(config_path: str) -> None:
    await run_gateway(config_path, extra=True)


async def run_plain(config_path: str) -> None:
    from core.config import load_config
    from load_tests.baselines import start_plain_server

    server, port = await start_plain_server(0, load_config(config_path))
    _ready(port)
    await _until_signal()
    await server.stop(1.0)


async def run_serve_proxy(config_path: str) -> None:
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from load_tests.baselines import ServeProxyEcho

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    port = free_port()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        namespace="aigc-bench-proxy",
        _metrics_export_port=free_port(),
    )
    try:
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": "127.0.0.1", "port": free_port()},
            grpc_options=gRPCOptions(port=port, grpc_servicer_functions=SERVE_PROXY_SERVICERS),
        )
        deployment: Any = serve.deployment(
            ServeProxyEcho,
            name="echo",
            max_ongoing_requests=256,
            max_queued_requests=-1,
            ray_actor_options={"num_cpus": 0.5},
        )
        await asyncio.to_thread(serve.run, deployment.bind(), name="echo", route_prefix="/echo")
        _ready(port)
        await _until_signal()
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


class _EchoTextReplica:
    """The text echo engine behind a direct port, as a replica's `generate` is."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def generate(self, request: Any) -> Any:
        return await self.engine.generate(request)


async def run_relay_backend(config_path: str) -> None:
    from core.config import Modality, load_config
    from core.registry import engine_class
    from services.direct import DirectServer

    model = load_config(config_path).default_model(Modality.TEXT)
    assert model is not None
    engine = engine_class("text", model.engine)(model)
    await engine.start()
    server = DirectServer(_EchoTextReplica(engine), model.name)
    endpoint = await server.start("127.0.0.1", "relay", "")
    print(endpoint.to_json().decode(), flush=True)
    await _until_signal()
    await server.drain(1.0)


async def run_relay(config_path: str) -> None:
    import uuid

    from aigc.v1 import text_pb2_grpc
    from core.config import Modality, load_config
    from core.direct import Endpoint
    from core.replica import TextReplica
    from gateway import convert
    from gateway.direct import DirectReplicas
    from gateway.replicas import ReplicaHandle

    cmd = [sys.executable, "-m", "load_tests.servers", "relay-backend", "--config", config_path]
    backend = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    model = load_config(config_path).default_model(Modality.TEXT)
    assert model is not None
    text_model = model
    try:
        assert backend.stdout is not None
        endpoint = Endpoint.from_json(await backend.stdout.readline())
        direct = DirectReplicas(model.name)
        direct.update([endpoint], dead=set())
        for _ in range(500):  # connected within CONNECT_S
            if direct.pick() is not None:
                break
            await asyncio.sleep(0.01)
        replica = ReplicaHandle(None, direct)

        class Text(text_pb2_grpc.TextGenerationServicer):
            async def Generate(self, request: Any, context: Any) -> Any:
                domain = convert.text_request(request, text_model, uuid.uuid4().hex, None)
                return convert.text_response(await replica.unary(TextReplica.generate, domain))

        import grpc

        server = grpc.aio.server()
        text_pb2_grpc.add_TextGenerationServicer_to_server(Text(), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        _ready(port)
        await _until_signal()
        await server.stop(1.0)
    finally:
        backend.terminate()
        await backend.wait()


KINDS: dict[str, Callable[[str], Coroutine[Any, Any, None]]] = {
    "relay": run_relay,
    "relay-backend": run_relay_backend,
    "gateway": run_gateway,
    "extra-gateway": run_extra_gateway,
    "plain": run_plain,
    "serve-proxy": run_serve_proxy,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.servers")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--config", default=str(BENCH_CONFIG))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(KINDS[args.kind](args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
