"""Renders a `gateway.errors.Failure` as a rich gRPC status (BadRequest, RetryInfo details)."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.errors import Failure, client_failure


def rpc_status_of(failure: Failure) -> status_pb2.Status:
    status = status_pb2.Status(code=getattr(code_pb2, failure.code), message=failure.message)
    if failure.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=failure.field, description=failure.message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    if failure.retry_after_s is not None:
        delay = failure.retry_after_s
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int(delay % 1 * 1e9))
        )
        status.details.add().Pack(info)
    return status


def to_rpc_status(exc: BaseException, request_id: str) -> tuple[grpc.StatusCode, status_pb2.Status]:
    failure = client_failure(exc, request_id)
    return grpc.StatusCode[failure.code], rpc_status_of(failure)


async def abort(context: grpc.aio.ServicerContext, exc: BaseException, request_id: str) -> None:
    """Ends the call with the status for `exc` (raises grpc's AbortError)."""
    _, status = to_rpc_status(exc, request_id)
    await context.abort_with_status(rpc_status.to_status(status))
