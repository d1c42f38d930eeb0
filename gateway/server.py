"""The gateway server: both front ends (gRPC aigc.v1 and the OpenAI HTTP API) over one data
plane, health, reflection, metrics, graceful shutdown; with a job store (`gateway.jobs`), the
Batch API on both (/v1/files and /v1/batches; aigc.v1 Batches and google.longrunning.Operations).

Runs in a process that is a Ray driver (it holds Serve handles): `aigc up` locally, or a pod
that joined the cluster as a zero-resource node on Kubernetes. Both servers run on one asyncio
loop; on drain both readiness signals (gRPC health, HTTP /readyz) fail first, then both stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aigc.v1 import (
    audio_pb2_grpc,
    image_pb2_grpc,
    models_pb2_grpc,
    text_pb2_grpc,
    video_pb2_grpc,
)
from aigc.wire import MODELS_SERVICE, SERVICE_NAMES
from core.config import AigcConfig, Modality, TlsConfig
from gateway.auth import Authenticator
from gateway.dataplane import DataPlane
from gateway.grpc_api import jobs as grpc_jobs
from gateway.grpc_api.auth import AuthInterceptor
from gateway.grpc_api.decode import DecodeInterceptor
from gateway.grpc_api.servicers import AudioServicer, ImageServicer, ModelsServicer, TextServicer
from gateway.grpc_api.videos import VideoServicer
from gateway.jobs.metrics import JobMetrics, VideoMetrics
from gateway.jobs.runner import BatchRunner
from gateway.jobs.store import JobStore
from gateway.jobs.video_jobs import VideoJobs
from gateway.jobs.video_runner import VideoRunner
from gateway.jobs.videos import VideoStore
from gateway.metrics import GatewayMetrics
from gateway.openai_api.app import OpenAIApi
from gateway.openai_api.jobs import JobsApi
from gateway.openai_api.videos import VideosApi
from gateway.peers import Peers
from gateway.registry import ModelRegistry
from gateway.serve_status import ServeStatus

logger = logging.getLogger("aigc.gateway")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Gateway:
    config: AigcConfig
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    registry: ModelRegistry
    status: ServeStatus
    metrics: GatewayMetrics
    plane: DataPlane
    port: int
    metrics_port: int
    http: Any = None  # uvicorn.Server of the OpenAI front end, or None when it is off
    http_port: int | None = None
    _tasks: tuple[asyncio.Task[None], ...] = ()
    _http_task: asyncio.Task[None] | None = None
    _draining: bool = False
    _peers: Peers | None = None
    _ready: bool = False
    jobs: JobStore | None = None  # files and batches (gateway.jobs)
    runner: BatchRunner | None = None
    video_runner: VideoRunner | None = None  # with a video model

    def ready(self) -> bool:
        """HTTP readiness for balancers: not draining, and some model can serve. Per-modality
        readiness is the gRPC health services' job: one modality's outage (all speech replicas
        down) must not take text and images out of the Service with it."""
        return self._ready and not self._draining

    async def start(self) -> None:
        if self.jobs is not None:
            await asyncio.to_thread(self.jobs.migrate)
        await self.server.start()
        if self.http is not None:
            await self._start_http()
        await self.status.refresh()
        await self._update_health()
        period = self.config.gateway.refresh_models_s
        self._tasks = (
            asyncio.create_task(self.status.refresh_forever(period)),
            asyncio.create_task(self._health_forever(period)),
        )
        if Peers.available():
            self._peers = Peers(period)
            await self._count_peers()
            self._tasks += (asyncio.create_task(self._peers_forever(period)),)
        if self.runner is not None:
            self.runner.start()
        if self.video_runner is not None:
            self.video_runner.start()
        logger.info("gateway serving on port %d, metrics on %d", self.port, self.metrics_port)

    async def _start_http(self) -> None:
        server = self.http
        self._http_task = asyncio.create_task(server.serve())
        while not server.started:  # bound: uvicorn sets it once listening, or the task ends
            if self._http_task.done():
                self._http_task.result()  # raises why it could not start
                raise RuntimeError("the HTTP front end stopped while starting")
            await asyncio.sleep(0.01)
        self.http_port = int(server.servers[0].sockets[0].getsockname()[1])

    async def _update_health(self) -> None:
        if self._draining:
            return
        all_ready = True
        for name, service in SERVICE_NAMES.items():
            modality = Modality(name)
            if not self.config.models_of(modality):
                continue
            ready = self.registry.modality_ready(modality)
            all_ready &= ready
            await self.health.set(service, SERVING if ready else NOT_SERVING)
        await self.health.set(MODELS_SERVICE, SERVING)
        await self.health.set("", SERVING if all_ready else NOT_SERVING)
        self._ready = any(self.registry.modality_ready(m) for m in self.config.modalities())

    async def _count_peers(self) -> None:
        """Admission counts on this gateway's share of each model (gateway/peers.py)."""
        assert self._peers is not None
        n = await self._peers.count()
        self.metrics.gateways.set(n)
        self.plane.admission.set_gateways(n)

    async def _peers_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await self._count_peers()

    async def _health_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await self._update_health()

    async def wait_ready(self, timeout_s: float) -> bool:
        """True once every configured modality has a ready model."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:
            await self.status.refresh()
            await self._update_health()
            if all(self.registry.modality_ready(m) for m in self.config.modalities()):
                return True
            await asyncio.sleep(0.5)
        return False

    async def stop(self, grace_s: float | None = None) -> None:
        """Health goes NOT_SERVING first, so balancers stop sending; in-flight calls then finish."""
        self._draining = True
        await self.health.enter_graceful_shutdown()
        for t in self._tasks:
            t.cancel()
        if self._peers is not None:
            await self._peers.leave()
        gc = self.config.gateway
        if grace_s is None or grace_s > 0:
            await asyncio.sleep(gc.drain_delay_s)
        grace = gc.grace_period_s if grace_s is None else grace_s
        if self.http is not None and self._http_task is not None:
            self.http.config.timeout_graceful_shutdown = grace
            self.http.should_exit = True
        if self.runner is not None:  # lines in flight run again wherever the batch resumes
            await self.runner.stop()
        if self.video_runner is not None:  # clips in flight: their jobs are given back
            await self.video_runner.stop()
        await self.server.stop(grace)
        if self._http_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, grace + 5)
        if self.jobs is not None:
            self.jobs.close()
        await asyncio.to_thread(self.metrics.close)  # last: the drain stays observable


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """TLS; with client_ca_file, mutual TLS (clients must present a certificate it signed)."""
    pair = (Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())
    ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))


def http_server(app: Any, host: str, port: int, tls: TlsConfig | None) -> Any:
    """uvicorn serving `app` (not started); the same TLS files as gRPC, mTLS included."""
    import uvicorn

    kw: dict[str, Any] = {}
    if tls is not None:
        kw = {"ssl_keyfile": tls.key_file, "ssl_certfile": tls.cert_file}
        if tls.client_ca_file:
            kw |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_level="warning", access_log=False, **kw
    )

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # `aigc up` owns SIGINT/SIGTERM and drains both front ends itself

    return _Server(config)


def build_gateway(
    config: AigcConfig,
    port: int | None = None,
    metrics_port: int | None = None,
    http_port: int | None = None,
) -> Gateway:
    """Creates the gateway: its /metrics endpoint already serves (so a starting gateway can be
    watched; `Gateway.stop` closes it), the gRPC and HTTP front ends start with `start()`.
    Port 0 picks a free port; the bound ones are on the returned Gateway."""
    gc = config.gateway
    limit = gc.max_message_mb * 2**20
    metrics = GatewayMetrics()
    security = gc.security
    auth = Authenticator(security)
    # Auth first (outermost); decoding innermost, so it sees the registered handlers only and
    # auth's refusals reuse its tolerant deserializer.
    interceptors: list[grpc.aio.ServerInterceptor] = []
    registry = ModelRegistry(config)
    plane = DataPlane(config, registry, metrics, auth=auth)
    status = ServeStatus(registry, metrics)
    status.replica_listeners.append(plane.admission.set_replicas)
    if auth.enabled:
        interceptors.append(AuthInterceptor(plane))
    interceptors.append(DecodeInterceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    text_pb2_grpc.add_TextGenerationServicer_to_server(TextServicer(plane), server)
    image_pb2_grpc.add_ImageGenerationServicer_to_server(ImageServicer(plane), server)
    audio_pb2_grpc.add_AudioSynthesisServicer_to_server(AudioServicer(plane), server)
    models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(plane), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [
        *SERVICE_NAMES.values(),
        MODELS_SERVICE,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    host = gc.host
    address = f"{host}:{gc.port if port is None else port}"
    if security.tls is not None:
        bound = server.add_secure_port(address, server_credentials(security.tls))
    else:
        bound = server.add_insecure_port(address)
    mport = config.gateway.metrics_port if metrics_port is None else metrics_port
    bound_metrics = metrics.serve(mport, host=host)
    gateway = Gateway(
        config, server, health_servicer, registry, status, metrics, plane, bound, bound_metrics
    )
    api = OpenAIApi(config, plane, gateway.ready)
    routes = []
    if gc.jobs.enabled:
        jobs = gateway.jobs = JobStore(gc.jobs.url(), gc.jobs.files_dir)
        gateway.runner = BatchRunner(
            jobs, api.execute, lease_s=gc.jobs.lease_s, concurrency=gc.jobs.concurrency,
            max_lines=gc.jobs.max_lines,
        )  # fmt: skip
        metrics.registry.register(JobMetrics(jobs, gateway.runner))
        routes = JobsApi(
            gc.jobs, jobs, gateway.runner, lambda header: plane.authorize("http", header)
        ).routes()
        if config.models_of(Modality.VIDEO):
            clips = VideoJobs(gc.jobs, plane, VideoStore(jobs))
            clips.runner = gateway.video_runner = VideoRunner(
                clips.store, clips.make, lease_s=gc.jobs.lease_s,
                concurrency=gc.jobs.video_concurrency, ttl_s=gc.jobs.video_ttl_s,
            )  # fmt: skip
            metrics.registry.register(VideoMetrics(clips.store, gateway.video_runner))
            routes += VideosApi(clips, lambda header: plane.authorize("http", header)).routes()
            video_pb2_grpc.add_VideoGenerationServicer_to_server(
                VideoServicer(plane, clips), server
            )
        names += grpc_jobs.add_to_server(server, gc.jobs, jobs, gateway.runner)
    reflection.enable_server_reflection(names, server)  # before the server starts
    hport = gc.http_port if http_port is None else http_port
    if hport >= 0:
        gateway.http = http_server(api.app(routes), host, hport, security.tls)
    return gateway
