"""What a file upload and a batch request must be, for both front ends (the OpenAI HTTP API,
gateway/openai_api/jobs.py, and aigc.v1 Batches, gateway/grpc_api/jobs.py): the same checks,
the same errors, each naming its field (the HTTP `param`, the gRPC BadRequest field)."""

from __future__ import annotations

from typing import Any

from aigc.wire import BATCH_ENDPOINTS as ENDPOINTS
from core.errors import InvalidArgument, NotFound
from gateway.jobs.store import FileRecord, JobStore

PURPOSES = ("batch",)
WINDOWS = {"24h": 24 * 3600}
MAX_METADATA = 16  # pairs, as OpenAI's


def missing(kind: str, ident: str, field: str | None = None) -> NotFound:
    return NotFound(f"no {kind} with id {ident!r}", field=field or f"{kind}_id")


def purpose(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument("purpose is required", field="purpose")
    if value not in PURPOSES:
        raise InvalidArgument(
            f"purpose {value!r} is not accepted here; use one of {', '.join(PURPOSES)}",
            field="purpose",
        )
    return value


def endpoint(value: Any) -> str:
    if value not in ENDPOINTS:
        raise InvalidArgument(
            f"endpoint {value!r} is not batched here; use one of {', '.join(ENDPOINTS)}",
            field="endpoint",
        )
    return str(value)


def window(value: Any) -> str:
    if value not in WINDOWS:
        raise InvalidArgument(
            f"completion_window must be one of {', '.join(WINDOWS)}, got {value!r}",
            field="completion_window",
        )
    return str(value)


def metadata(value: Any) -> dict[str, str] | None:
    if value is not None and (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise InvalidArgument(
            f"metadata is at most {MAX_METADATA} string keys and values", field="metadata"
        )
    return value


def input_file_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument("input_file_id is required", field="input_file_id")
    return value


def input_file(store: JobStore, file_id: str) -> FileRecord:
    """The uploaded file a batch reads (blocking: call it from a worker thread)."""
    source = store.get_file(file_id)
    if source is None:
        raise missing("file", file_id, field="input_file_id")
    if source.purpose != "batch":
        raise InvalidArgument(
            f"file {file_id} has purpose {source.purpose!r}; a batch reads purpose 'batch'",
            field="input_file_id",
        )
    return source
