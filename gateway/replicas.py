"""Typed calls to a model's Serve deployment: `ReplicaHandle.unary(TextReplica.generate, req)`
names the method by the replica protocol (`core.replica`), so the arguments and the result are
checked by mypy, and a method that does not exist is an error before anything runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

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
    """Wraps a DeploymentHandle (or the tests' stand-in for one)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self._streaming: Any = None

    def unary(
        self, method: Callable[Concatenate[Any, P], Awaitable[R]], *args: P.args, **kw: P.kwargs
    ) -> Pending[R]:
        response: Pending[R] = getattr(self.handle, method.__name__).remote(*args, **kw)
        return response

    def stream(
        self, method: Callable[Concatenate[Any, P], AsyncIterator[R]], *args: P.args, **kw: P.kwargs
    ) -> Streaming[R]:
        if self._streaming is None:
            self._streaming = self.handle.options(stream=True)
        response: Streaming[R] = getattr(self._streaming, method.__name__).remote(*args, **kw)
        return response
