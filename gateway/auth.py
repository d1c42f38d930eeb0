"""API keys and per-key rate limits, shared by both front ends.

Keys come from a file or an environment variable (never from the config file itself), are
compared in constant time, and never appear in logs or metrics: a caller is known by the key's
name. Each front end passes the `authorization` header it received (gRPC metadata or HTTP
header) to `Authenticator.check`, which raises the project's errors; health checks stay open so
load balancers and kubelets can probe without a key.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from core.config import SecurityConfig
from core.errors import Overloaded, Unauthenticated

ANONYMOUS = "anonymous"


def load_keys(security: SecurityConfig) -> dict[str, str]:
    """name -> key, from the file and/or the environment variable."""
    keys: dict[str, str] = {}
    if security.api_keys_file:
        data = yaml.safe_load(Path(security.api_keys_file).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{security.api_keys_file}: expected lines of 'name: key'")
        keys.update({str(k): str(v) for k, v in data.items()})
    if security.api_keys_env:
        for item in filter(None, os.environ.get(security.api_keys_env, "").split(",")):
            name, _, key = item.partition(":")
            keys[name.strip()] = key.strip()
    empty = [n for n, k in keys.items() if len(k) < 16]
    if empty:
        raise ValueError(f"API keys must have at least 16 characters: {empty}")
    return keys


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> float:
        """0 when allowed, else seconds until a token is available."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Authenticator:
    """Who is calling (by key name) and whether they are within their rate."""

    def __init__(
        self, security: SecurityConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keys = load_keys(security) if security.auth_enabled else {}
        self.rate = security.rate_limit_per_s
        self.burst = security.rate_limit_burst
        self.clock = clock  # the rate buckets' clock (tests pass their own)
        self.buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.keys or self.rate)

    def who(self, authorization: str | None) -> str | None:
        """The key's name for an `authorization: Bearer KEY` value, else None."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = None
        for name, key in self.keys.items():  # check every key: timing does not reveal which
            if hmac.compare_digest(presented.strip().encode(), key.encode()):
                found = name
        return found

    def identify(self, authorization: str | None) -> str:
        """The caller's name; raises Unauthenticated. No rate limit (see `check`)."""
        if not self.keys:
            return ANONYMOUS
        who = self.who(authorization)
        if who is None:
            reason = "missing" if not authorization else "invalid"
            raise Unauthenticated(
                f"{reason} API key: send 'authorization: Bearer <key>'",
                reason="unauthenticated",
            )
        return who

    def check(self, authorization: str | None) -> str:
        """The caller's name; raises Unauthenticated, or Overloaded past the caller's rate."""
        caller = self.identify(authorization)
        if self.rate:
            bucket = self.buckets.get(caller)
            if bucket is None:
                bucket = self.buckets[caller] = TokenBucket(self.rate, self.burst, self.clock)
            wait = bucket.take()
            if wait:
                raise Overloaded(
                    f"rate limit of {self.rate:g} requests/s exceeded",
                    retry_after_s=wait,
                    reason="rate_limited",
                )
        return caller
