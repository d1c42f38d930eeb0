"""Typed calls to a model's Serve deployment: `ReplicaHandle.unary(TextReplica.generate, req)`
names the method by the replica protocol (`core.replica`), so the arguments and the result are
checked by mypy, and a method that does not exist is an error before anything runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from gateway.direct import DirectReplicas

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Pending(Protocol[R_co]):
    """A unary Serve response: awaited for the result, or cancelled (which reaches the replica)."""

    def __await__(self) -> Generator[Any, None, R_co]: ...

    def cancel(self) -> None: ...


class Streaming(Protocol[R_co]):
    """A streaming Serve response: iterated for the chunks, or cancelled."""

    def __aiter__(self) -> AsyncIterator[R_co]: ...

    def cancel(self) -> None: ...


class ReplicaHandle:
    """Wraps a DeploymentHandle (or the tests' stand-in for one), and the model's direct
    endpoints when it has them (`gateway.direct`; a model's `transport`): a call goes to an
    endpoint when there is one, else through Serve. The Serve handle of each method is made
    once: `handle.method` builds a new handle (`options(method_name=...)`) on every access,
    which was 1% of the gateway's CPU per unary call (BENCHMARKS.md section 12)."""

    def __init__(self, handle: Any, direct: DirectReplicas | None = None) -> None:
        self.handle = handle
        self.direct = direct
        self._streaming_handle: Any = None
        self._unary: dict[str, Any] = {}
        self._streaming: dict[str, Any] = {}

    def unary(
        self, method: Callable[Concatenate[Any, P], Awaitable[R]], *args: P.args, **kw: P.kwargs
    ) -> Pending[R]:
        direct = self.direct
        if direct is not None and (conn := direct.pick()) is not None:
            return direct.unary(conn, (method.__name__, args, kw), self._serve_unary)
        return self._serve_unary((method.__name__, args, kw))

    def stream(
        self, method: Callable[Concatenate[Any, P], AsyncIterator[R]], *args: P.args, **kw: P.kwargs
    ) -> Streaming[R]:
        direct = self.direct
        if direct is not None and (conn := direct.pick()) is not None:
            return direct.stream(conn, (method.__name__, args, kw), self._serve_stream)
        return self._serve_stream((method.__name__, args, kw))

    def _serve_unary(self, request: tuple[str, tuple[Any, ...], dict[str, Any]]) -> Any:
        name, args, kw = request
        bound = self._unary.get(name)
        if bound is None:
            bound = self._unary[name] = getattr(self.handle, name)
        return bound.remote(*args, **kw)

    def _serve_stream(self, request: tuple[str, tuple[Any, ...], dict[str, Any]]) -> Any:
        name, args, kw = request
        bound = self._streaming.get(name)
        if bound is None:
            if self._streaming_handle is None:
                self._streaming_handle = self.handle.options(stream=True)
            bound = self._streaming[name] = getattr(self._streaming_handle, name)
        return bound.remote(*args, **kw)
