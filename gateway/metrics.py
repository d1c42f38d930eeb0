"""Gateway metrics (prometheus-client), served on their own HTTP port at /metrics.

Names and meanings follow the README's Metrics table and vLLM's definitions: TTFT is the time
from request arrival to the first streamed token, ITL the gap between consecutive streamed
chunks, TPOT (e2e - TTFT) / (output tokens - 1). Label values come from config only: a request
for an unknown model is counted under model="unknown", so series stay bounded; `protocol` is
grpc or http and `code` a google.rpc.Code name for both front ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from core.types import Priority
    from gateway.gate import CostGate

UNKNOWN_MODEL = "unknown"
# Generative latencies: milliseconds (echo, ITL) to minutes (long generations).
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300,
)  # fmt: skip
# Admission decisions: refusals take microseconds, queued admissions up to a batch's drain.
ADMISSION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip
TOKEN_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5, 10,
)  # fmt: skip


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._http: Any = None  # the /metrics server, while it serves
        r = self.registry
        self.requests = Counter(
            "aigc_requests",
            "Finished requests by modality, model, method, status code (google.rpc.Code name) and "
            "front end (protocol: grpc | http).",
            ["modality", "model", "method", "code", "protocol"],
            registry=r,
        )
        self.duration = Histogram(
            "aigc_request_duration_seconds",
            "End-to-end request latency at the gateway (vLLM e2e_request_latency).",
            ["modality", "model", "method", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "aigc_time_to_first_token_seconds",
            "Arrival to first streamed token (vLLM time_to_first_token).",
            ["model", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "aigc_inter_token_latency_seconds",
            "Gap between consecutive streamed text chunks (vLLM inter_token_latency).",
            ["model", "protocol"],
            buckets=TOKEN_LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "aigc_time_per_output_token_seconds",
            "(e2e - TTFT) / (output tokens - 1) per request (vLLM time_per_output_token).",
            ["model", "protocol"],
            buckets=TOKEN_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "aigc_prompt_tokens", "Prompt tokens processed.", ["model", "protocol"], registry=r
        )
        self.output_tokens = Counter(
            "aigc_output_tokens", "Tokens generated.", ["model", "protocol"], registry=r
        )
        self.images = Counter("aigc_images", "Images generated.", ["model", "protocol"], registry=r)
        self.audio_seconds = Counter(
            "aigc_audio_seconds", "Seconds of audio synthesized.", ["model", "protocol"], registry=r
        )
        self.ttfa = Histogram(
            "aigc_time_to_first_audio_seconds",
            "Arrival to the first streamed audio chunk.",
            ["model", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "aigc_inflight_requests",
            "Requests being served by the gateway now.",
            ["modality", "model", "protocol"],
            registry=r,
        )
        self.rejected = Counter(
            "aigc_rejected_requests",
            "Requests refused before reaching a model, by reason.",
            ["reason", "protocol"],
            registry=r,
        )
        self.admitted_requests = Counter(
            "aigc_admitted_requests",
            "Requests admitted by the gateway's admission gate (started at once or queued), "
            "by tier.",
            ["model", "tier"],
            registry=r,
        )
        self.refused_requests = Counter(
            "aigc_admission_refused_requests",
            "Requests the admission gate refused at once (reason: deadline = could not finish "
            "in time, queue_full, busy = no idle capacity for batch work), by tier.",
            ["model", "tier", "reason"],
            registry=r,
        )
        self.admitted_expired = Counter(
            "aigc_admitted_expired",
            "Requests admitted that then ran out of deadline (DEADLINE_EXCEEDED after admission).",
            ["model", "tier"],
            registry=r,
        )
        self.admission_completed = Counter(
            "aigc_admission_completed_requests",
            "Requests admitted that finished OK (what the gate's rate learns from), by tier.",
            ["model", "tier"],
            registry=r,
        )
        self.admission_wait = Histogram(
            "aigc_admission_wait_seconds",
            "Arrival at the admission gate to its decision, by outcome: refused (at once, the "
            "gateway's own refusal latency), admitted (at once or after queueing), expired "
            "(its deadline passed while queued).",
            ["model", "outcome"],
            buckets=ADMISSION_BUCKETS,
            registry=r,
        )
        self.gateways = Gauge(
            "aigc_gateways",
            "Gateways in front of the same models, this one included (admission counts on "
            "its share of each model's capacity).",
            registry=r,
        )
        self.replicas = Gauge(
            "aigc_model_replicas",
            "Replicas of each model as Serve reports them to the gateway, by state (running, "
            "starting), and those the gateway calls directly (direct; a model's transport).",
            ["model", "state"],
            registry=r,
        )

    # ---- the admission gates' observer (gateway.admission.AdmissionMetrics): the one place
    # admission is counted
    def admitted(self, model: str, priority: Priority) -> None:
        self.admitted_requests.labels(model, priority.value).inc()

    def refused(self, model: str, priority: Priority, reason: str) -> None:
        self.refused_requests.labels(model, priority.value, reason).inc()

    def expired(self, model: str, priority: Priority) -> None:
        self.admitted_expired.labels(model, priority.value).inc()

    def completed(self, model: str, priority: Priority) -> None:
        self.admission_completed.labels(model, priority.value).inc()

    def waited(self, model: str, outcome: str, seconds: float) -> None:
        self.admission_wait.labels(model, outcome).observe(seconds)

    def turned_away(self, reason: str, protocol: str) -> None:
        self.rejected.labels(reason, protocol).inc()

    def watch_gates(self, gates: Callable[[], Mapping[str, CostGate]]) -> None:
        """Exports each model's admission state, read from its gate at scrape time (nothing
        on the request path)."""
        self.registry.register(_GateCollector(gates))

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Starts the /metrics HTTP server (its own thread); returns the bound port (0 picks a
        free one). `close` stops it."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        """Stops the /metrics HTTP server and frees its port (nothing when none was started)."""
        server, self._http = self._http, None
        if server is not None:
            server.shutdown()
            server.server_close()


# (name, help, read): each model's admission state at this gateway (its share of the model),
# in the gate's cost units (text: tokens, image: images, audio: characters / 100).
_GATE_GAUGES: tuple[tuple[str, str, Callable[[CostGate], float]], ...] = (
    ("aigc_admission_inflight_cost", "Cost admitted and running now.", lambda g: g.inflight),
    ("aigc_admission_bound_cost", "In-flight bound now (replicas x batch slots, this "
     "gateway's share).", lambda g: g.bound),
    ("aigc_admission_queued_cost", "Cost admitted and waiting for room.", lambda g: g.queued),
    ("aigc_admission_queued_requests", "Requests admitted and waiting for room.",
     lambda g: g.queued_requests()),
    ("aigc_admission_rate_cost_per_second", "Service rate the gate estimates (learned from "
     "completions once any; the prior before).", lambda g: g.rate),
    ("aigc_admission_rate_samples", "Completions the gate's rate estimate has learned from "
     "(0: still the prior).", lambda g: g.samples),
)  # fmt: skip


class _GateCollector(Collector):
    def __init__(self, gates: Callable[[], Mapping[str, CostGate]]) -> None:
        self.gates = gates

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gates = self.gates()
        for name, doc, read in _GATE_GAUGES:
            family = GaugeMetricFamily(name, f"{doc} Per model.", labels=["model"])
            for model, gate in gates.items():
                family.add_metric([model], float(read(gate)))
            yield family
