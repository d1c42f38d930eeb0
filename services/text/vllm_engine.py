"""vLLM behind our text engine protocol (GPU): continuous batching and paged KV cache by vLLM.

Uses vLLM's public async API only: `AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`,
`engine.generate(prompt, SamplingParams, request_id)` (an async iterator of cumulative
`RequestOutput`s), `engine.abort(request_id)`, `engine.check_health()`, `engine.get_tokenizer()`.
Deltas are computed here from the cumulative outputs, so the adapter works whether or not the
installed vLLM supports delta output. vLLM's own Prometheus metrics (registered in the replica's
default registry) are bridged into `stats()`, which the replica exports through Ray.

Why not `ray.serve.llm`: it serves an OpenAI HTTP API through its own router and ingress; our
gateway already owns routing, admission and the aigc.v1 API, and needs the engine behind the
same protocol as the CPU engine (same streaming, abort and error mapping).

Install with `pip install '.[gpu]'`. Options: `core.options.VllmTextOptions` (`engine_args`
go to `AsyncEngineArgs` as they are).
"""

from __future__ import annotations

import importlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from core.config import ModelConfig
from core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from core.options import VllmTextOptions
from core.types import FinishReason, TextChunk, TextRequest
from services.text.engine import TextEngine, check_prompt_format, prompt_text

_FINISH = {
    "length": FinishReason.LENGTH,
    "stop": FinishReason.STOP,
    "abort": FinishReason.CANCELLED,
}
# vLLM metric name -> our stat name (exported as aigc_replica_engine_stat{stat=...}).
BRIDGED_METRICS = {
    "vllm:num_requests_running": "running_sequences",
    "vllm:num_requests_waiting": "waiting_sequences",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",
    "vllm:generation_tokens_total": "generated_tokens_total",
    "vllm:prompt_tokens_total": "prompt_tokens_total",
    "vllm:num_preemptions_total": "preemptions_total",
}


class VllmTextEngine(TextEngine):
    options: VllmTextOptions

    def __init__(self, config: ModelConfig, vllm_module: ModuleType | None = None) -> None:
        super().__init__(config)
        self._vllm = vllm_module  # tests inject a stand-in; production imports vllm
        self.cancelled = 0

    async def _start(self) -> None:
        vllm = self._vllm or importlib.import_module("vllm")
        self._vllm = vllm
        args = vllm.AsyncEngineArgs(model=self.require_weights(), **self.options.engine_args)
        self.engine = vllm.AsyncLLMEngine.from_engine_args(args)
        tokenizer = self.engine.get_tokenizer()  # a coroutine in most vLLM releases
        self.tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        check_prompt_format(self.tokenizer, self.options.prompt_format, self.config.name)
        self.device = "cuda"

    async def check_health(self) -> None:
        await super().check_health()
        try:
            await self.engine.check_health()
        except Exception as exc:
            raise Unavailable(f"vLLM engine unhealthy: {exc}") from exc

    def stats(self) -> dict[str, float]:
        from prometheus_client import REGISTRY

        out: dict[str, float] = {"cancelled_requests_total": float(self.cancelled)}
        for family in REGISTRY.collect():
            for sample in family.samples:
                stat = BRIDGED_METRICS.get(sample.name)
                if stat is not None and sample.labels.get("model_name", "") in (
                    "",
                    self.config.weights,
                ):
                    out[stat] = out.get(stat, 0.0) + float(sample.value)
        return out

    def _prompt(self, request: TextRequest) -> str:
        templated = prompt_text(
            request, self.tokenizer, self.options.prompt_format, self.config.name
        )
        return templated if templated is not None else request.prompt or ""

    def sampling_params(self, request: TextRequest) -> Any:
        assert self._vllm is not None
        kwargs: dict[str, Any] = {
            "n": request.n,
            "max_tokens": request.max_tokens or self.options.default_max_tokens,
            "stop": list(request.stop),
            "ignore_eos": request.ignore_eos,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.top_k is not None:
            kwargs["top_k"] = request.top_k if request.top_k > 0 else -1  # vLLM: -1 = off
        if request.seed is not None:
            kwargs["seed"] = request.seed % 2**63
        return self._vllm.SamplingParams(**kwargs)

    async def stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        prompt = self._prompt(request)
        rid = f"{request.request_id}-{uuid.uuid4().hex[:8]}"
        sent_chars = [0] * request.n
        sent_tokens = [0] * request.n
        done = [False] * request.n
        try:
            stream = self.engine.generate(prompt, self.sampling_params(request), rid)
            async for output in stream:
                if request.deadline is not None and time.time() > request.deadline:
                    raise DeadlineExceeded("deadline passed during generation")
                for c in output.outputs:
                    i = c.index
                    if done[i]:
                        continue
                    delta = c.text[sent_chars[i] :]
                    tokens = len(c.token_ids) - sent_tokens[i]
                    finish = _FINISH.get(c.finish_reason) if c.finish_reason else None
                    if not delta and finish is None:
                        continue
                    sent_chars[i], sent_tokens[i] = len(c.text), len(c.token_ids)
                    chunk = TextChunk(i, delta, tokens, finish)
                    if finish is not None:
                        done[i] = True
                        chunk.prompt_tokens = len(output.prompt_token_ids or [])
                    yield chunk
        except ValueError as exc:  # vLLM validates prompts and params with ValueError
            raise InvalidArgument(str(exc), field="prompt") from None
        finally:
            if not all(done):
                self.cancelled += 1
                await self.engine.abort(rid)
