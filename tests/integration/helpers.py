"""Small helpers for tests that talk to the real stack."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.05
) -> bool:
    """Polls a condition (bounded); tests assert the condition, never the time it took."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def replica_stats(model: str, app: str) -> dict[str, float]:
    from ray import serve

    handle = serve.get_deployment_handle(model, app_name=app)
    stats: dict[str, float] = handle.stats.remote().result(timeout_s=30)
    return stats


def scrape(url: str) -> Metrics:
    """A Prometheus endpoint's samples, keyed by name and sorted labels."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: Metrics = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] += s.value
    return out


def total(m: Metrics, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        v for (n, ls), v in m.items() if n == name and all((k, labels[k]) in ls for k in labels)
    )
