"""Shared fixtures. `stack` starts the real local stack once per test session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings

from load_tests.procs import free_port
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)

T = TypeVar("T")
# Serve reads its settings once, when ray.serve is first imported; which test imports it first
# must not change them. The stack turns on RAY_SERVE_THROUGHPUT_OPTIMIZED (as `aigc up` does),
# which also runs a handle's router on the loop of its first caller. Tests call handles from
# their own threads and run extra gateways on their own loops in this one process (Serve
# caches handles per process), so here the router keeps its own loop, as Serve's default does.
# `aigc up` itself (one gateway, one loop) runs in tests/integration/test_up_shutdown.py.
os.environ.setdefault("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "1")
# CI replays the same fuzz examples every run (a failure there is reproducible); local runs
# explore new ones and keep failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


class LoopThread:
    """An event loop on its own thread: the gateway keeps serving while tests block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@contextlib.contextmanager
def started_stack(config: Any, ray_metrics_port: int, ready_s: float) -> Iterator[Any]:
    """A Stack (Ray + every Serve app + gateway) on free ports, started on a loop thread
    of its own (`.runner` runs coroutines there) and stopped at the end."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from control.stack import Stack

    local = Stack(config, port=0, metrics_port=0, http_port=0, ray_metrics_port=ray_metrics_port)
    runner = LoopThread()
    local.runner = runner  # type: ignore[attr-defined]
    try:
        runner.run(local.start(timeout_s=ready_s), timeout=ready_s + 60)
        yield local
    finally:
        runner.run(local.stop(grace_s=1), timeout=180)
        runner.close()


@pytest.fixture(scope="session")
def stack(tiny_dir: Path) -> Iterator[Any]:
    """The integration stack (tests/tiny_models.py's models), once per session."""
    from core.config import parse_config
    from tests.tiny_models import stack_config

    config = parse_config(stack_config(tiny_dir), source="tests")
    with started_stack(config, free_port(), ready_s=600) as local:
        yield local


@pytest.fixture(scope="session")
def target(stack: Any) -> str:
    return f"127.0.0.1:{stack.gateway.port}"


@pytest.fixture()
def client(target: str) -> Iterator[Any]:
    from aigc import Client

    with Client(target, timeout=60) as c:
        yield c
