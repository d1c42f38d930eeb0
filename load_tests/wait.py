"""The one bounded wait of load_tests: poll an explicit condition until it holds or time is up.

The tests have their own (tests/conditions.py); nothing here imports tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    step_s: float = 0.2,
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
) -> T | None:
    """Polls predicate() until it returns something truthy (returned) or timeout_s passes (its
    last value returned). An exception of a `retry_on` type counts as "not yet" (the default,
    OSError: a process not listening yet, an HTTP error while it starts); any other propagates.
    """
    end = time.monotonic() + timeout_s
    while True:
        value: T | None
        try:
            value = predicate()
        except retry_on:
            value = None
        if value or time.monotonic() >= end:
            return value
        time.sleep(step_s)
