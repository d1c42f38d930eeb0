"""The project's errors and the one status table: each error class carries its canonical
code (google.rpc.Code name), and `HTTP_STATUS` gives each code its HTTP status and OpenAI error
type. A `Failure` is what a client is told, whichever front end renders it.

The errors cross the Ray boundary: they pickle by value, and Ray re-raises them in the caller
as instances of the same class. `gateway.errors` classifies Ray's own exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RETRY_AFTER_S = 1.0  # the retry hint when nothing better is known

# Canonical code -> (HTTP status, OpenAI error type). Never 409: the pre-1.0 openai client
# retries it forever. 499 is nginx's "client closed request" (nobody reads it; logs do).
HTTP_STATUS: dict[str, tuple[int, str]] = {
    "OK": (200, ""),
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "CANCELLED": (499, "cancelled"),
    "INTERNAL": (500, "server_error"),
    "UNAVAILABLE": (503, "service_unavailable_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
}


@dataclass(frozen=True)
class Failure:
    """What a client is told about an exception: transport-neutral."""

    code: str  # google.rpc.Code name, e.g. "INVALID_ARGUMENT"
    message: str
    field: str | None = None
    retry_after_s: float | None = None  # set for RESOURCE_EXHAUSTED
    http_override: int | None = None  # an error class's own HTTP status (413), else the table's

    @property
    def http_status(self) -> int:
        return self.http_override or HTTP_STATUS.get(self.code, (500, ""))[0]

    @property
    def error_type(self) -> str:
        return HTTP_STATUS.get(self.code, (500, "server_error"))[1]


class AigcError(Exception):
    """Base class; unknown subclasses map to INTERNAL."""

    code = "INTERNAL"
    http_status: int | None = None  # where HTTP says more than the code's status (413)

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


class TooLarge(InvalidArgument):
    """A request body over `gateway.max_message_mb` (HTTP 413; gRPC enforces its own limit)."""

    http_status = 413


class ClientGone(AigcError):
    """The client closed the connection before the answer was ready."""

    code = "CANCELLED"


class ModelNotFound(AigcError):
    """No model is served by that name or alias."""

    code = "NOT_FOUND"


class NotFound(AigcError):
    """A stored object (a file, a batch) does not exist."""

    code = "NOT_FOUND"


class FailedPrecondition(AigcError):
    """The object is not in a state that allows this (deleting a batch that still runs)."""

    code = "FAILED_PRECONDITION"


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
