"""The transport-neutral data plane: authorize -> resolve model -> admit -> replica -> metrics
-> cancel.

Both front ends (gRPC servicers, OpenAI HTTP routes) convert their wire format to the domain
types of `core.types`, call one of the operations here inside `DataPlane.call(...)`, and
convert the result back. Only this module knows about admission, retries, coalescing, deadlines,
cancellation and the request metrics; it raises the project's errors (`core.errors`), which
`gateway.errors` maps to a gRPC code and an HTTP status.

The call and its relays (deadline, cancel, merge, retry) are `gateway.calls`.
Cancellation: when the client goes away (gRPC cancels the handler task; Starlette cancels the
SSE body iterator or our disconnect watcher cancels the unary call) the awaiting code gets
CancelledError and the Serve request is cancelled too, which reaches the replica (awaiting
alone would leave it running). Deadlines are enforced here for both front ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from core.config import AigcConfig, Modality, ModelConfig
from core.errors import AigcError, Failure
from core.replica import AudioReplica, ImageReplica, ModelFacts, TextReplica, VideoReplica
from core.types import (
    AudioChunk,
    AudioRequest,
    AudioResult,
    ImageRequest,
    ImageResult,
    StreamUsage,
    TextChunk,
    TextRequest,
    TextResult,
    VideoChunk,
    VideoRequest,
)
from gateway.admission import Admission
from gateway.auth import Authenticator
from gateway.calls import (
    Call,
    all_or_none,
    merge,
    relay_stream,
    relay_unary,
    retrying,
    within_deadline,
)
from gateway.coalesce import Coalescer
from gateway.errors import classify, client_failure
from gateway.metrics import GatewayMetrics
from gateway.registry import ModelRegistry, ModelState

T = TypeVar("T")
ALL = "all"  # metric label of calls about every modality (ListModels)


@dataclass(frozen=True)
class ModelView:
    """A served model with its live state, for ListModels and /v1/models."""

    config: ModelConfig
    state: ModelState
    default: bool

    @property
    def facts(self) -> ModelFacts:
        return self.state.facts or ModelFacts()


R = TypeVar("R", ImageRequest, AudioRequest, VideoRequest)


def seeded(request: R) -> R:
    """The request with its seed fixed: the client's, else one drawn here, once, before the
    first attempt, so a retry reproduces the same output."""
    if request.seed is not None:
        return request
    return dataclasses.replace(request, seed=secrets.randbits(63))


class TextStream:
    """A text request's deltas as the data plane relays them, each tagged with its part's
    index, and the stream's usage (`usage`), which the data plane keeps as the deltas pass:
    complete once `complete` (the last completion has finished)."""

    def __init__(
        self, chunks: AsyncGenerator[tuple[int, TextChunk], None], usage: StreamUsage
    ) -> None:
        self._chunks = chunks
        self.usage = usage

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> tuple[int, TextChunk]:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    @property
    def complete(self) -> bool:
        return self.usage.finished == self.usage.completions


class DataPlane:
    def __init__(
        self,
        config: AigcConfig,
        registry: ModelRegistry,
        metrics: GatewayMetrics,
        auth: Authenticator | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.auth = auth if auth is not None else Authenticator(config.gateway.security)
        # the one owner of the models' admission gates
        self.admission = Admission(config, metrics)
        self.retries = config.gateway.retries
        self.coalescers: dict[str, Coalescer] = {}
        metrics.watch_gates(lambda: self.admission.gates)

    # ---- who is calling -------------------------------------------------------------------
    def authorize(self, protocol: str, authorization: str | None, *, rated: bool = True) -> str:
        """The caller's key name from an `authorization` header value; raises Unauthenticated,
        or (when `rated`) Overloaded past the caller's rate. Every refusal is counted once, in
        `aigc_rejected_requests_total{reason}` with the same reasons for both front ends
        ("unauthenticated", "rate_limited")."""
        try:
            return self.auth.check(authorization) if rated else self.auth.identify(authorization)
        except AigcError as exc:
            reason = str(exc.details.get("reason", "unauthenticated"))
            self.metrics.rejected.labels(reason, protocol).inc()
            raise

    # ---- the call: metrics, in-flight gauge, status code ----------------------------------
    @contextlib.asynccontextmanager
    async def call(
        self,
        protocol: str,
        method: str,
        modality: Modality | None,
        model_name: str,
        request_id: str,
        deadline: float | None,
    ) -> AsyncIterator[Call]:
        """Wraps one client call: the code it ends with (google.rpc.Code name), its duration,
        the in-flight gauge. Exceptions pass through for the front end to render."""
        call = Call(protocol, method, modality, request_id, deadline)
        modality_label = modality.value if modality else ALL
        call.model = self.registry.label(modality, model_name) if modality else ALL
        gauge = self.metrics.inflight.labels(modality_label, call.model, protocol)
        gauge.inc()
        code = "OK"
        try:
            yield call
        except BaseException as exc:
            code = self._code_of(exc, call)
            raise
        finally:
            gauge.dec()
            labels = (modality_label, call.model, method)
            self.metrics.requests.labels(*labels, call.code or code, protocol).inc()
            self.metrics.duration.labels(*labels, protocol).observe(
                time.perf_counter() - call.start
            )

    @staticmethod
    def _code_of(exc: BaseException, call: Call) -> str:
        # GeneratorExit: gRPC closed a streaming handler at its `yield` (the client went away
        # while a message was being written) instead of cancelling its task
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return "DEADLINE_EXCEEDED" if call.out_of_time() else "CANCELLED"
        return classify(exc).code

    def resolve(self, call: Call, name: str) -> ModelConfig:
        """The model a request names (a name or an alias; empty: the modality's default)."""
        assert call.modality is not None, "a call about one modality"
        model = self.registry.resolve(call.modality, name)
        call.model = model.name
        return model

    def facts(self, model: ModelConfig) -> ModelFacts:
        """What the model's replicas reported about it (sizes, labels, voices, context)."""
        return self.registry.facts(model)

    @staticmethod
    def failed_in_band(call: Call, exc: BaseException) -> Failure:
        """A failure a front end reports inside a response that already began (an SSE error
        event after HTTP 200): what the client is told, and the code the call ends with."""
        failure = client_failure(exc, call.request_id)
        call.code = failure.code
        return failure

    def models(self, modality: Modality | None = None) -> list[ModelView]:
        out = []
        for m in self.config.models:
            if modality is not None and m.modality != modality:
                continue
            default = self.config.default_model(m.modality)
            is_default = default is not None and default.name == m.name
            out.append(ModelView(m, self.registry.state[m.name], is_default))
        return out

    # ---- text ----------------------------------------------------------------------------
    async def generate_text(
        self, call: Call, model: ModelConfig, request: TextRequest
    ) -> TextResult:
        (result,) = await self.generate_texts(call, model, [request])
        return result

    async def generate_texts(
        self, call: Call, model: ModelConfig, requests: Sequence[TextRequest]
    ) -> list[TextResult]:
        """The parts of one request (a completion's list of prompts): admitted as one, run
        together; the first failure cancels the others."""
        replica = self.registry.replica(model)
        async with self.admission.admit(call, model, requests):
            async with within_deadline(call):
                results = await all_or_none(
                    [relay_unary(replica.unary(TextReplica.generate, r)) for r in requests]
                )
        m, labels = self.metrics, (model.name, call.protocol)
        m.prompt_tokens.labels(*labels).inc(sum(r.prompt_tokens for r in results))
        m.output_tokens.labels(*labels).inc(sum(r.completion_tokens for r in results))
        return results

    def stream_texts(
        self, call: Call, model: ModelConfig, requests: Sequence[TextRequest]
    ) -> TextStream:
        """Deltas of every part's completions as they come, tagged with the part's index;
        the parts are admitted as one (when the stream is first read). The stream's usage is
        kept here, for every front end. Records TTFT, ITL, TPOT and token counts."""
        usage = StreamUsage(completions=sum(r.n for r in requests))
        return TextStream(self._relay_texts(call, model, requests, usage), usage)

    async def _relay_texts(
        self,
        call: Call,
        model: ModelConfig,
        requests: Sequence[TextRequest],
        usage: StreamUsage,
    ) -> AsyncGenerator[tuple[int, TextChunk], None]:
        replica = self.registry.replica(model)
        m, labels = self.metrics, (model.name, call.protocol)
        first: float | None = None
        last = 0.0
        async with self.admission.admit(call, model, requests):
            streams = [  # admitted: now they may start
                relay_stream(replica.stream(TextReplica.generate_stream, r), call) for r in requests
            ]
            async with contextlib.aclosing(merge(streams)) as chunks:
                async for k, chunk in chunks:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                        m.ttft.labels(*labels).observe(now - call.start)
                    else:
                        m.itl.labels(*labels).observe(now - last)
                    last = now
                    usage.add(chunk, k)
                    m.output_tokens.labels(*labels).inc(chunk.token_count)
                    yield k, chunk
        m.prompt_tokens.labels(*labels).inc(usage.prompt_tokens)
        tokens = usage.completion_tokens
        if first is not None and tokens > 1:
            m.tpot.labels(*labels).observe((last - first) / (tokens - 1))

    # ---- image ---------------------------------------------------------------------------
    def _coalescer(self, model: ModelConfig) -> Coalescer:
        c = self.coalescers.get(model.name)
        if c is None:
            replica = self.registry.replica(model)
            c = Coalescer(
                lambda items: replica.unary(ImageReplica.generate_many, items),
                max_items=model.batching.max_batch_size,
                max_outstanding=2 * model.scaling.max_replicas,
            )
            self.coalescers[model.name] = c
        return c

    async def generate_images(
        self, call: Call, model: ModelConfig, request: ImageRequest
    ) -> ImageResult:
        request = seeded(request)
        if model.batching.gateway_coalescing:
            coalescer = self._coalescer(model)

            def attempt() -> Awaitable[ImageResult]:
                return coalescer.submit(request)
        else:
            replica = self.registry.replica(model)

            def attempt() -> Awaitable[ImageResult]:
                return relay_unary(replica.unary(ImageReplica.generate, request))

        async with self.admission.admit(call, model, [request]):
            async with within_deadline(call):
                result = await retrying(attempt, self.retries)
        self.metrics.images.labels(model.name, call.protocol).inc(len(result.images))
        return result

    # ---- audio ---------------------------------------------------------------------------
    async def synthesize(
        self, call: Call, model: ModelConfig, request: AudioRequest
    ) -> AudioResult:
        request = seeded(request)
        replica = self.registry.replica(model)
        async with self.admission.admit(call, model, [request]):
            async with within_deadline(call):
                result = await retrying(
                    lambda: relay_unary(replica.unary(AudioReplica.synthesize, request)),
                    self.retries,
                )
        self.metrics.audio_seconds.labels(model.name, call.protocol).inc(result.duration_s)
        return result

    async def stream_speech(
        self, call: Call, model: ModelConfig, request: AudioRequest
    ) -> AsyncGenerator[AudioChunk, None]:
        request = seeded(request)
        replica = self.registry.replica(model)
        m, labels = self.metrics, (model.name, call.protocol)
        first = True
        async with self.admission.admit(call, model, [request]):
            chunks = replica.stream(AudioReplica.synthesize_stream, request)  # admitted: start
            async for chunk in relay_stream(chunks, call):
                if first:
                    m.ttfa.labels(*labels).observe(time.perf_counter() - call.start)
                    first = False
                m.audio_seconds.labels(*labels).inc(chunk.duration_s)
                yield chunk

    # ---- video ---------------------------------------------------------------------------
    async def stream_video(
        self, call: Call, model: ModelConfig, request: VideoRequest
    ) -> AsyncGenerator[VideoChunk, None]:
        """A clip's progress, then the clip (the last chunk). Admitted as one request costing
        its seconds; not retried here (the job runner makes the clip again)."""
        request = seeded(request)
        replica = self.registry.replica(model)
        async with self.admission.admit(call, model, [request]):
            chunks = replica.stream(VideoReplica.generate_stream, request)  # admitted: start
            async for chunk in relay_stream(chunks, call):
                yield chunk
