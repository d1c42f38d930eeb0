"""Structured outputs (vLLM's own, through its `guidance` backend), tools, logprobs,
penalties and logit bias on vLLM's real engine: tests/structured_checks.py, the checks the
llamacpp and transformers engines pass in tests/integration/test_structured.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests import structured_checks as check
from tests.vllm.conftest import WEIGHTS

MODEL = "smollm2"


@pytest.fixture(scope="module")
def oai(vllm_stack: Any) -> openai.OpenAI:
    base = f"http://127.0.0.1:{vllm_stack.gateway.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def tokenize() -> Callable[[str], list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(WEIGHTS)
    return lambda text: list(tokenizer(text, add_special_tokens=False).input_ids)


def test_parse_fills_a_pydantic_model(oai: openai.OpenAI) -> None:
    check.check_parse_fills_a_pydantic_model(oai, MODEL)


def test_json_schema_streamed_and_unary_with_n_and_seed(oai: openai.OpenAI) -> None:
    check.check_json_schema_streamed_and_unary_with_n_and_seed(oai, MODEL)


def test_json_object_and_a_max_tokens_cut(oai: openai.OpenAI) -> None:
    check.check_json_object_and_a_max_tokens_cut(oai, MODEL)


def test_tools_round_trip_call_result_answer(oai: openai.OpenAI) -> None:
    check.check_tools_round_trip_call_result_answer(oai, MODEL)


def test_a_named_tool_streams_in_openai_deltas(oai: openai.OpenAI) -> None:
    check.check_a_named_tool_streams_in_openai_deltas(oai, MODEL)


def test_greedy_logprobs_pick_the_top_token(oai: openai.OpenAI) -> None:
    check.check_greedy_logprobs_pick_the_top_token(oai, MODEL)


def test_completions_logprobs_in_the_legacy_shape(oai: openai.OpenAI) -> None:
    check.check_completions_logprobs_in_the_legacy_shape(oai, MODEL)


def test_logit_bias_minus_100_bans_a_token(
    oai: openai.OpenAI, tokenize: Callable[[str], list[int]]
) -> None:
    check.check_logit_bias_minus_100_bans_a_token(oai, MODEL, tokenize)


def test_penalties_change_repetition(oai: openai.OpenAI) -> None:
    check.check_penalties_change_repetition(oai, MODEL)


@pytest.mark.parametrize(("extra", "field"), check.BAD)
def test_bad_input_is_a_400_naming_the_field(
    oai: openai.OpenAI, extra: dict[str, Any], field: str
) -> None:
    check.check_bad_input_is_a_400_naming_the_field(oai, MODEL, extra, field)


def test_echo_with_logprobs_is_refused_by_name(oai: openai.OpenAI) -> None:
    check.check_echo_with_logprobs_is_refused_by_name(oai, MODEL, "vllm")
