"""Small helpers for tests that talk to the real stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from load_tests.prom import Metrics, scrape, total

__all__ = [
    "Metrics",
    "bad_fields",
    "replica_stats",
    "retry_delay_s",
    "rpc_error",
    "scrape",
    "total",
]


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    try:
        result = fn()
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)  # drain streams: errors arrive while iterating
    except grpc.RpcError as err:
        return err
    raise AssertionError("expected the call to fail")


def bad_fields(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fields += [v.field for v in br.field_violations]
    return fields


def replica_stats(model: str, app: str) -> dict[str, float]:
    from ray import serve

    handle = serve.get_deployment_handle(model, app_name=app)
    stats: dict[str, float] = handle.stats.remote().result(timeout_s=30)
    return stats


def retry_delay_s(err: grpc.RpcError) -> float | None:
    """The google.rpc.RetryInfo delay an error carries, in seconds (None: none)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None
