"""Markdown tables and goal checks for BENCHMARKS.md, from the benchmark JSON rows."""

from __future__ import annotations

from typing import Any


def _find(rows: list[dict[str, Any]], path: str, c: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["path"] == path and r["concurrency"] == c), None)


def overhead_table(rows: list[dict[str, Any]]) -> str:
    paths = list(dict.fromkeys(r["path"] for r in rows))
    cs = sorted({r["concurrency"] for r in rows})
    head = "| path | " + " | ".join(f"c={c}: p50 / p99 ms, req/s" for c in cs) + " |"
    lines = [head, "|---|" + "---|" * len(cs)]
    for path in paths:
        cells = []
        for c in cs:
            r = _find(rows, path, c)
            cells.append(
                f"{r['p50_e2el_ms']:.2f} / {r['p99_e2el_ms']:.2f}, {rps(r):,.0f}"
                + (f" ({r['failed']} failed)" if r["failed"] else "")
                if r
                else "-"
            )
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    lines.append("")
    plain = _find(rows, "plain grpc.aio echo", 1)
    for suffix in ("", ", RAY_SERVE_THROUGHPUT_OPTIMIZED=1"):
        gw1 = _find(rows, "gateway -> DeploymentHandle" + suffix, 1)
        gw64 = _find(rows, "gateway -> DeploymentHandle" + suffix, 64)
        proxy64 = _find(rows, "Serve gRPC proxy" + suffix, 64)
        label = "gateway" + (suffix or " (default settings)")
        if gw1 and plain:
            added = gw1["p50_e2el_ms"] - plain["p50_e2el_ms"]
            ok = "met" if added <= 1.5 else "MISSED"
            lines.append(f"- {label}: adds {added:.2f} ms p50 over plain grpc.aio at c=1 "
                         f"(goal <= 1.5 ms: {ok})")  # fmt: skip
        if gw64 and proxy64 and rps(proxy64):
            ratio = rps(gw64) / rps(proxy64)
            ok = "met" if ratio >= 2 else "MISSED"
            lines.append(f"- {label}: {ratio:.2f}x the throughput of Serve's gRPC proxy"
                         f"{suffix} at c=64 (goal >= 2x: {ok})")  # fmt: skip
    opt = _find(rows, "gateway -> DeploymentHandle, RAY_SERVE_THROUGHPUT_OPTIMIZED=1", 64)
    proxy = _find(rows, "Serve gRPC proxy", 64)
    if opt and proxy and rps(proxy):
        ratio = rps(opt) / rps(proxy)
        ok = "met" if ratio >= 2 else "MISSED"
        lines.append(f"- gateway, RAY_SERVE_THROUGHPUT_OPTIMIZED=1: {ratio:.2f}x the throughput of "
                     f"Serve's gRPC proxy as shipped (default settings) at c=64 "
                     f"(goal >= 2x: {ok})")  # fmt: skip
    return "\n".join(lines)


def served_rate(modality: str, s: dict[str, Any]) -> float:
    """The unit each modality is sized in: images/s, output tokens/s, requests/s (audio);
    the steady-state rate where the run has one (served runs), else the plain one."""
    key = {"image": "images_per_second", "text": "output_throughput"}.get(
        modality, "request_throughput"
    )
    return float(s.get("steady_" + key, s.get(key)) or 0.0)


def rps(r: dict[str, Any]) -> float:
    return float(r.get("steady_request_throughput", r["request_throughput"]) or 0.0)


UNITS = {"image": "images/s", "text": "output tok/s", "audio": "requests/s"}


def batching_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | c | images/req | batching | Serve settings | in-process batch | served "
        "| in-process limit | served / limit | p50 / p99 e2el ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["modality"]
        served = served_rate(m, r["served"])
        limit = served_rate(m, r["limit"]) if r.get("limit") else None
        ratio = f"{served / limit:.0%}" if limit else "-"
        extra = f" ({r['served']['failed']} failed)" if r["served"].get("failed") else ""
        lines.append(
            f"| {r['served_model']} | {r['concurrency']} | {r['count'] if m == 'image' else '-'} "
            f"| {'on' if r['batched'] else 'off (max_batch_size 1)'} | {r.get('serve_env', '')} "
            f"| {r['batch'] if r['batched'] else '-'} | {served:,.1f} {UNITS[m]}{extra} "
            f"| {f'{limit:,.1f}' if limit else '-'} | {ratio} "
            f"| {r['served']['p50_e2el_ms']:.1f} / {r['served']['p99_e2el_ms']:.1f} |"
        )
    lines.append("")
    lines.extend(batching_goals(rows))
    return "\n".join(lines)


def batching_goals(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for model, env in dict.fromkeys((r["model"], r.get("serve_env", "")) for r in rows):
        mine = [r for r in rows if r["model"] == model and r.get("serve_env", "") == env]
        m = mine[0]["modality"]
        c_goal, goal = (16, 0.80) if m == "text" else (64, 0.85)
        for count in sorted({r["count"] for r in mine}):
            on = next(
                (r for r in mine if r["batched"] and r["concurrency"] == c_goal
                 and r["count"] == count),
                None,
            )  # fmt: skip
            if not on or not on.get("limit"):
                continue
            ratio = served_rate(m, on["served"]) / max(served_rate(m, on["limit"]), 1e-9)
            off = next((r for r in mine if not r["batched"] and r["concurrency"] == c_goal), None)
            vs_off = ""
            if off and count == 1:
                gain = served_rate(m, on["served"]) / max(served_rate(m, off["served"]), 1e-9)
                vs_off = f"; {gain:.1f}x the unbatched served throughput"
            ok = "met" if ratio >= goal else "MISSED"
            what = f", {count} images/request" if m == "image" else ""
            out.append(f"- {model} (c={c_goal}{what}, Serve {env or 'default'}): served "
                       f"{ratio:.0%} of in-process (goal >= {goal:.0%}: {ok}){vs_off}")  # fmt: skip
    return out
