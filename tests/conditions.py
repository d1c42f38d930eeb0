"""Bounded waits on an explicit condition, for every tier: tests assert the condition, never
the time it took, and never sleep to synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.05
) -> bool:
    """Polls a condition (bounded); returns whether it held."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """wait_until on an event loop: polls between the loop's other work (the engine's scheduler
    runs while this waits), bounded; returns whether the condition held."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()
