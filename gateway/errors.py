"""The one exception -> status table (README, Status codes): a gRPC code and an HTTP status.

Replica errors arrive as Ray exceptions that are also instances of our classes, so one
`isinstance` ladder covers local and remote errors. Unknown errors become INTERNAL with the
request id; the traceback goes to the log, never to the client. Both front ends render a
`Failure` in their own way (`gateway.grpc_api.status`, `gateway.openai_api.http.error_body`).
"""

from __future__ import annotations

import asyncio
import logging

from core.errors import HTTP_STATUS, RETRY_AFTER_S, AigcError, Failure

__all__ = ["HTTP_STATUS", "Failure", "ReplicaLost", "classify", "client_failure", "replica_lost"]

logger = logging.getLogger("aigc.gateway")


def _ray_error_table() -> list[tuple[type[BaseException], str, str]]:
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    table: list[tuple[type[BaseException], str, str]] = [
        (sex.BackPressureError, "RESOURCE_EXHAUSTED", "model queue is full; retry later"),
        (rex.ActorDiedError, "UNAVAILABLE", "model replica was lost (it died); retry"),
        (rex.ActorUnavailableError, "UNAVAILABLE", "model replica is unavailable; retry"),
        (rex.RayActorError, "UNAVAILABLE", "model replica was lost; retry"),
    ]
    unavailable = getattr(sex, "DeploymentUnavailableError", None)
    if unavailable is not None:
        table.append((unavailable, "UNAVAILABLE", "model is not available"))
    return table


_RAY_TABLE: list[tuple[type[BaseException], str, str]] | None = None


def _ray_table() -> list[tuple[type[BaseException], str, str]]:
    global _RAY_TABLE
    if _RAY_TABLE is None:
        try:
            _RAY_TABLE = _ray_error_table()
        except ImportError:  # front-end tests without Ray
            _RAY_TABLE = []
    return _RAY_TABLE


def replica_lost(exc: BaseException) -> bool:
    """The replica serving a call died or became unreachable (its node lost): Ray's actor
    errors, not our errors nor Serve's "no replica" ones."""
    if isinstance(exc, ReplicaLost):
        return True
    try:
        from ray.exceptions import RayActorError
    except ImportError:  # front-end tests without Ray
        return False
    return isinstance(exc, RayActorError) and not isinstance(exc, AigcError)


def classify(exc: BaseException) -> Failure:
    """The client-safe failure for an exception (no traceback, no internals)."""
    if isinstance(exc, AigcError):
        retry = None
        if exc.code == "RESOURCE_EXHAUSTED":
            retry = float(exc.details.get("retry_after_s", RETRY_AFTER_S))
        return Failure(exc.code, exc.message, exc.field, retry, exc.http_status)
    if isinstance(exc, asyncio.CancelledError):
        return Failure("CANCELLED", "cancelled by the client")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Failure("DEADLINE_EXCEEDED", "deadline exceeded")
    if isinstance(exc, ReplicaLost):
        return Failure("UNAVAILABLE", "model replica was lost; retry")
    for cls, code, message in _ray_table():
        if isinstance(exc, cls):
            retry = RETRY_AFTER_S if code == "RESOURCE_EXHAUSTED" else None
            return Failure(code, message, retry_after_s=retry)
    return Failure("INTERNAL", "internal error")


def client_failure(exc: BaseException, request_id: str) -> Failure:
    """`classify`, with INTERNAL logged here (with the traceback) and the request id given."""
    failure = classify(exc)
    if failure.code == "INTERNAL":
        logger.error("request %s failed", request_id, exc_info=exc)
        return Failure("INTERNAL", f"internal error (request id {request_id})")
    return failure


class ReplicaLost(Exception):
    """A direct call (gateway.direct) broke off after it started: its replica died or its
    node went away. Classified and retried as Ray's actor errors are."""
