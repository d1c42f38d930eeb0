"""`python -m load_tests.schema_compile`: what a JSON schema costs before the first token, cold
(the first request with a schema: llguidance compiles it against the vocabulary) and cached
(the same schema again: services/text/constraints.Grammars hands out a copy of the compiled
matcher), for three schemas of growing size (load_tests/schemas.py: person, 3 fields; order,
nested objects and arrays; large, 50 properties).

Two measurements, each over --repeats variants of every schema (the first property renamed:
the same size, a new cache key, so every cold figure really compiles):

- llguidance alone, on SmolLM2's vocabulary (the GGUF's, as the llamacpp engine builds it):
  `grammar_from_json_schema` plus `LLMatcher(...)` (compile), `deep_copy` (what a cached
  schema costs a sequence), and the masks of a whole answer (an instance of the schema,
  tokenized: every `compute_bitmask` and `consume_token`), its first mask apart, on the new
  matcher's first copy (parts of the lexer are built lazily, as masks need them) and on a
  later copy.
- Through the llamacpp engine in this process (services/text/llamacpp_engine, no Ray, SmolLM2's
  F16 GGUF, configs/local.yaml's options, one thread, torch on one thread as in the replica):
  `validate` (where the replica compiles,
  on its event loop) and then the request's first token (max_tokens 1, one prompt whose KV
  cells the prefix cache keeps, so every row prefills the same one token): without a schema,
  with a new schema, with the same schema again.

Medians in ms. Nothing here depends on the network. A missing GGUF exits non-zero.

    python -m load_tests.schema_compile
    python -m load_tests.schema_compile --repeats 10 --gguf models/smollm2-gguf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from load_tests.schemas import SCHEMAS, count_properties, example, variant

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Describe the object in JSON."


def ms(seconds: float) -> float:
    return seconds * 1000.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def answer_masks(matcher: Any, tokens: list[int]) -> tuple[float, float]:
    """Seconds of the first mask, and of every mask of a whole answer (`tokens`, consumed in
    turn), on `matcher`; raises if the grammar refuses the answer."""
    first = total = 0.0
    for i, token in enumerate(tokens):
        t0 = time.perf_counter()
        matcher.compute_bitmask()
        spent = time.perf_counter() - t0
        total += spent
        first = spent if i == 0 else first
        if not matcher.consume_token(token):
            raise SystemExit(f"the grammar refused its own example: {matcher.get_error()}")
    if not matcher.is_accepting():
        raise SystemExit("the grammar does not accept its own example")
    return first, total


def llguidance_alone(tokenizer: Any, schema: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median ms: compile (JSON schema -> grammar -> matcher), deep_copy, and the masks of an
    answer (an instance of the schema, tokenized): its first mask and all of them, on the new
    matcher's first copy (cold: parts of the lexer are built lazily, as masks need them) and
    on a later copy (cached)."""
    from llguidance import LLMatcher

    from services.text.constraints import JSON_OPTIONS

    rows: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        rows.setdefault(key, []).append(ms(seconds))

    for k in range(repeats):
        t0 = time.perf_counter()
        renamed = variant(schema, 1000 + k)
        grammar = LLMatcher.grammar_from_json_schema(renamed, defaults=JSON_OPTIONS)
        matcher = LLMatcher(tokenizer, grammar, log_level=0)
        t1 = time.perf_counter()
        if matcher.is_error():
            raise SystemExit(f"llguidance refused the schema: {matcher.get_error()}")
        add("compile_ms", t1 - t0)
        answer = answer_tokens(tokenizer, renamed)
        rows["answer_tokens"] = [float(len(answer))]
        for label in ("cold", "cached"):
            t2 = time.perf_counter()
            copy = matcher.deep_copy()
            add("copy_ms", time.perf_counter() - t2)
            first, total = answer_masks(copy, answer)
            add(f"{label}_first_mask_ms", first)
            add(f"{label}_answer_masks_ms", total)
    return {key: median(values) for key, values in rows.items()}


def answer_tokens(tokenizer: Any, schema: dict[str, Any]) -> list[int]:
    """An instance of `schema` as json.dumps writes it (the grammar's separators), tokenized
    with the model's vocabulary."""
    return list(tokenizer.tokenize_str(json.dumps(example(schema))))


def engine_config(gguf: Path) -> Any:
    from core.config import ModelConfig, load_config

    base = next(m for m in load_config(ROOT / "configs" / "local.yaml").models
                if m.name == "smollm2")  # fmt: skip
    spec = base.model_dump(mode="json", exclude_none=True)
    spec["weights"] = str(gguf.resolve())
    spec["options"] = {**spec["options"], "context_per_sequence": 512, "kv_cells": 4096}
    return ModelConfig.model_validate(spec)


