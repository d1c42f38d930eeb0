"""The summary: vLLM benchmark_serving's keys and definitions, plus images, audio and errors.

Definitions (as vLLM's `benchmark_serving.py`; only successful requests enter latencies):
- TTFT: send -> first response message (unary: the response).
- ITL: every gap between consecutive messages of a stream, pooled over all requests.
- TPOT, per request with more than one output token: (e2el - TTFT) / (output_tokens - 1).
- e2el: send -> last byte.
- request_goodput: requests per second that met every SLO given with --goodput.
Admission (issue 15), overall, per modality and per tier (`per_priority`):
- refused: RESOURCE_EXHAUSTED, the server declined at once; `*_refusal_ms` is how fast.
- admitted: everything not refused; admitted_expired: admitted, then DEADLINE_EXCEEDED
  (work accepted that could not finish in time), also as a share of admitted.
- deadline_goodput: completions within their deadline per second (`within_deadline` of them).
Statistics use numpy (np.mean, np.median, np.std, np.percentile); an empty set gives 0, as in
vLLM, and the matching `*_count` key says how many samples there were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from load_tests.bench.records import RequestRecord

PERCENTILES = (50, 90, 95, 99)
METRICS = ("ttft", "tpot", "itl", "e2el")
SLO_KEYS = ("ttft", "tpot", "e2el")
Percentile = Literal["linear", "nearest"]  # np.percentile methods


def parse_goodput(items: Sequence[str]) -> dict[str, float]:
    """`ttft:500 tpot:50` -> {"ttft": 500.0, "tpot": 50.0} (milliseconds)."""
    slos: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or key not in SLO_KEYS:
            raise ValueError(f"--goodput takes {'|'.join(SLO_KEYS)}:MS, got {item!r}")
        ms = float(value)
        if ms <= 0:
            raise ValueError(f"--goodput {key} must be positive, got {value}")
        slos[key] = ms
    return slos


def stats(
    name: str, values_s: Sequence[float], percentile_method: Percentile = "linear"
) -> dict[str, Any]:
    """mean/median/std/pNN of one metric in milliseconds, with vLLM's key names; pNN by
    np.percentile's `percentile_method` (linear: interpolated between two samples, as vLLM;
    nearest: the nearest-rank sample, for the few samples of a load_tests.llm cell)."""
    ms = np.asarray(values_s, dtype=float) * 1000.0
    empty = ms.size == 0
    out: dict[str, Any] = {
        f"mean_{name}_ms": 0.0 if empty else float(np.mean(ms)),
        f"median_{name}_ms": 0.0 if empty else float(np.median(ms)),
        f"std_{name}_ms": 0.0 if empty else float(np.std(ms)),
    }
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = (
            0.0 if empty else float(np.percentile(ms, p, method=percentile_method))
        )
    out[f"{name}_count"] = int(ms.size)
    return out


def meets_slos(r: RequestRecord, slos: dict[str, float]) -> bool:
    values = {"ttft": r.ttft, "tpot": r.tpot or 0.0, "e2el": r.e2el}
    return all(values[k] * 1000.0 <= ms for k, ms in slos.items())


def _section(records: Sequence[RequestRecord], duration: float, slos: dict[str, float]) -> dict:
    ok = [r for r in records if r.ok]
    tokens = sum(r.output_tokens for r in ok)
    prompt = sum(r.prompt_tokens for r in ok)
    images = sum(r.images for r in ok)
    audio = sum(r.audio_seconds for r in ok)
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    out: dict[str, Any] = {
        "num_requests": len(records),
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "errors_by_code": dict(Counter(r.status for r in records if not r.ok)),
        "total_input_tokens": prompt,
        "total_output_tokens": tokens,
        "total_images": images,
        "total_audio_seconds": audio,
        "total_output_bytes": sum(r.output_bytes for r in ok),
        "request_throughput": per_s(len(ok)),
        "output_throughput": per_s(tokens),
        "total_token_throughput": per_s(tokens + prompt),
        "images_per_second": per_s(images),
        # Audio seconds produced per second of wall time (the inverse of the aggregate RTF).
        "audio_seconds_per_second": per_s(audio),
    }
    voiced = [r for r in ok if r.audio_seconds > 0]
    # Real-time factor per request: time spent / audio produced (< 1 is faster than real time).
    rtf = [r.e2el / r.audio_seconds for r in voiced]
    out["mean_audio_rtf"] = float(np.mean(rtf)) if rtf else 0.0
    out["p99_audio_rtf"] = float(np.percentile(rtf, 99)) if rtf else 0.0
    if slos:
        good = sum(meets_slos(r, slos) for r in ok)
        out["request_goodput"] = per_s(good)
        out["good_requests"] = good
    out.update(admission(records, duration))
    out.update(stats("ttft", [r.ttft for r in ok]))
    out.update(stats("tpot", [t for r in ok if (t := r.tpot) is not None]))
    out.update(stats("itl", [gap for r in ok for gap in r.itls]))
    out.update(stats("e2el", [r.e2el for r in ok]))
    scheduled = [r for r in records if r.intended_send is not None]
    if scheduled:
        # Open loop: how late requests left, and latency counted from the schedule, which
        # shows coordinated omission that latency from the actual send would hide.
        out.update(stats("send_lag", [r.send_lag for r in scheduled]))
        out.update(stats("e2el_from_intended", [r.end - (r.intended_send or 0.0) for r in ok]))
    return out


def admission(records: Sequence[RequestRecord], duration: float) -> dict[str, Any]:
    """Refused vs admitted-then-expired, and goodput against each request's own deadline."""
    refused = [r for r in records if r.refused]
    admitted = len(records) - len(refused)
    expired = sum(r.expired for r in records)
    within = sum(r.within_deadline for r in records)
    out: dict[str, Any] = {
        "admitted": admitted,
        "refused": len(refused),
        "refused_share": len(refused) / len(records) if records else 0.0,
        "admitted_expired": expired,
        "admitted_expired_share": expired / admitted if admitted else 0.0,
        "within_deadline": within,
        "deadline_goodput": within / duration if duration > 0 else 0.0,
    }
    out.update(stats("refusal", [r.e2el for r in refused]))
    return out


