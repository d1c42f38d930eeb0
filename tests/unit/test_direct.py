"""Direct calls (core.direct): a replica's direct port (services.direct) and the gateway's
calls to it (gateway.direct through gateway.replicas.ReplicaHandle), over real grpc.aio on
loopback, without Ray: results and errors as the method gave them, cancellation reaching the
method, and every way a call goes through Serve instead (draining, a stale token, a closed
port) or fails as a lost replica (broken off mid-call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.direct import Endpoint, port_range
from core.errors import InvalidArgument
from gateway import direct as direct_module
from gateway.calls import relay_unary
from gateway.direct import DirectReplicas
from gateway.errors import ReplicaLost, classify, replica_lost
from gateway.replicas import ReplicaHandle
from services.direct import DirectServer


@pytest.fixture(autouse=True)
def quick_connect(monkeypatch):
    """A closed port is given up on after CONNECT_S (grpc keeps retrying a refused connection
    until then): short here, so the tests about one take no 5 s each."""
    monkeypatch.setattr(direct_module, "CONNECT_S", 0.5)


class Target:
    """The replica's methods (as a deployment class has them)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def add(self, a: int, b: int = 0) -> int:
        return a + b

    async def refuse(self) -> None:
        raise InvalidArgument("prompt is empty", field="prompt")

    async def hang(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise InvalidArgument("ran out", field="n")

    async def count_forever(self) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            self.cancelled.set()


class ServeStandIn:
    """Serve's handle, as the fallback sees it: records which calls went through it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.calls: list[str] = []

    def options(self, **_: Any) -> ServeStandIn:
        return self

    def __getattr__(self, name: str) -> Any:
        standin = self

        class Bound:
            def remote(self, *args: Any, **kw: Any) -> Any:
                standin.calls.append(name)
                return _Response(getattr(standin.target, name)(*args, **kw))

        return Bound()


class _Response:
    def __init__(self, work: Any) -> None:
        self.work = work

    def __await__(self) -> Any:
        return self.work.__await__()

    def __aiter__(self) -> Any:
        return self.work

    def cancel(self) -> None:
        pass


async def _replica(target: Target) -> tuple[DirectServer, Endpoint]:
    server = DirectServer(target, "m")
    endpoint = await server.start("127.0.0.1", "r1", "actor-r1")
    return server, endpoint


async def _handle(target: Target, *endpoints: Endpoint) -> tuple[ReplicaHandle, ServeStandIn]:
    """A handle whose pool has the endpoints, once each has connected or failed to."""
    serve = ServeStandIn(target)
    direct = DirectReplicas("m")
    direct.update(list(endpoints), dead=set())
    assert await _until(lambda: all(c.ready for c in direct.live.values()))
    return ReplicaHandle(serve, direct), serve


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_unary_results_and_errors_come_back_as_the_method_gave_them() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        handle, serve = await _handle(target, endpoint)
        assert await handle.unary(Target.add, 2, b=3) == 5
        with pytest.raises(InvalidArgument) as err:
            await handle.unary(Target.refuse)
        assert classify(err.value).field == "prompt"
        assert serve.calls == [] and server.calls == 2
        await server.drain(1)

    run(main())


def test_streams_carry_items_then_the_methods_error() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        handle, serve = await _handle(target, endpoint)
        got = []
        with pytest.raises(InvalidArgument, match="ran out"):
            async for item in handle.stream(Target.count, 3):
                got.append(item)
        assert got == [0, 1, 2] and serve.calls == []
        await server.drain(1)

    run(main())


def test_cancelling_a_call_cancels_the_method_on_the_replica() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        handle, _ = await _handle(target, endpoint)
        task = asyncio.ensure_future(relay_unary(handle.unary(Target.hang)))
        await target.started.wait()
        task.cancel()
        await asyncio.wait_for(target.cancelled.wait(), 10)
        assert server.inflight == 0 or await _until(lambda: server.inflight == 0)

        target.cancelled.clear()
        stream = handle.stream(Target.count_forever)
        items = stream.__aiter__()
        assert await items.__anext__() == 0
        stream.cancel()
        await asyncio.wait_for(target.cancelled.wait(), 10)  # the generator's finally ran
        await server.drain(1)

    run(main())


def test_a_draining_replica_sends_new_calls_through_serve() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        handle, serve = await _handle(target, endpoint)
        server.draining = True
        assert [i async for i in _items(handle, 2)] == [0, 1]
        assert serve.calls == ["count"]
        assert handle.direct is not None and handle.direct.live == {}  # until the next update
        handle, serve = await _handle(target, endpoint)
        assert await handle.unary(Target.add, 1, b=1) == 2
        assert serve.calls == ["add"] and server.calls == 0
        await server.drain(1)

    run(main())


async def _items(handle: ReplicaHandle, n: int) -> AsyncIterator[int]:
    try:
        async for item in handle.stream(Target.count, n):
            yield item
    except InvalidArgument:
        return


def test_a_stale_token_or_a_closed_port_goes_through_serve() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        stale = Endpoint("m", "r1", endpoint.address, "not-the-token", "actor-r1")
        handle, serve = await _handle(target, stale)
        assert await handle.unary(Target.add, 4) == 4
        assert serve.calls == ["add"] and server.calls == 0
        await server.drain(1)  # the port is closed now
        handle, serve = await _handle(target, endpoint)
        assert await handle.unary(Target.add, 5) == 5
        assert serve.calls == ["add"]
        assert handle.direct is not None and list(handle.direct.down) == [endpoint.key]

    run(main())


def test_a_call_broken_off_midway_is_a_lost_replica() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        handle, serve = await _handle(target, endpoint)
        pending = handle.unary(Target.hang)
        await target.started.wait()
        assert server._server is not None
        await server._server.stop(grace=None)  # the replica's process goes away
        with pytest.raises(ReplicaLost) as err:
            await pending
        assert replica_lost(err.value) and classify(err.value).code == "UNAVAILABLE"
        assert serve.calls == []

    run(main())


def test_the_pool_follows_the_registry_and_routes_to_the_less_loaded() -> None:
    async def main() -> None:
        (sa, a), (sb, b) = await _replica(Target()), await _replica(Target())
        a, b = (
            Endpoint("m", "a", a.address, a.token, "x"),
            Endpoint("m", "b", b.address, b.token, "y"),
        )
        pool = DirectReplicas("m")
        assert pool.unknown([a, b]) == [a, b]
        pool.update([a, b], dead={"m/b"})
        assert list(pool.live) == ["m/a"] and pool.unknown([a]) == []
        pool.update([a, b], dead=set())
        assert await _until(lambda: pool.pick() is not None and len(pool._pool) == 2)
        conn_a, conn_b = pool.live["m/a"], pool.live["m/b"]
        conn_a.inflight = 3
        assert {pool.pick() for _ in range(20)} == {conn_b}
        pool.failed(conn_b)
        assert pool.pick() is conn_a and pool.unknown([a, b]) == [b]
        pool.update([a], dead=set())  # b deregistered
        assert list(pool.live) == ["m/a"] and pool.down == {}
        conn_a.inflight = 0
        await sa.drain(1)
        await sb.drain(1)

    run(main())


def test_an_unreachable_port_never_takes_a_call() -> None:
    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        await server.drain(1)  # nothing listens there now
        handle, serve = await _handle(target, endpoint)
        assert handle.direct is not None and handle.direct.pick() is None
        assert list(handle.direct.down) == [endpoint.key]
        assert await handle.unary(Target.add, 1) == 1 and serve.calls == ["add"]

    run(main())


def test_a_dropped_endpoint_finishes_the_calls_it_has() -> None:
    """Dropping an endpoint (deregistered, or another call failed on it) must not cancel the
    calls still open on its channel: they end when the replica answers."""

    async def main() -> None:
        target = Target()
        server, endpoint = await _replica(target)
        handle, _ = await _handle(target, endpoint)
        stream = handle.stream(Target.count_forever)
        items = stream.__aiter__()
        assert await items.__anext__() == 0
        assert handle.direct is not None
        handle.direct.update([], dead=set())  # deregistered while the stream runs
        assert handle.direct.pick() is None
        assert [await items.__anext__() for _ in range(50)] == list(range(1, 51))
        stream.cancel()
        await server.drain(1)

    run(main())


def test_two_replicas_never_share_a_port(monkeypatch) -> None:
    """grpc lets two servers bind one port (SO_REUSEPORT) unless told not to; replicas of one
    pod take the ports of AIGC_DIRECT_PORTS in turn."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        first = probe.getsockname()[1]
    monkeypatch.setenv("AIGC_DIRECT_PORTS", f"{first}-{first + 1}")

    async def main() -> None:
        (s1, e1), (s2, e2) = await _replica(Target()), await _replica(Target())
        assert {e1.address, e2.address} == {f"127.0.0.1:{first}", f"127.0.0.1:{first + 1}"}
        with pytest.raises(RuntimeError, match="no free port"):
            await _replica(Target())
        await s1.drain(1)
        await s2.drain(1)

    run(main())


def test_port_ranges() -> None:
    assert port_range(None) == range(0, 1)
    assert port_range("10200-10202") == range(10200, 10203)
    with pytest.raises(ValueError, match="AIGC_DIRECT_PORTS"):
        port_range("10-5")


async def _until(predicate: Any) -> bool:
    for _ in range(1000):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False
