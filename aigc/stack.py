"""The local stack: a Ray cluster, one Serve application per modality, and the gateway.

Used by `aigc up` and by the integration tests (one stack per test session).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aigc.config import AigcConfig

if TYPE_CHECKING:  # the gateway (grpc, Ray) loads only when the stack starts
    from gateway.server import Gateway

logger = logging.getLogger("aigc.stack")
Progress = Callable[[str], None]


@dataclass
class LocalStack:
    config: AigcConfig
    port: int | None = None  # None: from config; 0: any free port
    metrics_port: int | None = None
    http_port: int | None = None  # None: from config; 0: any free port; -1: HTTP off
    ray_metrics_port: int | None = None
    gateway: Gateway | None = field(default=None, init=False)

    def start_ray(self) -> None:
        import ray
        from ray import serve

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local, loopback only
        # Serve's router and replica user code on the main loops, no thread hops: about half
        # the per-request overhead (BENCHMARKS.md). Our engines keep model work off the loop.
        # Set before ray.init so every Ray worker process inherits it.
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        rc = self.config.ray
        if rc.address:
            ray.init(address=rc.address, namespace=rc.namespace, log_to_driver=False)
        else:
            mport = (
                rc.metrics_export_port if self.ray_metrics_port is None else self.ray_metrics_port
            )
            ray.init(
                num_cpus=rc.num_cpus,
                num_gpus=rc.num_gpus,
                include_dashboard=False,
                namespace=rc.namespace,
                log_to_driver=False,
                _metrics_export_port=rc.metrics_export_port if mport is None else mport,
            )
        serve.start(proxy_location="Disabled")

    def deploy(self) -> None:
        """Submits every application without waiting; readiness is polled by `wait_ready`."""
        from ray.serve.api import RunTarget, run_many

        from services.app import build_modality_app

        targets = [
            RunTarget(
                build_modality_app(m, self.config.models_of(m)), name=m.value, route_prefix=None
            )
            for m in self.config.modalities()
        ]
        run_many(
            targets,
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )

    @property
    def ray_metrics_url(self) -> str:
        import ray

        port = ray.nodes()[0].get("MetricsExportPort")
        return f"http://127.0.0.1:{port}/metrics"

    async def start(self, progress: Progress = logger.info, timeout_s: float = 900) -> None:
        from gateway.server import build_gateway

        t0 = time.perf_counter()
        progress("starting Ray")
        await asyncio.to_thread(self.start_ray)
        progress(f"deploying {', '.join(m.value for m in self.config.modalities())}")
        await asyncio.to_thread(self.deploy)
        gw = build_gateway(self.config, self.port, self.metrics_port, self.http_port)
        self.gateway = gw
        await gw.start()
        progress("waiting for models to load")
        shown: dict[str, bool] = {}
        end = time.perf_counter() + timeout_s
        while time.perf_counter() < end:
            await gw.router.refresh()
            for name, st in gw.router.state.items():
                if st.ready and not shown.get(name):
                    shown[name] = True
                    progress(f"  model {name} ready ({time.perf_counter() - t0:.0f}s)")
            if await gw.wait_ready(0.1):
                progress(f"all models ready in {time.perf_counter() - t0:.1f}s")
                return
            await asyncio.sleep(1.0)
        raise TimeoutError(f"models not ready after {timeout_s:.0f}s: {self.not_ready()}")

    def not_ready(self) -> list[str]:
        gw = self.gateway
        if gw is None:
            return []
        return [n for n, st in gw.router.state.items() if not st.ready]

    async def stop(self, grace_s: float | None = None) -> None:
        import ray
        from ray import serve

        if self.gateway is not None:
            await self.gateway.stop(grace_s)
        if ray.is_initialized():
            await asyncio.to_thread(serve.shutdown)
            ray.shutdown()