def tokens_inside(r: RequestRecord, window: float) -> float:
    """Output tokens of a completed request that arrived inside [0, window]: a stream's tokens
    are credited as its messages arrive (its token count spread evenly over its messages), a
    unary reply's all at its end. Crediting a stream's tokens only when it completes would make
    a closed loop whose requests finish together (c sequences of the same length) count a
    whole round, or none, at the window's edge."""
    if r.stream and r.chunk_times:
        share = sum(0.0 <= t <= window for t in r.chunk_times) / len(r.chunk_times)
        return r.output_tokens * share
    return float(r.output_tokens) if 0.0 <= r.end <= window else 0.0


def steady(records: Sequence[RequestRecord], window: float) -> dict[str, Any]:
    """Throughput inside the sending window [0, window]: every request that completed in it,
    warm-up ones included (output tokens: as they arrived, `tokens_inside`). With the
    pipeline full from t=0 (warm-up flows into the measured phase), this is the steady-state
    rate, free of the ramp-down tail that the vLLM-style rates above include (they divide by
    the time until the last reply)."""
    inside = [r for r in records if r.ok and 0.0 <= r.end <= window]
    per_s = (lambda x: x / window) if window > 0 else (lambda x: 0.0)
    tokens = sum(tokens_inside(r, window) for r in records if r.ok)
    return {
        "window_s": window,
        "steady_request_throughput": per_s(len(inside)),
        "steady_deadline_goodput": per_s(sum(r.within_deadline for r in inside)),
        "steady_output_throughput": per_s(tokens),
        "steady_images_per_second": per_s(sum(r.images for r in inside)),
        "steady_audio_seconds_per_second": per_s(sum(r.audio_seconds for r in inside)),
    }


def summarize(
    records: Sequence[RequestRecord],
    *,
    duration: float | None = None,
    slos: dict[str, float] | None = None,
    meta: dict[str, Any] | None = None,
    window: float | None = None,
) -> dict[str, Any]:
    """Summary of the measured (non-warm-up) records; `duration` defaults to first send to
    last end, which is vLLM's benchmark duration when the run starts at the first send.
    `window` (the --duration of sending) adds the steady-state `steady_*` rates."""
    measured = [r for r in records if not r.warmup]
    if duration is None:
        duration = max(r.end for r in measured) - min(r.send for r in measured) if measured else 0.0
    slos = slos or {}
    out: dict[str, Any] = {**(meta or {}), "duration": duration}
    out.update(_section(measured, duration, slos))
    if slos:
        out["goodput_slos_ms"] = dict(slos)
    by_modality: dict[str, list[RequestRecord]] = {}
    for r in measured:
        by_modality.setdefault(r.modality, []).append(r)
    out["per_modality"] = {m: _section(rs, duration, slos) for m, rs in sorted(by_modality.items())}
    by_priority: dict[str, list[RequestRecord]] = {}
    for r in measured:
        by_priority.setdefault(r.priority, []).append(r)
    out["per_priority"] = {p: _section(rs, duration, slos) for p, rs in sorted(by_priority.items())}
    if out["refused"]:
        batch = out["per_priority"].get("batch", {}).get("refused", 0)
        out["batch_share_of_refused"] = batch / out["refused"]
    if window is not None:
        out.update(steady(records, window))
        for m, section in out["per_modality"].items():
            section.update(steady([r for r in records if r.modality == m], window))
        for p, section in out["per_priority"].items():
            section.update(steady([r for r in records if r.priority == p], window))
    return out
