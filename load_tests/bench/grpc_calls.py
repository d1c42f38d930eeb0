"""One gRPC call per planned request, timed into a RequestRecord.

Every response message's arrival time is taken right after the message arrives, before any
other work, so chunk times are as close to the wire as the client can see them.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from aigc.client import Stubs
from load_tests.bench.records import RequestRecord
from load_tests.bench.workload import PlannedRequest


def _stub_method(stubs: Stubs, planned: PlannedRequest) -> Any:
    service = {"text": stubs.text, "image": stubs.image, "audio": stubs.audio}
    return getattr(service[planned.item.modality], planned.item.method)


def _account(record: RequestRecord, modality: str, message: Any) -> None:
    """Adds what one response message carries to the record's output counters."""
    if modality == "text":
        if message.HasField("usage"):
            record.output_tokens = message.usage.completion_tokens
            record.prompt_tokens = message.usage.prompt_tokens
        delta = getattr(message, "delta", None)
        if delta is not None:
            record.output_bytes += len(delta.encode())
        else:
            record.output_bytes += sum(len(c.text.encode()) for c in message.completions)
    elif modality == "image":
        record.images += len(message.images)
        record.output_bytes += sum(len(i.data) for i in message.images)
    else:
        record.audio_seconds += message.duration_seconds
        record.output_bytes += len(message.audio)


async def issue(
    stubs: Stubs,
    planned: PlannedRequest,
    t0: float,
    *,
    timeout: float | None,
    metadata: list[tuple[str, str]],
    intended_send: float | None = None,
    warmup: bool = False,
) -> RequestRecord:
    item = planned.item
    method = _stub_method(stubs, planned)
    record = RequestRecord.for_planned(
        planned, deadline=timeout, intended_send=intended_send, warmup=warmup
    )
    clock = time.perf_counter
    try:
        if item.stream:
            record.send = clock() - t0
            call = method(planned.request, timeout=timeout, metadata=metadata)
            async for message in call:
                now = clock() - t0
                if record.first_chunk is None:
                    record.first_chunk = now
                record.chunk_times.append(now)
                _account(record, item.modality, message)
        else:
            record.send = clock() - t0
            message = await method(planned.request, timeout=timeout, metadata=metadata)
            now = clock() - t0
            record.first_chunk = now
            record.chunk_times.append(now)
            _account(record, item.modality, message)
    except grpc.aio.AioRpcError as err:
        record.status = err.code().name
        record.error = (err.details() or "")[:200]
    record.end = clock() - t0
    return record
