"""Direct calls on the real stack (a model's `transport`; unit-tested in
tests/unit/test_direct.py): the stack's fixed-size models register their replicas' direct ports,
the gateway finds them and sends its calls there, unary and streamed, not through Serve;
the other reliability behaviours (cancellation, a replica killed under load, deadlines) run in
test_reliability.py over the same path."""

from __future__ import annotations

import pytest

from tests.conditions import wait_until
from tests.integration.helpers import replica_stats, scrape, total

pytestmark = pytest.mark.integration


def test_fixed_size_models_are_called_directly(stack, client):
    url = f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics"

    def found() -> bool:
        return total(scrape(url), "aigc_model_replicas", model="tiny", state="direct") == 1

    assert wait_until(found, timeout_s=30), "the gateway found no direct port of tiny's replica"
    before = replica_stats("tiny", "text")["direct_calls_total"]
    for i in range(3):
        assert client.generate_text("hello", model="tiny", max_tokens=2, seed=i).completions
    chunks = list(client.stream_text("hello", model="tiny", max_tokens=2, seed=9))
    assert chunks
    after = replica_stats("tiny", "text")["direct_calls_total"]
    assert after - before == 4  # replica_stats itself goes through Serve's handle
