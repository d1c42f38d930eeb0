"""`python -m gateway --config FILE`: the gateway alone, joined to an existing Ray cluster.

This is the Kubernetes entry point: the pod has already joined the cluster as a zero-resource
node (`ray start --address=HEAD:6379 --num-cpus=0`), so this process attaches with
`ray.init(address="auto")` and serves until SIGTERM, then drains.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aigc.config import load_config
from gateway.server import build_gateway


async def serve(config_path: str, ray_address: str, port: int | None) -> None:
    import ray

    config = load_config(config_path)
    ray.init(address=ray_address, namespace=config.ray.namespace, log_to_driver=False)
    gw = build_gateway(config, port=port)
    await gw.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gw.stop()  # NOT_SERVING first, then up to grace_period_s for in-flight calls


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m gateway")
    p.add_argument("--config", required=True)
    p.add_argument("--ray-address", default="auto")
    p.add_argument("--port", type=int, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.config, args.ray_address, args.port))


if __name__ == "__main__":
    main()
