"""The one exception -> gRPC status table, used by every servicer (DESIGN.md, Status codes).

Replica errors arrive as Ray exceptions that are also instances of our classes, so one
`isinstance` ladder covers local and remote errors. Unknown errors become INTERNAL with the
request id; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.errors import AigcError

logger = logging.getLogger("aigc.gateway")


def _ray_error_table() -> list[tuple[type[BaseException], grpc.StatusCode, str]]:
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    table: list[tuple[type[BaseException], grpc.StatusCode, str]] = [
        (
            sex.BackPressureError,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "model queue is full; retry later",
        ),
        (rex.ActorDiedError, grpc.StatusCode.UNAVAILABLE, "model replica died; retry"),
        (rex.ActorUnavailableError, grpc.StatusCode.UNAVAILABLE, "model replica unavailable"),
        (rex.RayActorError, grpc.StatusCode.UNAVAILABLE, "model replica failed; retry"),
    ]
    unavailable = getattr(sex, "DeploymentUnavailableError", None)
    if unavailable is not None:
        table.append((unavailable, grpc.StatusCode.UNAVAILABLE, "model is not available"))
    return table


_RAY_TABLE: list[tuple[type[BaseException], grpc.StatusCode, str]] | None = None
RETRY_AFTER_S = 1.0


def classify(exc: BaseException) -> tuple[grpc.StatusCode, str, AigcError | None]:
    """(status code, client-safe message, our error if it is one)."""
    global _RAY_TABLE
    if isinstance(exc, AigcError):
        return grpc.StatusCode[exc.code], exc.message, exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded", None
    if _RAY_TABLE is None:
        _RAY_TABLE = _ray_error_table()
    for cls, code, message in _RAY_TABLE:
        if isinstance(exc, cls):
            return code, message, None
    return grpc.StatusCode.INTERNAL, "internal error", None


def to_rpc_status(exc: BaseException, request_id: str) -> tuple[grpc.StatusCode, status_pb2.Status]:
    code, message, ours = classify(exc)
    if code == grpc.StatusCode.INTERNAL:
        logger.error("request %s failed", request_id, exc_info=exc)
        message = f"internal error (request id {request_id})"
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if ours is not None and ours.field:
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=ours.field, description=message)
            ]
        )
        status.details.add().Pack(detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        delay = float(ours.details.get("retry_after_s", RETRY_AFTER_S)) if ours else RETRY_AFTER_S
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int(delay % 1 * 1e9))
        )
        status.details.add().Pack(info)
    return code, status


async def abort(context: grpc.aio.ServicerContext, exc: BaseException, request_id: str) -> None:
    """Ends the call with the status for `exc` (raises grpc's AbortError)."""
    _, status = to_rpc_status(exc, request_id)
    await context.abort_with_status(rpc_status.to_status(status))
