"""Errors that cross the Ray boundary. Each class carries its gRPC status code name.

The gateway maps them with one table (`gateway.errors`). They pickle by value: Ray re-raises
them in the caller as instances of the same class.
"""

from __future__ import annotations

from typing import Any


class AigcError(Exception):
    """Base class; unknown subclasses map to INTERNAL."""

    code = "INTERNAL"

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.field, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[AigcError], message: str, field: str | None, details: dict[str, Any]) -> Any:
    return cls(message, field, **details)


class InvalidArgument(AigcError):
    """A request field is malformed or out of range; `field` names it."""

    code = "INVALID_ARGUMENT"


class ModelNotFound(AigcError):
    """No model is served by that name or alias."""

    code = "NOT_FOUND"


class Overloaded(AigcError):
    """Admission or queue full; `retry_after_s` in details is a hint for the client."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(AigcError):
    """Replica not ready, draining or dead: the one retriable error."""

    code = "UNAVAILABLE"


class DeadlineExceeded(AigcError):
    """The client's deadline passed before or while the work ran: it is dropped, not done."""

    code = "DEADLINE_EXCEEDED"


class Unauthenticated(AigcError):
    """No valid API key (raised by `gateway.auth`)."""

    code = "UNAUTHENTICATED"
