"""Batches survive their gateway: `kill -9` mid-batch and a restart, and two gateways on one
PostgreSQL (a batch made on one is served by the other; one works it; when it dies the other
takes over once the lease runs out).

The gateways here are processes of their own (`aigc gateway --address`, as the Kubernetes pods
run it) on the session stack's Ray cluster and Serve apps, each with its own config: the
stack's models, and a job store of the test's (`gateway.jobs.database`), a short lease (2 s) and
four lines in flight. The batch is 60 lines on `slow-text` (250 ms a word, 4 words: about 15 s
in all), sent through the gateway's HTTP port with the real openai client. After the batch ends
every custom_id has exactly one output or error line, and the gateway that took over ran exactly
the lines that had no result when the other died (aigc_batch_lines_run_total on its /metrics).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa
import yaml

from load_tests.procs import AigcUp
from load_tests.prom import scrape, total
from tests.conditions import wait_until

pytestmark = pytest.mark.integration

LINES = 60
LEASE_S = 2.0
DONE = ("completed", "failed", "expired", "cancelled")


def gateway_config(stack: Any, path: Path, database: str) -> Path:
    """The stack's config (its models, on its Ray namespace) for one more gateway whose job
    store is `database`."""
    data = stack.config.model_dump(mode="json")
    data["gateway"].update(
        host="127.0.0.1", port=0, http_port=0, metrics_port=0,
        drain_delay_s=0.2, grace_period_s=2,
        jobs={"database": database, "lease_s": LEASE_S, "concurrency": 4},
    )  # fmt: skip
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Gateways:
    """`aigc gateway` processes on the stack's cluster; every one still running is stopped
    (SIGINT) at the end, a killed one is left as it is."""

    def __init__(self, stack: Any) -> None:
        import ray

        self.address = ray.get_runtime_context().gcs_address
        self.running: list[AigcUp] = []
        self.stack = stack

    def start(self, config: Path) -> AigcUp:
        gw = AigcUp.start(config, self.address, command="gateway", timeout_s=300)
        self.running.append(gw)
        return gw

    def kill(self, gw: AigcUp) -> None:
        """kill -9: no drain, no lease released, nothing flushed."""
        gw.child.kill()
        assert gw.proc.returncode == -9
        self.running.remove(gw)

    def stop_all(self) -> None:
        for gw in self.running:
            gw.stop(60)
        self.running.clear()


@pytest.fixture()
def gateways(stack: Any) -> Iterator[Gateways]:
    g = Gateways(stack)
    try:
        yield g
    finally:
        g.stop_all()


def client(gw: AigcUp) -> openai.OpenAI:
    base = f"http://127.0.0.1:{gw.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)


def batch_input() -> bytes:
    body = {"model": "slow-text", "prompt": "one two three four", "max_tokens": 4}
    rows = [
        {"custom_id": f"r{k}", "method": "POST", "url": "/v1/completions", "body": body}
        for k in range(LINES)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def lines_run(gw: AigcUp) -> float:
    return total(scrape(gw.metrics_url), "aigc_batch_lines_run_total")


def done_in_db(url: str, batch_id: str) -> tuple[int, str | None]:
    """(lines with a result, the batch's lease holder), read from the database itself."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            written = db.execute(
                sa.text(
                    "SELECT count(*) FROM batch_lines WHERE batch_id = :b AND state != 'pending'"
                ),
                {"b": batch_id},
            ).scalar()
            owner = db.execute(
                sa.text("SELECT owner FROM batches WHERE id = :b"), {"b": batch_id}
            ).scalar()
    finally:
        engine.dispose()
    return int(written or 0), owner


def finished(oai: openai.OpenAI, batch_id: str, timeout_s: float = 240) -> Any:
    assert wait_until(
        lambda: oai.batches.retrieve(batch_id).status in DONE, timeout_s, step_s=0.5
    ), oai.batches.retrieve(batch_id)
    return oai.batches.retrieve(batch_id)


