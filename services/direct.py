"""A replica's direct port (core.direct): its request methods served over gRPC to the gateway,
beside Serve's own path to the same methods, so a call skips Serve's router and request wrapper
(BENCHMARKS.md section 12). The methods run on the replica's event loop as Serve's calls do:
`@serve.batch` batches both kinds together, and a cancelled call (the gateway's client went
away, or its deadline passed) cancels the method as Serve's cancellation does."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc

from core.direct import (
    CALL_METHOD,
    DRAINING,
    NAMESPACE,
    PORTS_ENV,
    SERVER_OPTIONS,
    SERVICE,
    STREAM_METHOD,
    TOKEN_HEADER,
    Endpoint,
    dumps,
    loads,
    port_range,
)
from core.errors import AigcError

logger = logging.getLogger("aigc.replica")


def _identity(raw: bytes) -> bytes:
    return raw


class DirectServer:
    """Serves `target`'s public methods on a gRPC port; registers and deregisters it."""

    def __init__(self, target: Any, model: str) -> None:
        self.target = target
        self.model = model
        self.token = secrets.token_hex(16)
        self.endpoint: Endpoint | None = None
        self.draining = False
        self.inflight = 0
        self.calls = 0  # calls served since start (the replica's stats: direct_calls_total)
        self._idle = asyncio.Event()
        self._idle.set()
        self._server: Any = None

    async def start(self, host: str, replica: str, actor: str) -> Endpoint:
        """Binds the first free port of `PORTS_ENV` (any free port when unset) on `host`."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        handlers = {
            CALL_METHOD: grpc.unary_unary_rpc_method_handler(
                self._call, request_deserializer=_identity, response_serializer=_identity
            ),
            STREAM_METHOD: grpc.unary_stream_rpc_method_handler(
                self._stream, request_deserializer=_identity, response_serializer=_identity
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        bound = 0
        for port in port_range(os.environ.get(PORTS_ENV)):
            with contextlib.suppress(RuntimeError):  # taken (grpc raises on a failed bind)
                bound = server.add_insecure_port(f"{host}:{port}")
            if bound:
                break
        if not bound:
            ports = os.environ.get(PORTS_ENV)
            raise RuntimeError(f"no free port for direct calls ({PORTS_ENV}={ports!r})")
        await server.start()
        self._server = server
        self.endpoint = Endpoint(self.model, replica, f"{host}:{bound}", self.token, actor)
        return self.endpoint

    async def drain(self, budget_s: float) -> None:
        """Refuses new calls (the gateway sends them through Serve), finishes those it has
        within `budget_s`, then closes the port."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), budget_s)
        if self._server is not None:
            await self._server.stop(grace=0.5)

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        token = next((v for k, v in context.invocation_metadata() or () if k == TOKEN_HEADER), None)
        if not hmac.compare_digest(token or "", self.token):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad direct-call token")
        if self.draining:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, DRAINING)

    def _method(self, name: str) -> Any:
        method = getattr(self.target, name, None) if not name.startswith("_") else None
        if not callable(method):
            raise AttributeError(f"the replica has no method {name!r}")
        return method

    def _begin(self) -> None:
        self.calls += 1
        self.inflight += 1
        self._idle.clear()

    def _end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def _call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._admit(context)
        self._begin()
        try:
            name, args, kwargs = loads(request)
            return dumps((True, await self._method(name)(*args, **kwargs)))
        except Exception as exc:  # the method's own error, to its caller
            return _failure(exc)
        finally:
            self._end()

    async def _stream(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        await self._admit(context)
        self._begin()
        items: Any = None
        try:
            name, args, kwargs = loads(request)
            items = self._method(name)(*args, **kwargs)
            async for item in items:
                yield dumps((True, item))
        except Exception as exc:
            yield _failure(exc)
        finally:
            if items is not None:
                await items.aclose()  # the method's own cleanup, also when cancelled
            self._end()


def _failure(exc: Exception) -> bytes:
    """An error as its caller gets it: our errors and Python's own as they are (their class is
    their status: core.errors, gateway.errors.classify); anything else (an engine library's
    class the gateway may not have) logged here with its traceback and sent as a RuntimeError
    naming it."""
    if isinstance(exc, AigcError):
        return dumps((False, exc))
    logger.error("direct call failed", exc_info=exc)
    if type(exc).__module__ == "builtins":
        with contextlib.suppress(Exception):
            return dumps((False, exc))
    return dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


async def register(endpoint: Endpoint) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    await asyncio.to_thread(
        _internal_kv_put, endpoint.key, endpoint.to_json(), True, namespace=NAMESPACE
    )


async def deregister(endpoint: Endpoint) -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    await asyncio.to_thread(_internal_kv_del, endpoint.key, namespace=NAMESPACE)
