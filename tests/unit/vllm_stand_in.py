"""A STAND-IN for the part of vLLM's public async API that `VllmTextEngine` uses.

Not vLLM and not a model: it exists so the adapter's contract (request building, cumulative
outputs turned into deltas, abort on cancel, error mapping) is tested on CPU where vLLM cannot
be installed. Signatures follow vLLM's documented `AsyncEngineArgs`, `AsyncLLMEngine`,
`SamplingParams` and `RequestOutput`/`CompletionOutput`. It "generates" the prompt's words in
reverse order, one word per step, so outputs are predictable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


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

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs) -> AsyncLLMEngine:
        return cls(args)

    async def get_tokenizer(self) -> _Tokenizer:
        return _Tokenizer()

    async def check_health(self) -> None:
        return None

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def generate(
        self, prompt: str, sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        words = prompt.split()
        if len(words) > self.MAX_MODEL_LEN:
            raise ValueError(f"The decoder prompt (length {len(words)}) is longer than the "
                             f"maximum model length of {self.MAX_MODEL_LEN}")  # fmt: skip
        self.requests.append((request_id, sampling_params))
        answer = list(reversed(words))
        prompt_ids = list(range(len(words)))
        texts = [""] * sampling_params.n
        ids: list[list[int]] = [[] for _ in range(sampling_params.n)]
        for step in range(sampling_params.max_tokens):
            await asyncio.sleep(self.step_delay_s)
            outs = []
            for i in range(sampling_params.n):
                reason = None
                if step < len(answer):
                    texts[i] += ("" if step == 0 else " ") + answer[step]
                    ids[i].append(step)
                if step + 1 >= min(len(answer), sampling_params.max_tokens):
                    reason = "stop" if len(answer) <= sampling_params.max_tokens else "length"
                outs.append(CompletionOutput(i, texts[i], list(ids[i]), reason))
            finished = all(o.finish_reason for o in outs)
            yield RequestOutput(request_id, prompt_ids, outs, finished)
            if finished:
                return
