"""API keys and per-key rate limits, as one server interceptor.

Keys come from a file or an environment variable (never from the config file itself), are
compared in constant time, and never appear in logs or metrics: a caller is known by the key's
name. Health checks stay open so load balancers and kubelets can probe without a key.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from aigc.config import SecurityConfig
from gateway.metrics import GatewayMetrics

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


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
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> float:
        """0 when allowed, else seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def _deny(code: grpc.StatusCode, message: str, retry_after: float | None = None) -> Any:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if retry_after is not None:
        delay = duration_pb2.Duration(seconds=int(retry_after), nanos=int(retry_after % 1 * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(rpc_status.to_status(status))

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(rpc_status.to_status(status))
        yield  # pragma: no cover - makes this an async generator

    return unary, stream


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, security: SecurityConfig, metrics: GatewayMetrics) -> None:
        self.keys = load_keys(security) if security.auth_enabled else {}
        self.rate = security.rate_limit_per_s
        self.burst = security.rate_limit_burst
        self.buckets: dict[str, TokenBucket] = {}
        self.metrics = metrics

    def _who(self, metadata: dict[str, str]) -> str | None:
        header = metadata.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = None
        for name, key in self.keys.items():  # check every key: timing does not reveal which
            if hmac.compare_digest(presented.encode(), key.encode()):
                found = name
        return found

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method or ""  # type: ignore[attr-defined]
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}  # type: ignore[attr-defined]
        caller = "anonymous"
        if self.keys:
            who = self._who(metadata)
            if who is None:
                self.metrics.rejected.labels("unauthenticated").inc()
                reason = "missing" if "authorization" not in metadata else "invalid"
                return self._replace(handler, _deny(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{reason} API key: send 'authorization: Bearer <key>'",
                ))  # fmt: skip
            caller = who
        if self.rate:
            bucket = self.buckets.setdefault(caller, TokenBucket(self.rate, self.burst))
            wait = bucket.take()
            if wait:
                self.metrics.rejected.labels("rate_limited").inc()
                return self._replace(handler, _deny(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit of {self.rate:g} requests/s exceeded", retry_after=wait,
                ))  # fmt: skip
        return handler

    @staticmethod
    def _replace(handler: grpc.RpcMethodHandler, deny: Any) -> grpc.RpcMethodHandler:
        unary, stream = deny
        h: Any = handler
        if h.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                stream, h.request_deserializer, h.response_serializer
            )
        return grpc.unary_unary_rpc_method_handler(
            unary, h.request_deserializer, h.response_serializer
        )
