"""`python -m load_tests.structured_goal --model MODEL --base-url URL`: does constrained decoding
keep its promise on a served model? Against any OpenAI-compatible chat endpoint (aigc-serve's
`/v1` on any engine: llamacpp, transformers, vllm), three cases of --samples requests each
(default 50) at temperature 0.7 (seeds 0..N-1), max_tokens 200:

- `json_schema`: response_format json_schema with the 3-field person schema (name string,
  age integer, city string; load_tests/schemas.py);
- `tools required`: tools get_weather and get_time, tool_choice "required";
- `tools named`: the same tools, tool_choice {"type": "function", "function": {"name":
  "get_weather"}}.

Per case: how many answers end properly (finish_reason "stop"; with tools "tool_calls", or
"stop" with tool calls) and, of those, how many are valid: the content parses as JSON and
validates against the schema (jsonschema), or every tool call names an offered tool (the named
one when named) and its arguments parse and validate against that tool's parameters, with at
least one call. Goals: 100 % of the properly ended answers valid; >= 95 % end properly (the
rest ran out of max_tokens: "length"). A missed goal prints MISSED with the figure (exit 0); a
request the server refuses or fails exits 1 after the table. No network beyond --base-url.

--start ENGINE starts aigc-serve itself first (`aigc up` on a one-model config: smollm2 on
that engine, as load_tests.llm's aigc rows run it: llamacpp on the F16 GGUF, transformers on
models/smollm2, vllm from .venv-vllm) and stops it afterwards.

    python -m load_tests.structured_goal --model smollm2 --base-url http://127.0.0.1:8000/v1
    python -m load_tests.structured_goal --start llamacpp
    python -m load_tests.structured_goal --start transformers
    .venv-vllm/bin/python -m load_tests.structured_goal --start vllm
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from load_tests.schemas import GET_WEATHER, PERSON, response_format

GET_TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [GET_WEATHER, GET_TIME]
CITIES = ("Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Seoul", "Denver", "Perth", "Rome")
STOP_GOAL = 0.95
VALID_GOAL = 1.0


def person_prompt(i: int) -> str:
    return f"Invent a person who lives in {CITIES[i % len(CITIES)]}. Give their name, age and city."


def weather_prompt(i: int) -> str:
    return f"What is the weather like in {CITIES[i % len(CITIES)]} right now?"


CASES: dict[str, dict[str, Any]] = {
    "json_schema": {"prompt": person_prompt,
                    "body": {"response_format": response_format(PERSON, "person")}},
    "tools required": {"prompt": weather_prompt,
                       "body": {"tools": TOOLS, "tool_choice": "required"}},
    "tools named": {"prompt": weather_prompt,
                    "body": {"tools": TOOLS, "tool_choice": {
                        "type": "function", "function": {"name": "get_weather"}}}},
}  # fmt: skip


def check_content(content: str | None) -> str | None:
    """Why the json_schema answer is invalid (None: valid)."""
    import jsonschema

    try:
        value = json.loads(content or "")
    except ValueError as exc:
        return f"not JSON: {exc}"
    try:
        jsonschema.validate(value, PERSON)
    except jsonschema.ValidationError as exc:
        return f"schema: {exc.message}"
    return None


def check_calls(calls: list[dict[str, Any]], named: str | None) -> str | None:
    """Why the tool calls are invalid (None: valid)."""
    import jsonschema

    if not calls:
        return "no tool calls"
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for call in calls:
        name = call["function"]["name"]
        if name not in params or (named is not None and name != named):
            return f"called {name!r}"
        try:
            args = json.loads(call["function"]["arguments"] or "")
        except ValueError as exc:
            return f"{name} arguments not JSON: {exc}"
        try:
            jsonschema.validate(args, params[name])
        except jsonschema.ValidationError as exc:
            return f"{name} arguments: {exc.message}"
    return None


def one(args: argparse.Namespace, case: str, i: int) -> dict[str, Any]:
    """One sample: its finish_reason, whether it ended properly, and why it is invalid."""
    import openai

    spec = CASES[case]
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0,
                           timeout=args.timeout)  # fmt: skip
    try:
        response = client.chat.completions.create(
            model=args.model,
            messages=[{"role": "user", "content": spec["prompt"](i)}],
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed + i,
            **spec["body"],
        )
    except openai.APIError as exc:  # refused or failed: an error, not a sample
        return {"finish_reason": "error", "ended": False, "problem": None, "error": str(exc)}
    finally:
        client.close()
    choice = response.choices[0]
    message = choice.message
    calls = [c.model_dump() for c in message.tool_calls or []]
    if case == "json_schema":
        ended = choice.finish_reason == "stop"
        problem = check_content(message.content) if ended else None
    else:
        ended = choice.finish_reason == "tool_calls" or (choice.finish_reason == "stop" and calls)
        named = "get_weather" if case == "tools named" else None
        problem = check_calls(calls, named) if ended else None
    return {
        "finish_reason": choice.finish_reason,
        "ended": bool(ended),
        "problem": problem,
        "content": message.content,
        "tool_calls": [c["function"] for c in calls],
        "completion_tokens": response.usage.completion_tokens if response.usage else None,
    }


def run_case(args: argparse.Namespace, case: str) -> dict[str, Any]:
    with ThreadPoolExecutor(args.concurrency) as pool:
        samples = list(pool.map(lambda i: one(args, case, i), range(args.samples)))
    ended = [s for s in samples if s["ended"]]
    valid = [s for s in ended if s["problem"] is None]
    reasons: dict[str, int] = {}
    for s in samples:
        reasons[str(s["finish_reason"])] = reasons.get(str(s["finish_reason"]), 0) + 1
    return {
        "case": case,
        "samples": len(samples),
        "ended": len(ended),
        "valid": len(valid),
        "finish_reasons": reasons,
        "problems": [s["problem"] for s in ended if s["problem"] is not None],
        "examples": samples[:3],
        "not_ended": [s for s in samples if not s["ended"]][:3],
        "errors": [s["error"] for s in samples if "error" in s],
    }


def table(model: str, base_url: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Structured output on {model} ({base_url}): {args.samples} samples per case, "
        f"temperature {args.temperature}, seeds {args.seed}..{args.seed + args.samples - 1}, "
        f"max_tokens {args.max_tokens}.",
        "",
        "| case | samples | ended properly | % ended (goal >= 95 %) | valid of ended | "
        "% valid (goal 100 %) | finish reasons |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ended_rate = r["ended"] / r["samples"]
        valid_rate = r["valid"] / r["ended"] if r["ended"] else float("nan")
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["finish_reasons"].items()))
        lines.append(
            f"| {r['case']} | {r['samples']} | {r['ended']} | {ended_rate:.0%} | {r['valid']} | "
            f"{valid_rate:.0%} | {reasons} |"
        )
    return "\n".join(lines) + "\n"


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        ended_rate = r["ended"] / r["samples"]
        tag = "MET" if ended_rate >= STOP_GOAL else "MISSED"
        out.append(f"{tag}: {r['case']}: {ended_rate:.0%} ended properly (goal >= 95 %)")
        if not r["ended"]:
            out.append(f"MISSED: {r['case']}: no answer ended properly, none to validate")
            continue
        valid_rate = r["valid"] / r["ended"]
        tag = "MET" if valid_rate >= VALID_GOAL else "MISSED"
        out.append(f"{tag}: {r['case']}: {r['valid']}/{r['ended']} = {valid_rate:.0%} of the "
                   f"properly ended answers valid (goal 100 %)")  # fmt: skip
        for problem in r["problems"][:3]:
            out.append(f"    invalid: {problem}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.structured_goal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", help="the served model's name (or alias)")
    p.add_argument("--start", choices=("llamacpp", "transformers", "vllm"),
                   help="start aigc-serve with smollm2 on this engine first (then --model and "
                   "--base-url are its own)")  # fmt: skip
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default="structured-goal")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="the first sample's seed")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, from: {', '.join(CASES)}")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",")]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    if args.start:
        return started(args, cases)
    if not args.model:
        p.error("--model is needed (or --start ENGINE)")
    return measure(args, cases)


def started(args: argparse.Namespace, cases: list[str]) -> int:
    """`measure` against aigc-serve started here on smollm2 with engine `args.start`."""
    from load_tests.llm import RESULTS
    from load_tests.llm_servers import Settings, start_aigc

    log = RESULTS / "llm" / f"structured-goal-{args.start}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    running = start_aigc(args.start, Settings(), log)
    try:
        args.model, args.base_url = running.model, running.base_url
        return measure(args, cases)
    finally:
        running.stop()


def measure(args: argparse.Namespace, cases: list[str]) -> int:
    rows = []
    for case in cases:
        rows.append(run_case(args, case))
        r = rows[-1]
        print(f"[structured] {case}: {r['ended']}/{r['samples']} ended properly, "
              f"{r['valid']} valid, {len(r['errors'])} errors", flush=True)  # fmt: skip
    print(table(args.model, args.base_url, rows, args))
    print("\n".join(verdicts(rows)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    errors = [(r["case"], e) for r in rows for e in r["errors"]]
    for case, error in errors[:5]:
        print(f"error: {case}: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
