"""One model's settings: its engine and options, batching, scaling, resources, limits and
admission. `core.config` holds them with the stack's own settings; the models are plain
pydantic objects so they pickle into Ray replicas unchanged."""

from __future__ import annotations

import posixpath
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.options import ModelTextOptions
from core.registry import ENGINES
from core.sizing import serve_requests_per_replica


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(_Strict):
    max_batch_size: int = Field(
        16, ge=1, le=1024, description="Most requests (text: sequences) run in one batch."
    )
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=5, description="How long a partly filled batch waits for more requests."
    )
    max_concurrent_batches: int = Field(
        1,
        ge=1,
        le=8,
        description="Image and audio models: batches in flight at once per replica. Above 1, "
        "one batch's encoding (PNG/WAV, on CPU threads) overlaps the next batch's forward pass "
        "(on the GPU); forward passes still run one at a time.",
    )
    gateway_coalescing: bool = Field(
        True,
        description="Image models: concurrent requests that queue up in the gateway share "
        "one Serve call (fewer Ray trips per image); a lone request is never delayed.",
    )


class ScalingConfig(_Strict):
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(1, ge=1, le=1000)
    initial_replicas: int | None = Field(None, ge=0, le=1000)
    target_ongoing_requests: float = Field(
        8.0, gt=0, description="Autoscaling target: ongoing requests per replica."
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="Per replica; at least max_batch_size x max_concurrent_batches. "
        "Default: twice that.",
    )
    max_queued_requests: int = Field(
        256, ge=-1, description="Per caller queue in Serve before BackPressureError; -1 unbounded."
    )
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(
        30.0,
        gt=0,
        description="Autoscaling: the window Serve averages ongoing requests over (Serve warns "
        "when it is not above its 10 s metrics interval; short windows are for tests).",
    )
    max_replicas_per_node: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Most replicas of this model on one Ray node (Serve's max_replicas_per_node): "
        "1 spreads them over nodes, so losing a node loses one replica; None: no limit.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ScalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ResourcesConfig(_Strict):
    num_cpus: float = Field(0.5, ge=0, description="Ray CPUs per replica (fractions allowed).")
    num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per replica (fractions allowed).")
    torch_threads: int = Field(1, ge=1, le=256, description="torch intra-op threads per replica.")
    memory_gb: float | None = Field(None, gt=0, description="Memory request per replica.")


class LimitsConfig(_Strict):
    """Per-request limits checked by the gateway before a request reaches a replica."""

    max_prompt_chars: int = Field(16_000, ge=1)
    max_tokens: int = Field(512, ge=1, description="Upper bound for a request's max_tokens.")
    max_n: int = Field(4, ge=1)
    max_stop: int = Field(8, ge=0, description="Most stop strings per request.")
    max_images: int = Field(16, ge=1, description="Upper bound for an image request's count.")
    max_text_chars: int = Field(2_000, ge=1, description="Longest text to synthesize.")


class AdmissionConfig(_Strict):
    """Gateway admission per model, counted in cost: text = tokens asked for (n x max_tokens
    + prompt chars / 4), image = images, audio = characters / 100 (about a sentence each).

    The gateway learns the model's service rate (cost per second) from completed requests and
    is told the live replica count; a request whose estimated completion (queued cost ahead /
    rate + its own service time) exceeds its deadline is refused at once with a retry hint."""

    default_deadline_s: float = Field(
        60.0,
        gt=0,
        description="Deadline assumed for a request that carries none (seconds from arrival).",
    )
    inflight_batches: float = Field(
        2.0,
        gt=0,
        description="In-flight bound per live replica, in batches of max_batch_size x "
        "max_concurrent_batches requests of the mean cost seen (image models: images, which "
        "is what their batches count), at most max_ongoing_requests requests: one running and "
        "one forming keeps a batched model busy; the rest waits in the gateway, where "
        "deadlines and tiers apply.",
    )
    max_inflight_cost: float | None = Field(
        None,
        gt=0,
        description="Hard cap on the cost in flight at once for this gateway; default: only the "
        "learned bound (inflight_batches x batch x live replicas x mean cost).",
    )
    max_queued_cost: float | None = Field(
        None,
        ge=0,
        description="Hard cap on the cost waiting for admission; default: none beyond "
        "max_queue_wait_s and the deadlines.",
    )
    max_queue_wait_s: Annotated[float, Field(gt=0)] | Literal["one_batch"] | None = Field(
        None,
        description="Cap on the estimated wait for admission: longer waits are refused at once "
        "even when the deadline would be met. A number of seconds, or one_batch: the time the "
        "model takes to drain one batch (the in-flight bound already holds the next batch, so "
        "a longer queue adds latency, not throughput; before the first completion nothing "
        "queues), for every request. Default: one_batch for requests that name a deadline "
        "shorter than default_deadline_s (the estimate's error grows with the queue and a short "
        "deadline has no slack for it), no cap for the others: a request that names no "
        "deadline, or a longer one, is refused only when its estimated completion passes it.",
    )
    batch_reserve: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="Share of the in-flight bound kept free of batch-tier work, so interactive "
        "arrivals start at once; batch work is refused while interactive work waits.",
    )
    prior_service_s: float = Field(
        1.0,
        gt=0,
        description="Service time of one request on an idle model assumed before the first "
        "completion; the prior rate is the in-flight bound drained in this time.",
    )
    rate_smoothing: float = Field(
        0.2,
        gt=0,
        le=1,
        description="EWMA weight of each completed request in the rate and service-time estimates.",
    )


