"""One record per request, kept raw so any metric can be recomputed later from the JSONL.

Times are seconds since the run's start (`time.perf_counter()` based), so they compare across
records without clock drift; the summary carries the wall-clock start for reference.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RequestRecord:
    index: int
    modality: str  # text | image | audio
    model: str
    method: str  # the gRPC method, e.g. "GenerateStream"
    stream: bool
    send: float  # when the call was actually issued
    intended_send: float | None = None  # open loop: the schedule's send time
    warmup: bool = False
    first_chunk: float | None = None  # first response message (unary: the response)
    chunk_times: list[float] = field(default_factory=list)  # every response message
    end: float = 0.0  # last byte received, or the error
    status: str = "OK"  # gRPC status code name
    error: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0  # text: usage.completion_tokens
    images: int = 0
    audio_seconds: float = 0.0
    output_bytes: int = 0
    priority: str = "interactive"  # the tier sent: interactive | batch
    deadline: float | None = None  # seconds from send (the gRPC timeout); None: none sent

    @classmethod
    def for_planned(
        cls,
        planned: Any,
        *,
        deadline: float | None,
        intended_send: float | None = None,
        warmup: bool = False,
    ) -> RequestRecord:
        """The record of a planned request (`workload.PlannedRequest`) before it is sent."""
        item = planned.item
        return cls(
            index=planned.index,
            modality=item.modality,
            model=item.model,
            method=item.method,
            stream=item.stream,
            send=0.0,
            intended_send=intended_send,
            warmup=warmup,
            priority=planned.priority,
            deadline=deadline,
        )

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def e2el(self) -> float:
        """Send to last byte (vLLM's e2el)."""
        return self.end - self.send

    @property
    def ttft(self) -> float:
        """Send to first chunk; for unary calls the first chunk is the whole response."""
        first = self.first_chunk if self.first_chunk is not None else self.end
        return first - self.send

    @property
    def itls(self) -> list[float]:
        """Gaps between consecutive chunks (vLLM's ITL, before pooling)."""
        t = self.chunk_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def tpot(self) -> float | None:
        """(e2el - TTFT) / (output_tokens - 1), only defined for more than one token (vLLM)."""
        if self.output_tokens <= 1:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def refused(self) -> bool:
        """Refused by admission (RESOURCE_EXHAUSTED): the server declined at once."""
        return self.status == "RESOURCE_EXHAUSTED"

    @property
    def expired(self) -> bool:
        """Not refused, yet its deadline passed (admitted, then DEADLINE_EXCEEDED)."""
        return self.status == "DEADLINE_EXCEEDED"

    @property
    def within_deadline(self) -> bool:
        """Completed before its deadline: what goodput counts."""
        return self.ok and (self.deadline is None or self.e2el <= self.deadline)

    @property
    def send_lag(self) -> float:
        """Actual minus intended send time: the client falling behind its schedule."""
        return 0.0 if self.intended_send is None else self.send - self.intended_send


def shift(r: RequestRecord, dt: float) -> None:
    """Moves every time of a record by dt seconds (another origin of the clock)."""
    r.send += dt
    r.end += dt
    if r.intended_send is not None:
        r.intended_send += dt
    if r.first_chunk is not None:
        r.first_chunk += dt
    r.chunk_times = [t + dt for t in r.chunk_times]


def write_jsonl(path: Path, records: Iterable[RequestRecord]) -> None:
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(asdict(r), separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> Iterator[RequestRecord]:
    with path.open() as f:
        for line in f:
            if line.strip():
                data: dict[str, Any] = json.loads(line)
                yield RequestRecord(**data)
