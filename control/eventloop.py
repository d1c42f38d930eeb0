"""The event loop a gateway process runs on: uvloop, as Ray's own workers (and so every Serve
replica) do, unless AIGC_UVLOOP=0 asks for asyncio's standard loop. The gateway is one event
loop that carries two gRPC servers' worth of calls (the client's and Serve's to the replica);
what the loop costs per callback is paid several times per request (BENCHMARKS.md section 12)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (the standard loop): off with AIGC_UVLOOP=0 or when
    uvloop is not installed."""
    if os.environ.get("AIGC_UVLOOP", "1") == "0":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
