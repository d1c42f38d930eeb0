"""The gateway's /metrics endpoint starts with the gateway and is closed by its stop."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from gateway.metrics import GatewayMetrics


def test_metrics_server_serves_then_closes_its_port() -> None:
    metrics = GatewayMetrics()
    port = metrics.serve(0, host="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert b"aigc_" in reply.read()
    metrics.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    metrics.close()  # a second close does nothing
