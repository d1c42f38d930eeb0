"""The same planned requests sent through the OpenAI HTTP front end (`aigc bench --protocol http`).

Each aigc.v1 request of the workload becomes the OpenAI body that asks for the same work
(completions or chat completions, streamed as SSE when the gRPC call streams; images; speech),
so one harness compares both front ends on the same stack. Arrival times are taken as each SSE
event or body chunk arrives, as `load_tests.bench.grpc_calls` does for gRPC messages.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from core.errors import HTTP_STATUS
from load_tests.bench.records import RequestRecord
from load_tests.bench.workload import PlannedRequest

# HTTP status -> the code it reads back as: the table's first with that status (400 is
# INVALID_ARGUMENT, not FAILED_PRECONDITION)
CODE_OF_HTTP: dict[int, str] = {}
for _code, (_status, _) in HTTP_STATUS.items():
    CODE_OF_HTTP.setdefault(_status, _code)


def _text_body(req: Any, stream: bool) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"model": req.model or None, "stream": stream}
    for name in ("max_tokens", "temperature", "top_p", "n", "seed"):
        if req.HasField(name):
            body[name] = getattr(req, name)
    if req.stop:
        body["stop"] = list(req.stop)
    if stream:
        body["stream_options"] = {"include_usage": True}
    if req.WhichOneof("input") == "chat":
        body["messages"] = [{"role": m.role, "content": m.content} for m in req.chat.messages]
        return "/v1/chat/completions", body
    body["prompt"] = req.prompt
    body.setdefault("max_tokens", None)  # the model's default, as the gRPC request asks
    return "/v1/completions", body


async def served_labels(session: aiohttp.ClientSession, base_url: str) -> dict[str, list[str]]:
    """Labels of conditional image models by served name ("" = the default image model), from
    /v1/models: the OpenAI API names the label in the prompt, where aigc.v1 may leave it empty."""
    async with session.get(base_url + "/v1/models") as resp:
        entries = (await resp.json())["data"] if resp.status == 200 else []
    out = {e["id"]: list(e.get("labels", [])) for e in entries}
    for e in entries:
        if e.get("modality") == "image" and e.get("default") and e["id"] == e.get("root"):
            out[""] = list(e.get("labels", []))
    return out


def http_request(
    planned: PlannedRequest, labels: dict[str, list[str]] | None = None
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) asking for the same work as the planned aigc.v1 request; an image
    request without a label names one of the model's labels (chosen by the request's index).
    The batch tier is OpenAI's `service_tier: flex`."""
    path, body = _body(planned, labels)
    if planned.priority == "batch":
        body["service_tier"] = "flex"
    return path, body


def _body(
    planned: PlannedRequest, labels: dict[str, list[str]] | None
) -> tuple[str, dict[str, Any]]:
    item, req = planned.item, planned.request
    if item.modality == "text":
        return _text_body(req, item.stream)
    if item.modality == "image":
        choices = (labels or {}).get(req.model, [])
        label = req.label or (choices[planned.index % len(choices)] if choices else "any")
        body: dict[str, Any] = {"model": req.model or None, "prompt": label}
        if req.HasField("count"):
            body["n"] = req.count
        if req.HasField("seed"):
            body["seed"] = req.seed
        return "/v1/images/generations", body
    body = {"model": req.model or None, "input": req.text, "voice": req.voice or None}
    body["response_format"] = "pcm" if item.stream else "wav"
    for name in ("speed", "seed"):
        if req.HasField(name):
            body[name] = getattr(req, name)
    return "/v1/audio/speech", body


def _sse_events(buffer: bytearray) -> list[Any]:
    """Complete `data:` events taken off the front of the buffer."""
    events = []
    while (end := buffer.find(b"\n\n")) >= 0:
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


def _account_json(record: RequestRecord, modality: str, data: dict[str, Any]) -> None:
    if "error" in data:
        record.status = str(data["error"].get("code") or "INTERNAL").upper()
        record.error = str(data["error"].get("message", ""))[:200]
        return
    if modality == "text":
        usage = data.get("usage")
        if usage:
            record.output_tokens = usage["completion_tokens"]
            record.prompt_tokens = usage["prompt_tokens"]
        for choice in data.get("choices", []):
            text = choice.get("text") or (choice.get("delta") or choice.get("message") or {}).get(
                "content"
            )
            record.output_bytes += len((text or "").encode())
    elif modality == "image":
        record.images += len(data.get("data", []))
        record.output_bytes += sum(len(d.get("b64_json", "")) for d in data.get("data", []))


async def issue_http(
    session: aiohttp.ClientSession,
    base_url: str,
    planned: PlannedRequest,
    t0: float,
    *,
    timeout: float | None,
    headers: dict[str, str],
    intended_send: float | None = None,
    warmup: bool = False,
    labels: dict[str, list[str]] | None = None,
) -> RequestRecord:
    item = planned.item
    path, body = http_request(planned, labels)
    record = RequestRecord.for_planned(
        planned, deadline=timeout, intended_send=intended_send, warmup=warmup
    )
    clock = time.perf_counter
    if timeout is not None:
        headers = {**headers, "x-request-timeout": str(timeout)}
    record.send = clock() - t0
    try:
        async with session.post(base_url + path, json=body, headers=headers) as resp:
            if resp.status != 200:
                data = await resp.json(content_type=None)
                record.status = CODE_OF_HTTP.get(resp.status, "UNKNOWN")
                record.error = str(data.get("error", {}).get("message", ""))[:200]
            elif item.modality == "text" and item.stream:
                buffer = bytearray()
                async for part in resp.content.iter_any():
                    now = clock() - t0
                    buffer += part
                    for event in _sse_events(buffer):
                        if record.first_chunk is None:
                            record.first_chunk = now
                        record.chunk_times.append(now)
                        _account_json(record, "text", event)
            elif item.modality == "audio":
                rate = int(resp.headers.get("x-sample-rate", "24000"))
                size = 0
                async for part in resp.content.iter_any():
                    now = clock() - t0
                    if record.first_chunk is None:
                        record.first_chunk = now
                    record.chunk_times.append(now)
                    size += len(part)
                header = 0 if item.stream else 44  # wav: a 44-byte header before the PCM
                record.output_bytes = size
                record.audio_seconds = max(0, size - header) / 2 / rate
            else:
                data = await resp.json()
                now = clock() - t0
                record.first_chunk = now
                record.chunk_times.append(now)
                _account_json(record, item.modality, data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        record.status = "UNAVAILABLE"
        record.error = f"{type(exc).__name__}: {exc}"[:200]
    record.end = clock() - t0
    return record