def check_exactly_one_line_each(oai: openai.OpenAI, batch: Any) -> None:
    assert batch.status == "completed", batch
    assert batch.request_counts.total == LINES
    assert batch.request_counts.completed + batch.request_counts.failed == LINES
    rows = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id is not None:
            rows += [json.loads(x) for x in oai.files.content(file_id).text.splitlines()]
    seen = Counter(r["custom_id"] for r in rows)
    assert seen == Counter(f"r{k}" for k in range(LINES)), seen  # none lost, none twice
    assert batch.request_counts.failed == 0 and batch.error_file_id is None, rows[:3]
    for r in rows:
        assert r["response"]["status_code"] == 200
        assert r["response"]["body"]["choices"][0]["text"]


def test_kill_9_mid_batch_and_restart_on_sqlite(
    stack: Any, gateways: Gateways, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    config = gateway_config(stack, tmp_path / "gateway.yaml", url)
    first = gateways.start(config)
    oai = client(first)
    upload = oai.files.create(file=("slow.jsonl", batch_input()), purpose="batch")
    batch = oai.batches.create(
        input_file_id=upload.id, endpoint="/v1/completions", completion_window="24h"
    )
    assert wait_until(lambda: oai.batches.retrieve(batch.id).request_counts.completed >= 8, 120)
    gateways.kill(first)
    written, owner = done_in_db(url, batch.id)
    assert 8 <= written < LINES and owner is not None  # mid-batch, still leased to the dead one

    second = gateways.start(config)  # a new process on the same database
    oai = client(second)
    assert oai.batches.retrieve(batch.id).status == "in_progress"
    done = finished(oai, batch.id)
    check_exactly_one_line_each(oai, done)
    # it ran exactly the lines without a result when the first died, each once
    assert lines_run(second) == LINES - written


@pytest.mark.postgres
def test_two_gateways_on_one_postgres(
    stack: Any, gateways: Gateways, tmp_path: Path, postgres_url: str
) -> None:
    config = gateway_config(stack, tmp_path / "gateway.yaml", postgres_url)
    with ThreadPoolExecutor(2) as pool:  # together: both migrate the new database at once
        a, b = pool.map(lambda _: gateways.start(config), range(2))
    oai_a, oai_b = client(a), client(b)
    data = batch_input()
    upload = oai_a.files.create(file=("slow.jsonl", data), purpose="batch")
    batch = oai_a.batches.create(
        input_file_id=upload.id, endpoint="/v1/completions", completion_window="24h",
        metadata={"made": "on a"},
    )  # fmt: skip
    # gateway B serves what was made through A: the same database
    assert oai_b.files.retrieve(upload.id).bytes == len(data)
    assert oai_b.files.content(upload.id).content == data
    seen = oai_b.batches.retrieve(batch.id)
    assert seen.metadata == {"made": "on a"} and seen.input_file_id == upload.id
    assert batch.id in [x.id for x in oai_b.batches.list(limit=100)]

    assert wait_until(lambda: oai_b.batches.retrieve(batch.id).request_counts.completed >= 8, 120)
    run = {"a": lines_run(a), "b": lines_run(b)}
    working, idle = (a, b) if run["a"] > 0 else (b, a)
    assert sorted(run.values())[0] == 0, run  # one of them works it, the other ran nothing
    _, holder = done_in_db(postgres_url, batch.id)
    assert holder is not None

    gateways.kill(working)
    written, still = done_in_db(postgres_url, batch.id)
    assert written < LINES and still == holder  # the dead one's lease, until it runs out
    oai = client(idle)
    assert wait_until(lambda: done_in_db(postgres_url, batch.id)[1] != holder, 60, step_s=0.5)
    done = finished(oai, batch.id)
    check_exactly_one_line_each(oai, done)
    assert lines_run(idle) == LINES - written  # took over exactly the lines left