async def through_engine(
    engine: Any, schemas: dict[str, dict[str, Any]], repeats: int
) -> dict[str, dict[str, float]]:
    """Per schema, median ms: validate cold and cached, and time to the first token (validate
    + a 1-token answer) without a schema, cold and cached."""
    from core.types import OutputFormat, TextRequest

    async def first_token(schema: dict[str, Any] | None) -> tuple[float, float]:
        """(validate ms, validate + 1-token answer ms)."""
        extra: dict[str, Any] = {}
        if schema is not None:
            extra = {"output_format": OutputFormat.JSON_SCHEMA, "json_schema": json.dumps(schema)}
        request = TextRequest("compile", "smollm2", prompt=PROMPT, max_tokens=1,
                              temperature=0.0, **extra)  # fmt: skip
        t0 = time.perf_counter()
        engine.validate(request)
        t1 = time.perf_counter()
        await engine.generate(request)
        return ms(t1 - t0), ms(time.perf_counter() - t0)

    await first_token(None)  # the prompt's KV cells cached: every row below prefills 1 token
    out: dict[str, dict[str, float]] = {}
    for name, schema in schemas.items():
        rows: dict[str, list[float]] = {}
        for k in range(repeats):
            fresh = variant(schema, k)
            for label, s in (("plain", None), ("cold", fresh), ("cached", fresh)):
                v, total = await first_token(s)
                rows.setdefault(f"{label}_validate_ms", []).append(v)
                rows.setdefault(f"{label}_first_token_ms", []).append(total)
        out[name] = {key: median(values) for key, values in rows.items()}
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from services.text.llamacpp_engine import LlamaCppTextEngine

    config = engine_config(args.gguf)
    # As in the replica, where Ray sets OMP_NUM_THREADS to its num_cpus (1): the grammar's mask
    # is applied with torch on the scheduler thread, and torch's default of one thread per core
    # makes that step wait for threads the model's cores are busy with (ms per token).
    torch.set_num_threads(config.resources.torch_threads)
    engine = LlamaCppTextEngine(config)
    await engine.start()
    try:
        t0 = time.perf_counter()
        tokenizer = engine.llama.grammar_tokenizer()
        tokenizer_ms = ms(time.perf_counter() - t0)
        alone = {n: llguidance_alone(tokenizer, s, args.repeats) for n, s in SCHEMAS.items()}
        served = await through_engine(engine, SCHEMAS, args.repeats)
        compiled = engine.grammars.compiled
        description = engine.description
    finally:
        await engine.stop()
    return {"gguf": description, "tokenizer_ms": tokenizer_ms, "alone": alone,
            "engine": served, "compiled": compiled}  # fmt: skip


def table(result: dict[str, Any], repeats: int) -> str:
    lines = [
        f"Schema compile time, SmolLM2 ({result['gguf']}, vocabulary of 49,152 tokens), median "
        f"of {repeats} variants per schema, ms. llguidance's tokenizer, built once per model: "
        f"{result['tokenizer_ms']:.0f} ms.",
        "",
        "llguidance alone:",
        "",
        "| schema | properties | compile | deep_copy | first mask, new | first mask, copy | "
        "answer | answer's masks, new | answer's masks, copy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, schema in SCHEMAS.items():
        a = result["alone"][name]
        lines.append(
            f"| {name} | {count_properties(schema)} | {a['compile_ms']:.2f} | "
            f"{a['copy_ms']:.3f} | {a['cold_first_mask_ms']:.3f} | "
            f"{a['cached_first_mask_ms']:.3f} | {a['answer_tokens']:.0f} tokens | "
            f"{a['cold_answer_masks_ms']:.2f} | {a['cached_answer_masks_ms']:.2f} |"
        )
    lines += [
        "",
        "Through the llamacpp engine (validate: where the replica compiles, on its event loop; "
        "first token: validate plus a 1-token answer, the prompt's KV cells cached):",
        "",
        "| schema | validate, no schema | validate, cold | validate, cached | "
        "first token, no schema | first token, cold | first token, cached |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in SCHEMAS:
        e = result["engine"][name]
        lines.append(
            f"| {name} | {e['plain_validate_ms']:.2f} | {e['cold_validate_ms']:.2f} | "
            f"{e['cached_validate_ms']:.2f} | {e['plain_first_token_ms']:.1f} | "
            f"{e['cold_first_token_ms']:.1f} | {e['cached_first_token_ms']:.1f} |"
        )
    lines += [
        "",
        "Cold: the first request with a schema (compiled, then a copy of the new matcher); "
        "cached: the same schema again (a copy of the compiled matcher). New / copy: the "
        "matcher's first copy, whose masks build parts of the lexer lazily, and a later one. "
        "Answer: an instance of the schema (load_tests.schemas.example) as json.dumps writes "
        "it, every mask computed and every token consumed.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.schema_compile", description=__doc__)
    p.add_argument("--repeats", type=int, default=5, help="variants of each schema (medians)")
    p.add_argument("--gguf", type=Path, default=ROOT / "models" / "smollm2-f16",
                   help="a .gguf file or its folder (default: the F16 file served)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if not args.gguf.exists():
        raise SystemExit(f"{args.gguf} missing: run `make assets`")
    result = asyncio.run(main_async(args))
    expected = len(SCHEMAS) * args.repeats
    if result["compiled"] != expected:  # a cold row that hit the cache would be no cold row
        raise SystemExit(f"the engine compiled {result['compiled']} schemas, not {expected}")
    print(table(result, args.repeats))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
