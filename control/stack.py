"""The stack: a Ray cluster, one Serve application per modality, and the gateway.

Three shapes, one class (used by `aigc up`, `aigc gateway` and the integration tests):
- local (no `ray.address`): starts a Ray cluster on this machine, deploys, serves; `stop()`
  drains the gateway and takes the whole cluster down;
- on a cluster (`ray.address` / `--address`): this process joins as a driver, which holds no
  resources; it deploys the apps and serves; `stop()` drains, deletes the apps it deployed
  (unless `keep_apps`) and leaves the cluster running;
- an extra gateway (`deploy_apps=False`): attaches to the apps already deployed and serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.config import AigcConfig

if TYPE_CHECKING:  # the gateway (grpc, Ray) loads only when the stack starts
    from gateway.server import Gateway

logger = logging.getLogger("control.stack")
Progress = Callable[[str], None]


@dataclass
class Stack:
    config: AigcConfig
    port: int | None = None  # None: from config; 0: any free port
    metrics_port: int | None = None
    http_port: int | None = None  # None: from config; 0: any free port; -1: HTTP off
    ray_metrics_port: int | None = None
    deploy_apps: bool = True  # False: an extra gateway for apps deployed by someone else
    keep_apps: bool = False  # on a cluster: leave the deployed apps running on stop()
    gateway: Gateway | None = field(default=None, init=False)
    _owns_cluster: bool = field(default=False, init=False)
    _deployed: list[str] = field(default_factory=list, init=False)

    @property
    def app_names(self) -> list[str]:
        return [m.value for m in self.config.modalities()]

    def start_ray(self) -> None:
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local, loopback only
        # Serve's router and replica user code on the main loops, no thread hops: about half
        # the per-request overhead (BENCHMARKS.md). Our engines keep model work off the loop.
        # Set before ray.init so every Ray worker process inherits it.
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # ...which also turns on "direct ingress": every ingress replica opens HTTP and gRPC
        # ports we never use (the gateway calls handles) and, on shutdown, holds them open
        # for RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S (30 s) so load balancers can
        # deregister it; that made an idle `aigc up` take 36 s to stop.
        os.environ.setdefault("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0")
        # Ray starts its workers at nice 15, below this process: on a machine the gateway
        # shares with the replicas, a flood of requests to refuse then takes the CPU the model
        # needs, just when it must keep working (fashion at 4x overload kept 0.49 of its
        # saturated goodput at nice 15, 0.80 at 0; BENCHMARKS.md section 8). The replicas are
        # the workload here: they run at the gateway's priority. Read when the raylet starts.
        os.environ.setdefault("RAY_worker_niceness", "0")
        rc = self.config.ray
        if rc.address:  # a driver on an existing cluster: no resources of its own
            ray.init(address=rc.address, namespace=rc.namespace, log_to_driver=False)
            return
        mport = rc.metrics_export_port if self.ray_metrics_port is None else self.ray_metrics_port
        ray.init(
            num_cpus=rc.num_cpus,
            num_gpus=rc.num_gpus,
            include_dashboard=False,
            namespace=rc.namespace,
            log_to_driver=False,
            _metrics_export_port=mport,
        )
        self._owns_cluster = True

    def deploy(self) -> None:
        """Submits every application without waiting; readiness is polled by `wait_ready`."""
        from ray import serve
        from ray.serve.api import RunTarget, run_many

        from services.app import build_modality_app

        serve.start(proxy_location="Disabled")
        targets = [
            RunTarget(
                build_modality_app(m, self.config.models_of(m)), name=m.value, route_prefix=None
            )
            for m in self.config.modalities()
        ]
        self._deployed = [t.name for t in targets]
        run_many(
            targets,
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )

    def check_deployed(self) -> None:
        """An extra gateway serves only apps that exist: fail at once, not after the timeout."""
        from ray import serve

        try:
            running = set(serve.status().applications)
        except Exception as exc:  # no Serve controller on this cluster
            raise LookupError(f"no Serve on the Ray cluster at {self.config.ray.address}") from exc
        missing = [n for n in self.app_names if n not in running]
        if missing:
            raise LookupError(
                f"Serve apps {missing} are not deployed on the Ray cluster at "
                f"{self.config.ray.address}; deploy them with `aigc up --address ...`"
            )

    @property
    def stops(self) -> str:
        """What `stop()` takes down, in words."""
        if not self.deploy_apps:
            return "this gateway (the apps and the cluster keep running)"
        if not self.config.ray.address:
            return "everything"
        if self.keep_apps:
            return "the gateway (the apps and the cluster keep running)"
        return "the gateway and deletes the apps it deployed (the cluster keeps running)"

    @property
    def ray_metrics_url(self) -> str:
        import ray

        port = ray.nodes()[0].get("MetricsExportPort")
        return f"http://127.0.0.1:{port}/metrics"

    @property
    def cluster_description(self) -> str:
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = ray.cluster_resources().get("CPU", 0)
        where = self.config.ray.address or "local"
        return f"{where}: {len(nodes)} node(s), {cpus:g} CPUs"

    async def start(self, progress: Progress = logger.info, timeout_s: float = 900) -> None:
        """Starts Ray, deploys (unless an extra gateway), starts the gateway, then waits up to
        `timeout_s` for the models. 0: no wait and no check that the apps exist (a gateway pod
        may start before its RayService deploys them): health and /readyz tell readiness."""
        from gateway.server import build_gateway

        t0 = time.perf_counter()
        where = self.config.ray.address
        progress(f"joining Ray at {where}" if where else "starting Ray")
        await asyncio.to_thread(self.start_ray)
        if self.deploy_apps:
            progress(f"deploying {', '.join(self.app_names)}")
            await asyncio.to_thread(self.deploy)
        elif timeout_s > 0:
            await asyncio.to_thread(self.check_deployed)
        gw = build_gateway(self.config, self.port, self.metrics_port, self.http_port)
        self.gateway = gw
        await gw.start()
        if timeout_s <= 0:
            progress("serving; grpc.health.v1 and /readyz report when the models are ready")
            return
        progress("waiting for models to load")
        shown: dict[str, bool] = {}
        end = time.perf_counter() + timeout_s

        def show() -> None:
            for name, st in gw.registry.state.items():
                if st.ready and not shown.get(name):
                    shown[name] = True
                    progress(f"  model {name} ready ({time.perf_counter() - t0:.0f}s)")

        while time.perf_counter() < end:
            await gw.status.refresh()
            show()
            if await gw.wait_ready(0.1):  # every modality can serve
                show()  # the last ones may have turned ready while the gateway checked
                pending = self.not_ready()
                if not pending:
                    progress(f"all models ready in {time.perf_counter() - t0:.1f}s")
                    return
                # Wait for the models still loading; one with no replica starting (scaled to
                # zero, or failed) is reported, not waited for.
                if not any(gw.registry.state[n].starting_replicas for n in pending):
                    progress(
                        f"serving in {time.perf_counter() - t0:.1f}s; not ready: "
                        f"{', '.join(pending)} (no replica starting; see `aigc models`)"
                    )
                    return
            await asyncio.sleep(1.0)
        raise TimeoutError(f"models not ready after {timeout_s:.0f}s: {self.not_ready()}")

    def not_ready(self) -> list[str]:
        gw = self.gateway
        if gw is None:
            return []
        return [n for n, st in gw.registry.state.items() if not st.ready]

    async def stop(self, grace_s: float | None = None) -> None:
        """Drains the gateway (in-flight calls finish), then removes what this stack started."""
        import ray

        if self.gateway is not None:
            await self.gateway.stop(grace_s)
        if not ray.is_initialized():
            return
        # A local cluster is ours: with the gateway drained no request is left in a replica,
        # and ray.shutdown() ends every process it started. serve.shutdown() first would add
        # only waits (each deployment tier polls its idle replicas for
        # graceful_shutdown_wait_loop_s) and warnings about routers on this loop.
        if not self._owns_cluster and self._deployed and not self.keep_apps:
            await asyncio.to_thread(self._delete_apps)
        await self._close_handles()
        ray.shutdown()  # on a cluster: this driver only

    async def _close_handles(self) -> None:
        """Stops Serve's routers and long polls in this process before ray.shutdown().

        Closing the handles is not enough: the routers share one long-poll client to the
        controller that nothing stops, and an update that lands after ray.shutdown() (our
        apps' deletion) makes it call Ray again, which then starts a new local cluster.
        """
        from ray.serve._private.long_poll import LongPollClient
        from ray.serve.context import _get_global_client  # as serve.shutdown_async() does

        with contextlib.suppress(Exception):
            client = _get_global_client(raise_if_no_controller_running=False)
            if client is not None:
                await client.shutdown_cached_handles_async()
        for obj in gc.get_objects():
            # type(), not isinstance(): the heap holds weak proxies whose referent may be gone
            # (isinstance on those raises ReferenceError) and objects whose __class__ warns
            if issubclass(type(obj), LongPollClient):
                obj.stop()  # it makes no further call to the controller

    def _delete_apps(self, timeout_s: float = 60.0) -> None:
        """Deletes our apps together (one by one, each waits out its replicas' drain)."""
        from ray import serve

        for name in self._deployed:
            serve.delete(name, _blocking=False)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            left = set(self._deployed) & set(serve.status().applications)
            if not left:
                return
            time.sleep(0.2)
        logger.warning("Serve apps %s not deleted after %.0fs", sorted(left), timeout_s)