ServedName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    modality: Modality
    engine: str
    weights: str | None = Field(
        None, description="A Hugging Face id, or a path ('./' or '../' = relative to the file)."
    )
    aliases: list[ServedName] = Field(
        default_factory=list,
        description="Other names clients may use for this model (e.g. an OpenAI model id such "
        "as text-davinci-002), as vLLM's --served-model-name; listed by ListModels and "
        "/v1/models, accepted by every API.",
    )
    default: bool = Field(False, description="Served when a request names no model.")
    description: str = ""
    license: str = ""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    chat_template: str | None = Field(
        None,
        description="Text models with a tokenizer (llamacpp, transformers, vllm): a Jinja chat "
        "template file used instead of the model's own (as vLLM's --chat-template and "
        "llama-server's --chat-template-file); a relative path is next to the config file. "
        "A template with a tool syntax of its own (Hermes' <tool_call>, Llama 3.1's JSON calls) "
        "gets tools in it.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Engine options, checked against the engine's class in core.options.",
    )
    batching: BatchingConfig = BatchingConfig()
    scaling: ScalingConfig = ScalingConfig()
    resources: ResourcesConfig = ResourcesConfig()
    limits: LimitsConfig = LimitsConfig()
    admission: AdmissionConfig = AdmissionConfig()
    access_log: bool = Field(
        False,
        description="Serve's access log: a line per request in the replica's log. Off, as vLLM's "
        "request log is: it cost the replica 3% of its CPU per echo call (BENCHMARKS.md section "
        "12); the gateway's metrics count every request either way.",
    )
    transport: Literal["auto", "direct", "serve"] = Field(
        "auto",
        description="How the gateway calls this model's replicas. direct: each replica serves its "
        "methods on a gRPC port of its own and the gateway routes to them itself (least loaded "
        "of two), which took the gateway's CPU per echo call from 1.25 to 0.91 ms "
        "(BENCHMARKS.md section 12); a replica that is starting, draining or unknown is "
        "reached through Serve as before. serve: always through Serve's handle and router. "
        "auto (the default): direct when the replica count is fixed, serve when it autoscales "
        "(Serve's autoscaler counts only the calls its own router makes).",
    )

    @field_validator("options")
    @classmethod
    def _options_typed(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Checked here so that errors name their field (`options.dtyp`); kept as given (the
        engine parses them again), so a dumped config carries no defaults."""
        modality, engine = info.data.get("modality"), info.data.get("engine")
        spec = ENGINES[modality.value].get(str(engine)) if modality is not None else None
        if spec is not None:  # an unknown engine is reported by _engine_known
            spec.options.model_validate(options)
        return options

    @model_validator(mode="after")
    def _engine_known(self) -> ModelConfig:
        known = ENGINES[self.modality.value]
        if self.engine not in known:
            raise ValueError(
                f"unknown {self.modality.value} engine {self.engine!r}; "
                f"choose one of {sorted(known)}"
            )
        if self.chat_template is not None and not issubclass(
            known[self.engine].options, ModelTextOptions
        ):
            raise ValueError(
                f"chat_template: the {self.modality.value} engine {self.engine!r} has no chat "
                "template (text models on llamacpp, transformers or vllm have)"
            )
        if (
            self.modality == Modality.IMAGE
            and self.limits.max_images > self.batching.max_batch_size
        ):
            raise ValueError(
                "limits.max_images must be <= batching.max_batch_size (image batches count images)"
            )
        batching = self.batching
        if self.modality == Modality.TEXT and batching.max_concurrent_batches != 1:
            raise ValueError(
                "batching.max_concurrent_batches must be 1 for text models "
                "(the text engine runs one continuous batch)"
            )
        ongoing = self.scaling.max_ongoing_requests
        in_flight = batching.max_batch_size * batching.max_concurrent_batches
        if ongoing is not None and ongoing < in_flight:
            raise ValueError(
                "scaling.max_ongoing_requests must be >= batching.max_batch_size x "
                f"batching.max_concurrent_batches = {in_flight} (it caps every batch)"
            )
        s = self.scaling
        per_replica = serve_requests_per_replica(self)  # all Serve's autoscaler ever sees
        if s.min_replicas != s.max_replicas and s.target_ongoing_requests >= per_replica:
            raise ValueError(
                f"scaling.target_ongoing_requests ({s.target_ongoing_requests:g}) must be below "
                f"the {per_replica:g} requests the gateway sends one replica at most (admission."
                "inflight_batches x batch, capped by max_ongoing_requests): Serve would never "
                "see enough to add a replica"
            )
        if self.transport == "direct" and s.min_replicas != s.max_replicas:
            raise ValueError(
                "transport direct needs a fixed replica count (scaling.min_replicas == "
                "max_replicas): Serve's autoscaler does not see direct calls; use auto or serve"
            )
        return self

    @property
    def direct_calls(self) -> bool:
        """Whether the gateway calls the replicas directly (`transport`)."""
        fixed = self.scaling.min_replicas == self.scaling.max_replicas
        return self.transport == "direct" or (self.transport == "auto" and fixed)

    @property
    def max_ongoing_requests(self) -> int:
        batching = self.batching
        return self.scaling.max_ongoing_requests or (
            2 * batching.max_batch_size * batching.max_concurrent_batches
        )

    def with_weights_resolved(self, base_dir: PurePath) -> ModelConfig:
        """Relative weight paths ('./', '../') are read relative to the config file's directory,
        as is a relative `chat_template` (any relative path: it is never a Hugging Face id).

        A local `Path` is resolved on this machine; a `PurePosixPath` (e.g. the config directory
        inside a container image, for `aigc k8s render`) is normalised without touching the disk.
        """
        update = {}
        w = self.weights
        if w and w.startswith(("./", "../")):
            update["weights"] = _resolved(base_dir / w)
        t = self.chat_template
        if t and not PurePath(t).is_absolute():
            update["chat_template"] = _resolved(base_dir / t)
        return self.model_copy(update=update) if update else self


def _resolved(joined: PurePath) -> str:
    return str(joined.resolve() if isinstance(joined, Path) else posixpath.normpath(joined))
