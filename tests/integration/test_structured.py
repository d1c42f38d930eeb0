"""Structured outputs, tools, logprobs, penalties and logit bias on the real stack: SmolLM2's
GGUF on llama.cpp (`gguf`) and the tiny transformers model (`tiny`, random weights: what it
says is noise, but its grammar, logprobs and bias are real). The checks are
tests/structured_checks.py's, which the vllm tier runs on vLLM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from tests import structured_checks as check
from tests.tiny_models import SMOLLM2_GGUF

pytestmark = pytest.mark.integration

ENGINES = ["gguf", "tiny"]


@pytest.fixture(scope="module")
def oai(stack: Any) -> openai.OpenAI:
    base = f"http://127.0.0.1:{stack.gateway.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenizers(tiny_dir: Path) -> dict[str, Callable[[str], list[int]]]:
    """Text -> token ids with each model's own vocabulary (loaded here, vocabulary only)."""
    import llama_cpp
    from transformers import AutoTokenizer

    from services.text.llamacpp_model import gguf_file

    vocab = llama_cpp.Llama(str(gguf_file(str(SMOLLM2_GGUF))), vocab_only=True, verbose=False)
    tiny = AutoTokenizer.from_pretrained(tiny_dir / "tiny-text")
    return {
        "gguf": lambda text: vocab.tokenize(text.encode(), add_bos=False, special=True),
        "tiny": lambda text: list(tiny(text, add_special_tokens=False).input_ids),
    }


def test_parse_fills_a_pydantic_model_on_the_default_model(oai: openai.OpenAI) -> None:
    check.check_parse_fills_a_pydantic_model(oai, "gguf")


@pytest.mark.parametrize("model", ENGINES)
def test_json_schema_streamed_and_unary_with_n_and_seed(oai: openai.OpenAI, model: str) -> None:
    check.check_json_schema_streamed_and_unary_with_n_and_seed(oai, model)


@pytest.mark.parametrize("model", ENGINES)
def test_json_object_and_a_max_tokens_cut(oai: openai.OpenAI, model: str) -> None:
    check.check_json_object_and_a_max_tokens_cut(oai, model)


def test_tools_round_trip_call_result_answer(oai: openai.OpenAI) -> None:
    check.check_tools_round_trip_call_result_answer(oai, "gguf")


def test_a_named_tool_streams_in_openai_deltas(oai: openai.OpenAI) -> None:
    check.check_a_named_tool_streams_in_openai_deltas(oai, "gguf")  # tiny's context is too short


def test_a_repeated_call_ends_the_answer(oai: openai.OpenAI) -> None:
    check.check_a_repeated_call_ends_the_answer(oai, "gguf", seed=32)


@pytest.mark.parametrize("model", ENGINES)
def test_greedy_logprobs_pick_the_top_token(oai: openai.OpenAI, model: str) -> None:
    check.check_greedy_logprobs_pick_the_top_token(oai, model)


def test_completions_logprobs_in_the_legacy_shape(oai: openai.OpenAI) -> None:
    check.check_completions_logprobs_in_the_legacy_shape(oai, "gguf")


@pytest.mark.parametrize("model", ENGINES)
def test_logit_bias_minus_100_bans_a_token(
    oai: openai.OpenAI, model: str, tokenizers: dict[str, Callable[[str], list[int]]]
) -> None:
    check.check_logit_bias_minus_100_bans_a_token(oai, model, tokenizers[model])


def test_penalties_change_repetition(oai: openai.OpenAI) -> None:
    check.check_penalties_change_repetition(oai, "gguf")


@pytest.mark.parametrize(("extra", "field"), check.BAD)
def test_bad_input_is_a_400_naming_the_field(
    oai: openai.OpenAI, extra: dict[str, Any], field: str
) -> None:
    check.check_bad_input_is_a_400_naming_the_field(oai, "gguf", extra, field)


def test_echo_with_logprobs_is_refused_by_name(oai: openai.OpenAI) -> None:
    check.check_echo_with_logprobs_is_refused_by_name(oai, "gguf", "llamacpp")
