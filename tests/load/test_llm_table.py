"""load_tests.llm's table, ratios and structured-output goals, from hand-made rows (the vLLM rows of
issue 23; the schema rows of issue 31), and the schemas they use."""

from __future__ import annotations

from load_tests.llm import compare, table


def cells(tok_s: float, ttft_ms: float) -> list[dict]:
    return [
        {"concurrency": c, "max_tokens": 64, "output_throughput": tok_s * c,
         "median_ttft_ms": ttft_ms * c, "p99_ttft_ms": 2 * ttft_ms * c, "median_tpot_ms": 50.0,
         "p99_tpot_ms": 60.0}
        for c in (1, 16)
    ]  # fmt: skip


def test_vllm_rows_are_compared_and_their_threads_and_start_up_named() -> None:
    servers = [
        {"server": "llama-server", "skipped": "skipped: not chosen"},
        {"server": "vllm", "ready_seconds": 62.2, "cells": cells(10.0, 200.0)},
        {"server": "aigc-vllm", "ready_seconds": 31.4, "cells": cells(9.5, 210.0)},
    ]
    ratios = compare(servers, "aigc-vllm", "vllm")
    assert ratios == {
        "max_tokens=64 c=1": "0.95x tok/s, TTFT p50 +10 ms, TTFT p99 1.05x",
        "max_tokens=64 c=16": "0.95x tok/s, TTFT p50 +160 ms, TTFT p99 1.05x",
    }
    meta = {"command": "python -m load_tests.llm", "date": "d", "cores": 2, "cpu": "x",
            "commit": "abc", "load_at_start": 0.5}  # fmt: skip
    text = table({"meta": meta, "threads": 1, "servers": servers, "prompt_cache": True,
                  "ratios": {}, "vllm_ratios": ratios, "vllm_compile": False})  # fmt: skip
    assert (
        "vLLM rows: vLLM's own CPU threads (VLLM_CPU_OMP_THREADS_BIND=auto), enforce_eager" in text
    )
    assert "thread(s) in the llama.cpp" not in text  # no such row ran
    assert "Ready after: vllm 62.2 s, aigc-vllm 31.4 s." in text
    assert "aigc-serve + vllm / vLLM's own server" in text
    assert "- max_tokens=64 c=16: 0.95x tok/s, TTFT p50 +160 ms, TTFT p99 1.05x" in text
    assert "| aigc-vllm | 64 | 16 | 152.0 | 3360 |" in text
    assert "| llama-server | skipped: not chosen |" in text


def test_rounds_of_servers_alone_are_compared_round_by_round() -> None:
    """`--rounds`: each server alone, several rounds; a round's rows against the same round's."""
    servers = [
        {"server": "vllm", "round": 1, "ready_seconds": 60.0, "cells": cells(10.0, 200.0)},
        {"server": "aigc-vllm", "round": 1, "ready_seconds": 30.0, "cells": cells(9.0, 220.0)},
        {"server": "aigc-vllm", "round": 2, "ready_seconds": 30.0, "cells": cells(8.0, 200.0)},
        {"server": "vllm", "round": 2, "ready_seconds": 60.0, "cells": cells(10.0, 250.0)},
    ]
    ratios = compare(servers, "aigc-vllm", "vllm")
    assert ratios["round 1, max_tokens=64 c=1"] == "0.90x tok/s, TTFT p50 +20 ms, TTFT p99 1.10x"
    assert ratios["round 2, max_tokens=64 c=1"] == "0.80x tok/s, TTFT p50 -50 ms, TTFT p99 0.80x"
    meta = {"command": "c", "date": "d", "cores": 2, "cpu": "x", "commit": "abc",
            "load_at_start": 0.5}  # fmt: skip
    text = table({"meta": meta, "threads": 1, "servers": servers, "prompt_cache": True,
                  "ratios": {}, "vllm_ratios": ratios, "vllm_compile": False,
                  "rounds": 2})  # fmt: skip
    assert "one server at a time, alone on the machine, 2 rounds" in text
    assert "| aigc-vllm (round 2) | 64 | 1 | 8.0 |" in text


