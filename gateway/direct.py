"""Direct calls to a model's replicas (core.direct; a model's `transport`): the endpoints the
replicas registered, a channel to each, and the calls made on them, routed to the less loaded
of two endpoints (as Serve's router picks). `gateway.replicas.ReplicaHandle` makes a call here
when the model has an endpoint, else through Serve; so does a call an endpoint refused before
starting it (the replica drains, or its port is gone), which is safe to send again.

A call that fails once started, because the replica died or its node went away, raises
`ReplicaLost`: the data plane treats it as it treats Ray's actor errors (a unary call that may
be repeated is retried, a stream ends UNAVAILABLE saying how far it got)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import grpc

from core.direct import (
    CALL,
    CLIENT_OPTIONS,
    DRAINING,
    NAMESPACE,
    STREAM,
    TOKEN_HEADER,
    Endpoint,
    dumps,
    loads,
)
from gateway.errors import ReplicaLost

logger = logging.getLogger("aigc.gateway")
CONNECT_S = 5.0  # a new endpoint's channel must connect within this to take calls
# One call: (method name, args, kwargs); and Serve's path for it, which returns a Serve response.
Request = tuple[str, tuple[Any, ...], dict[str, Any]]
Fallback = Callable[[Request], Any]


def _identity(raw: bytes) -> bytes:
    return raw


class Connection:
    """One replica's endpoint: its channel, its two methods, the calls in flight on it. It
    takes calls once connected (`ready`); once retired it takes none, and its channel closes
    when its last call ends (closing a channel cancels the calls on it)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.channel = grpc.aio.insecure_channel(endpoint.address, options=CLIENT_OPTIONS)
        self.call = self.channel.unary_unary(
            CALL, request_serializer=_identity, response_deserializer=_identity
        )
        self.stream = self.channel.unary_stream(
            STREAM, request_serializer=_identity, response_deserializer=_identity
        )
        self.metadata = ((TOKEN_HEADER, endpoint.token),)
        self.inflight = 0
        self.ready = False
        self.retired = False

    def started(self, call: grpc.aio.Call) -> None:
        self.inflight += 1
        call.add_done_callback(self._finished)

    def _finished(self, _: Any) -> None:
        self.inflight -= 1
        if self.retired and self.inflight == 0:
            self._close()

    def retire(self) -> None:
        self.retired, self.ready = True, False
        if self.inflight == 0:
            self._close()

    def _close(self) -> None:
        _background(self.channel.close())


_TASKS: set[asyncio.Task[Any]] = set()


def _background(work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _TASKS.add(task)  # held until done (the loop keeps only weak references)
    task.add_done_callback(_TASKS.discard)


class DirectReplicas:
    """One model's direct endpoints. `update` (the status loop) adds and removes them; a new
    one takes calls once its channel has connected (within CONNECT_S; a port that cannot be
    reached never stalls a call); endpoints that failed wait in `down` until the next update
    tells whether their replica still lives."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.live: dict[str, Connection] = {}
        self.down: dict[str, Endpoint] = {}
        self._pool: list[Connection] = []

    def pick(self) -> Connection | None:
        pool = self._pool
        if len(pool) < 2:
            return pool[0] if pool else None
        a, b = random.sample(pool, 2)
        return a if a.inflight <= b.inflight else b

    def unknown(self, endpoints: list[Endpoint]) -> list[Endpoint]:
        """The endpoints `update` would need to ask about: new ones, and failed ones."""
        return [
            e for e in endpoints
            if e.key in self.down or (c := self.live.get(e.key)) is None or c.endpoint != e
        ]  # fmt: skip

    def update(self, endpoints: list[Endpoint], dead: set[str]) -> None:
        """The registered endpoints now; `dead`: keys of those (of `unknown`) whose replica
        is gone (a replica killed outright leaves its entry behind)."""
        seen = {e.key: e for e in endpoints if e.key not in dead}
        for key in [k for k in self.live if k not in seen]:
            self.live.pop(key).retire()
        for key, endpoint in seen.items():
            known = self.live.get(key)
            if known is not None and known.endpoint == endpoint:
                continue
            if known is not None:
                known.retire()
            conn = self.live[key] = Connection(endpoint)
            _background(self._connect(conn))
        self.down.clear()  # failed ones whose replica lives get another try; the rest are gone
        self._pool = [c for c in self.live.values() if c.ready]

    async def _connect(self, conn: Connection) -> None:
        try:
            await asyncio.wait_for(conn.channel.channel_ready(), CONNECT_S)
        except Exception:
            self.failed(conn)
            return
        if self.live.get(conn.endpoint.key) is conn:
            conn.ready = True
            self._pool = [c for c in self.live.values() if c.ready]

    def failed(self, conn: Connection) -> None:
        """No more calls to this endpoint until an update finds its replica alive."""
        key = conn.endpoint.key
        if self.live.get(key) is conn:
            self.live.pop(key).retire()
            self.down[key] = conn.endpoint
            self._pool = [c for c in self.live.values() if c.ready]

    def unary(self, conn: Connection, request: Request, fallback: Fallback) -> DirectUnary:
        return DirectUnary(self, conn, request, fallback)

    def stream(self, conn: Connection, request: Request, fallback: Fallback) -> DirectStream:
        return DirectStream(self, conn, request, fallback)


def _not_started(exc: grpc.aio.AioRpcError) -> bool:
    """The replica refused the call before running anything (draining, a token it no longer
    has), or no connection could be made: the call may go elsewhere as it is."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.FAILED_PRECONDITION and details == DRAINING:
        return True
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return True
    return code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in details.lower()


class _DirectCall:
    """What both kinds of direct call share: the gRPC call, made at once (as a Serve call
    starts when made), the Serve response that replaces it when it is refused before starting,
    and `cancel`, which cancels whichever is running (and so the method on the replica)."""

    def __init__(
        self, owner: DirectReplicas, conn: Connection, request: Request, fallback: Fallback,
        invoke: Any,
    ) -> None:  # fmt: skip
        self._owner, self._conn, self._fallback = owner, conn, fallback
        self._request = request
        self._call = invoke(dumps(request), metadata=conn.metadata)
        conn.started(self._call)
        self._instead: Any = None  # the Serve response, when the call went through Serve
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()
        if self._instead is not None:
            self._instead.cancel()

    def _lost(self, exc: grpc.aio.AioRpcError) -> ReplicaLost:
        self._owner.failed(self._conn)
        return ReplicaLost(exc.details() or "")


class DirectUnary(_DirectCall):
    """A unary direct call: awaited for the method's result (or its error)."""

    def __init__(
        self, owner: DirectReplicas, conn: Connection, request: Request, fallback: Fallback
    ) -> None:
        super().__init__(owner, conn, request, fallback, conn.call)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            raw = await self._call
        except grpc.aio.AioRpcError as exc:
            if _not_started(exc):
                self._owner.failed(self._conn)
                if self._cancelled:  # cancelled while the refusal came back
                    raise asyncio.CancelledError from exc
                self._instead = self._fallback(self._request)
                return await self._instead
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise self._lost(exc) from exc
            raise
        ok, value = loads(raw)
        if not ok:
            raise value
        return value


class DirectStream(_DirectCall):
    """A streaming direct call: iterated for the method's items; an error the method raised
    ends the iteration with that error."""

    def __init__(
        self, owner: DirectReplicas, conn: Connection, request: Request, fallback: Fallback
    ) -> None:
        super().__init__(owner, conn, request, fallback, conn.stream)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items()

    async def _items(self) -> AsyncIterator[Any]:
        first = True
        try:
            async for raw in self._call:
                first = False
                ok, value = loads(raw)
                if not ok:
                    raise value
                yield value
            return
        except grpc.aio.AioRpcError as exc:
            if not (first and _not_started(exc)):
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    raise self._lost(exc) from exc
                raise
            self._owner.failed(self._conn)
        if self._cancelled:
            return
        self._instead = self._fallback(self._request)
        async for item in self._instead:
            yield item


def read_endpoints() -> dict[str, list[Endpoint]]:
    """Every registered endpoint, by model (blocking: Ray's key-value store)."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_list

    found: dict[str, list[Endpoint]] = {}
    for key in _internal_kv_list("", namespace=NAMESPACE):
        raw = _internal_kv_get(key, namespace=NAMESPACE)
        if raw is None:
            continue  # deregistered since the listing
        with contextlib.suppress(Exception):  # an entry we cannot read is not ours to use
            endpoint = Endpoint.from_json(raw)
            found.setdefault(endpoint.model, []).append(endpoint)
    return found


def dead_replicas(endpoints: list[Endpoint]) -> set[str]:
    """Keys of the endpoints whose replica's actor is gone, whose entries are deleted
    (blocking: asks Ray's GCS)."""
    import ray
    from ray.experimental.internal_kv import _internal_kv_del

    dead = set()
    for endpoint in endpoints:
        try:
            ray.get_actor(endpoint.actor, namespace="serve")
        except ValueError:
            dead.add(endpoint.key)
            with contextlib.suppress(Exception):
                _internal_kv_del(endpoint.key, namespace=NAMESPACE)
            logger.info("direct endpoint %s: its replica is gone", endpoint.address)
    return dead