def test_structured_rows_give_the_goals_with_their_figures() -> None:
    from load_tests.llm import goals, structured_ratios

    servers = [
        {"server": "llama-server", "ready_seconds": 1.0, "cells": cells(10.0, 100.0)},
        {"server": "llama-server [person]", "ready_seconds": 1.0, "cells": cells(9.0, 100.0)},
        {"server": "aigc-llamacpp", "ready_seconds": 9.0, "cells": cells(10.0, 100.0)},
        {"server": "aigc-llamacpp [person]", "ready_seconds": 9.0, "cells": cells(7.5, 110.0)},
    ]
    lines = goals(servers, "person")
    assert lines == [
        "MISSED: constrained / unconstrained tok/s on aigc-llamacpp, max_tokens=64 c=1: 0.75x "
        "(goal >= 0.8x; 7.5 / 10.0 tok/s)",
        "MISSED: constrained / unconstrained tok/s on aigc-llamacpp, max_tokens=64 c=16: 0.75x "
        "(goal >= 0.8x; 120.0 / 160.0 tok/s)",
        "MISSED: aigc-llamacpp constrained / llama-server constrained tok/s, max_tokens=64 c=1: "
        "0.83x (goal >= 0.9x; 7.5 / 9.0 tok/s)",
        "MISSED: aigc-llamacpp constrained / llama-server constrained tok/s, max_tokens=64 c=16: "
        "0.83x (goal >= 0.9x; 120.0 / 144.0 tok/s)",
    ]
    ratios = structured_ratios(servers, "person")
    assert ratios["aigc-llamacpp [person] / llama-server [person]"]["max_tokens=64 c=1"] == (
        "0.83x tok/s, TTFT p50 +10 ms, TTFT p99 1.10x"
    )
    assert ratios["aigc-vllm [person] / vllm [person]"] == {}
    assert goals(servers[2:], "person")[-1] == (
        "not measured: aigc-llamacpp constrained / llama-server constrained tok/s (needs the "
        "rows 'aigc-llamacpp [person]' and 'llama-server [person]')"
    )
    meta = {"command": "python -m load_tests.llm --structured person", "date": "d", "cores": 2,
            "cpu": "x", "commit": "abc", "load_at_start": 0.5}  # fmt: skip
    text = table({"meta": meta, "threads": 1, "servers": servers, "prompt_cache": True,
                  "ratios": {}, "vllm_compile": False,
                  "structured": {"name": "person", "properties": 3, "schema_only": False},
                  "structured_ratios": ratios, "goals": lines})  # fmt: skip
    assert "rows [person]: response_format json_schema (3 properties)" in text
    assert "| server | max_tokens | c | tok/s | tok/request | TTFT p50 ms |" in text
    assert "| aigc-llamacpp [person] | 64 | 16 | 120.0 | 0.0 | 1760 |" in text
    title = "aigc-llamacpp [person] / llama-server [person]"
    assert f"{title} (tok/s; TTFT p50 difference; TTFT p99 ratio):" in text
    assert "- MISSED: constrained / unconstrained tok/s on aigc-llamacpp, max_tokens=64 c=1" in text


def test_the_constrained_variant_asks_for_the_schema_without_ignore_eos() -> None:
    from load_tests.llm import variants
    from load_tests.schemas import LARGE, PERSON, count_properties, variant

    plain, constrained = variants(PERSON, "person", schema_only=False)
    base = {"ignore_eos": True, "cache_prompt": True}
    assert plain.matched and plain.body(base) == base and plain.label("x") == "x"
    assert constrained.label("aigc-llamacpp") == "aigc-llamacpp [person]"
    assert constrained.body(base) == {
        "cache_prompt": True,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "person", "schema": PERSON}},
    }  # fmt: skip
    assert [v.name for v in variants(PERSON, "person", schema_only=True)] == ["person"]
    renamed = variant(PERSON, 7)
    assert list(renamed["properties"]) == ["name_7", "age", "city"]
    assert renamed["required"] == ["name_7", "age", "city"] and "name" in PERSON["properties"]
    assert count_properties(PERSON) == 3 and count_properties(LARGE) == 50


def test_every_schema_has_a_valid_example() -> None:
    import jsonschema

    from load_tests.schemas import SCHEMAS, example

    for schema in SCHEMAS.values():
        jsonschema.validate(example(schema), schema)
