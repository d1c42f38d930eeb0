"""The job store's contract (gateway/jobs/store.py), on SQLite and on PostgreSQL.

Every test runs on both databases: SQLite in the test's directory, and a fresh database on the
session's private PostgreSQL (tests/postgres.py; those variants are marked `postgres`: `make
test-postgres` runs them, `make test` leaves them out). Files (in the database and in a
files_dir), batches, leases between two gateways, each line's result written exactly once, and
the schema: migrations run twice, concurrently (PostgreSQL's advisory lock), and the Alembic
head's tables are store.metadata's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.jobs import migrations
from gateway.jobs.store import JobStore, Line, batches, files, lines, metadata
from tests.conditions import wait_until

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def store(url: str) -> Iterator[JobStore]:
    s = JobStore(url)
    s.migrate()
    yield s
    s.close()


def new_batch(store: JobStore, window_s: int = 3600, meta: dict[str, str] | None = None) -> str:
    upload = store.create_file("batch", "in.jsonl", b"{}\n")
    return store.create_batch("/v1/completions", upload.id, "24h", window_s, meta).id


def request_lines(n: int) -> list[Line]:
    return [
        Line(k, f"c{k}", {"custom_id": f"c{k}", "url": "/v1/completions", "body": {"n": k}})
        for k in range(n)
    ]


def started(store: JobStore, n: int, errors: int = 0, owner: str = "a") -> str:
    """A batch in progress with `n` pending lines (and `errors` unreadable ones), held by
    `owner`."""
    batch_id = new_batch(store)
    claimed = store.claim(owner, 30)
    assert claimed is not None and claimed.id == batch_id
    assert store.start(batch_id, owner, request_lines(n), [f'{{"e": {k}}}' for k in range(errors)])
    return batch_id


def result(k: int) -> dict[str, Any]:
    return {"custom_id": f"c{k}", "response": {"status_code": 200}, "error": None}


# ---- files -------------------------------------------------------------------------------
@pytest.mark.parametrize("in_dir", [False, True], ids=["body-in-db", "files-dir"])
def test_files_create_get_content_list_delete(url: str, tmp_path: Path, in_dir: bool) -> None:
    files_dir = tmp_path / "bodies" if in_dir else None
    store = JobStore(url, files_dir)
    store.migrate()
    try:
        made = [store.create_file("batch", f"f{k}.jsonl", f"line {k}\n".encode()) for k in range(5)]
        out = store.create_file("batch_output", "out.jsonl", b"\x00binary\xff")
        got = store.get_file(made[2].id)
        assert got == made[2] and got.bytes == len(b"line 2\n") and got.filename == "f2.jsonl"
        assert got.openai()["object"] == "file" and got.openai()["purpose"] == "batch"
        assert store.file_content(made[2].id) == b"line 2\n"
        assert store.file_content(out.id) == b"\x00binary\xff"
        assert store.get_file("file-nope") is None and store.file_content("file-nope") is None
        with store.engine.connect() as db:  # where the body is: the row, or files_dir
            body = db.execute(sa.select(files.c.body).where(files.c.id == out.id)).scalar()
        if in_dir:
            assert files_dir is not None
            assert body is None and (files_dir / out.id).read_bytes() == b"\x00binary\xff"
        else:
            assert bytes(body) == b"\x00binary\xff"

        everything = store.list_files()  # newest first: created_at, then id, descending
        assert {f.id for f in everything} == {f.id for f in [*made, out]}
        keys = [(f.created_at, f.id) for f in everything]
        assert keys == sorted(keys, reverse=True)
        only_batch = store.list_files(purpose="batch")
        assert [f.id for f in only_batch] == [f.id for f in everything if f.purpose == "batch"]
        pages, after = [], None  # `after` paging, two at a time, walks the same order
        while page := store.list_files(purpose="batch", after=after, limit=2):
            assert len(page) <= 2
            pages += page
            after = page[-1].id
        assert [f.id for f in pages] == [f.id for f in only_batch]

        assert store.delete_file(made[0].id) is True
        assert store.get_file(made[0].id) is None and store.file_content(made[0].id) is None
        assert store.delete_file(made[0].id) is False
        assert made[0].id not in {f.id for f in store.list_files()}
        assert store.delete_file(out.id) is True
        if in_dir:
            assert files_dir is not None and not (files_dir / out.id).exists()
    finally:
        store.close()


# ---- batches -----------------------------------------------------------------------------
def test_batches_create_get_list_and_page(store: JobStore) -> None:
    ids = [new_batch(store, meta={"k": str(k)}) for k in range(5)]
    got = store.get_batch(ids[1])
    assert got is not None and got.status == "validating" and got.metadata == {"k": "1"}
    assert got.endpoint == "/v1/completions" and got.completion_window == "24h"
    assert got.expires_at == got.created_at + 3600 and (got.total, got.completed) == (0, 0)
    assert got.owner is None and got.lease_until is None
    shown = got.openai()
    assert shown["object"] == "batch" and shown["errors"] is None
    assert shown["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert store.get_batch("batch_nope") is None

    everything = store.list_batches(limit=100)
    assert {b.id for b in everything} == set(ids)
    keys = [(b.created_at, b.id) for b in everything]
    assert keys == sorted(keys, reverse=True)
    pages, after = [], None
    while page := store.list_batches(after=after, limit=2):
        pages += page
        after = page[-1].id
    assert [b.id for b in pages] == [b.id for b in everything]
    assert store.count_batches() == {"validating": 5}
    assert store.oldest_waiting_line() == min(b.created_at for b in everything)


def test_request_cancel(store: JobStore) -> None:
    batch_id = new_batch(store)
    cancelling = store.request_cancel(batch_id)
    assert cancelling is not None and cancelling.status == "cancelling"
    assert cancelling.stamps["cancelling"] is not None
    again = store.request_cancel(batch_id)  # already cancelling: as it is
    assert again is not None and again.stamps["cancelling"] == cancelling.stamps["cancelling"]
    done = new_batch(store)
    assert store.move(done, None, "completed")
    finished = store.request_cancel(done)  # finished: returned as it is, the caller refuses
    assert finished is not None and finished.status == "completed"
    assert finished.stamps["cancelling"] is None
    assert store.request_cancel("batch_nope") is None


# ---- leases ------------------------------------------------------------------------------
def test_two_owners_only_one_claims(store: JobStore) -> None:
    batch_id = new_batch(store)
    a = store.claim("gw-a", 30)
    assert a is not None and a.id == batch_id and a.owner == "gw-a"
    assert a.lease_until is not None and a.lease_until > time.time() + 20
    assert store.claim("gw-b", 30) is None  # held
    again = store.claim("gw-a", 30)  # its holder may claim it again (a restart of one runner)
    assert again is not None and again.id == batch_id
    store.release(batch_id, "gw-b")  # not the holder: nothing happens
    assert store.claim("gw-b", 30) is None
    store.release(batch_id, "gw-a")
    b = store.claim("gw-b", 30)
    assert b is not None and b.owner == "gw-b"


def test_concurrent_claims_have_one_winner(store: JobStore) -> None:
    batch_id = new_batch(store)
    go = threading.Barrier(8)
    won: list[str] = []

    def claim(owner: str) -> None:
        go.wait()
        got = store.claim(owner, 30)
        if got is not None:
            won.append(owner)

    threads = [threading.Thread(target=claim, args=(f"gw-{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1, won
    held = store.get_batch(batch_id)
    assert held is not None and held.owner == won[0]


def test_an_expired_lease_is_taken_over_and_renew_fails_after(store: JobStore) -> None:
    batch_id = new_batch(store)
    assert store.claim("gw-a", 0.3) is not None
    assert store.renew(batch_id, "gw-a", 0.3)
    # gw-a stops renewing (it died): its lease runs out and gw-b takes the batch
    assert wait_until(lambda: store.claim("gw-b", 30) is not None, 10)
    assert not store.renew(batch_id, "gw-a", 30)  # gw-a learns it lost the batch
    held = store.get_batch(batch_id)
    assert held is not None and held.owner == "gw-b"
    assert store.renew(batch_id, "gw-b", 30)
    assert not store.start(batch_id, "gw-a", request_lines(2), [])  # the loser writes nothing
    assert not store.move(batch_id, "gw-a", "finalizing")


def test_claim_skips_finished_batches(store: JobStore) -> None:
    batch_id = new_batch(store)
    assert store.move(batch_id, None, "cancelled")
    assert store.claim("gw-a", 30) is None
    cancelling = new_batch(store)
    store.request_cancel(cancelling)  # cancelling is still work: the runner must end it
    got = store.claim("gw-a", 30)
    assert got is not None and got.id == cancelling


# ---- lines: start, pending, exactly one result each ----------------------------------------
def test_start_pending_and_finish_line_exactly_once(store: JobStore) -> None:
    batch_id = new_batch(store)
    assert store.claim("gw-a", 30) is not None
    assert not store.start(batch_id, "gw-b", request_lines(5), [])  # not the holder
    assert store.start(batch_id, "gw-a", request_lines(5), ['{"bad": 1}'])
    assert not store.start(batch_id, "gw-a", request_lines(5), [])  # not validating any more
    batch = store.get_batch(batch_id)
    assert batch is not None and batch.status == "in_progress" and batch.stamps["in_progress"]
    assert (batch.total, batch.completed, batch.failed) == (6, 0, 1)
    assert store.counts(batch_id) == {"pending": 5, "error": 1}

    todo = store.pending(batch_id, 3)
    assert [x.line_no for x in todo] == [0, 1, 2]
    assert todo[1].custom_id == "c1" and todo[1].body["body"] == {"n": 1}
    assert [x.line_no for x in store.pending(batch_id, 10, exclude={0, 1, 2})] == [3, 4]

    assert store.finish_line(batch_id, 0, True, result(0)) is True
    assert store.finish_line(batch_id, 0, True, result(0)) is False  # written once
    assert store.finish_line(batch_id, 0, False, {"other": True}) is False
    assert store.finish_line(batch_id, 1, False, result(1)) is True
    assert store.finish_line(batch_id, 1, False, result(1)) is False
    batch = store.get_batch(batch_id)
    assert batch is not None and (batch.completed, batch.failed) == (1, 2)  # counted once
    assert store.counts(batch_id) == {"pending": 3, "done": 1, "error": 2}
    assert [x.line_no for x in store.pending(batch_id, 10)] == [2, 3, 4]
    results = {n: r for n, _, r in store.results(batch_id)}
    assert '"other"' not in results[0]  # the first result stays


def test_concurrent_finishes_of_one_line_write_once(store: JobStore) -> None:
    """Two gateways that both ran a line (one lost its lease meanwhile) race to finish it."""
    batch_id = started(store, 1)
    go = threading.Barrier(6)
    wrote: list[int] = []

    def finish(k: int) -> None:
        go.wait()
        if store.finish_line(batch_id, 0, True, {"writer": k}):
            wrote.append(k)

    threads = [threading.Thread(target=finish, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wrote) == 1
    batch = store.get_batch(batch_id)
    assert batch is not None and batch.completed == 1 and batch.failed == 0
    ((_, state, written),) = list(store.results(batch_id))
    assert state == "done" and written == f'{{"writer": {wrote[0]}}}'


def test_fail_pending(store: JobStore) -> None:
    batch_id = started(store, 5)
    assert store.finish_line(batch_id, 1, True, result(1))
    n = store.fail_pending(
        batch_id, lambda custom_id: {"custom_id": custom_id, "error": {"code": "batch_cancelled"}}
    )
    assert n == 4
    assert store.pending(batch_id, 10) == []
    assert store.counts(batch_id) == {"done": 1, "error": 4}
    batch = store.get_batch(batch_id)
    assert batch is not None and (batch.total, batch.completed, batch.failed) == (5, 1, 4)
    assert store.fail_pending(batch_id, lambda c: {"custom_id": c}) == 0  # nothing left


def test_results_in_input_order(store: JobStore) -> None:
    batch_id = started(store, 6, errors=2)  # unreadable lines come after the others
    for k in (4, 0, 5, 2):  # finished out of order
        assert store.finish_line(batch_id, k, k != 2, result(k))
    got = list(store.results(batch_id))
    assert [n for n, _, _ in got] == [0, 2, 4, 5, 6, 7]  # only lines with a result, by line_no
    states = {n: s for n, s, _ in got}
    assert states == {0: "done", 2: "error", 4: "done", 5: "done", 6: "error", 7: "error"}
    assert '"custom_id": "c4"' in dict((n, r) for n, _, r in got)[4]


def test_move_stamps_and_releases(store: JobStore) -> None:
    batch_id = started(store, 1, owner="gw-a")
    assert not store.move(batch_id, "gw-b", "finalizing")  # not the holder
    before = int(time.time())
    assert store.move(batch_id, "gw-a", "finalizing")
    batch = store.get_batch(batch_id)
    assert batch is not None and batch.status == "finalizing"
    stamp = batch.stamps["finalizing"]
    assert stamp is not None and before <= stamp <= int(time.time())
    assert batch.owner == "gw-a"  # still held while it finalizes
    assert store.move(batch_id, "gw-a", "completed", output_file_id="file-out")
    batch = store.get_batch(batch_id)
    assert batch is not None and batch.status == "completed" and batch.stamps["completed"]
    assert batch.output_file_id == "file-out" and batch.error_file_id is None
    assert batch.owner is None and batch.lease_until is None  # a finished batch is nobody's
    assert batch.stamps["failed"] is None and batch.stamps["cancelled"] is None
    assert batch.openai()["completed_at"] == batch.stamps["completed"]
    assert store.count_batches() == {"completed": 1}
    assert store.oldest_waiting_line() is None
    other = new_batch(store)  # owner None: any holder (or none)
    assert store.move(other, None, "failed", errors='[{"code": "x"}]')
    failed = store.get_batch(other)
    assert failed is not None and failed.stamps["failed"] and failed.errors == [{"code": "x"}]


def test_plain_postgresql_urls_get_the_psycopg_driver() -> None:
    from gateway.jobs.store import with_driver

    assert with_driver("postgresql://u:p@db:5432/aigc") == "postgresql+psycopg://u:p@db:5432/aigc"
    assert with_driver("postgres://u@db/aigc?sslmode=require") == (
        "postgresql+psycopg://u@db/aigc?sslmode=require"
    )
    for url in ("postgresql+psycopg://u@db/aigc", "sqlite:///x.sqlite"):
        assert with_driver(url) == url


@pytest.mark.postgres
def test_an_operators_postgresql_uri_works_as_it_is(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    store = JobStore(plain)
    try:
        store.migrate()
        assert store.get_file(store.create_file("batch", "x.jsonl", b"x").id) is not None
    finally:
        store.close()


# ---- the schema ----------------------------------------------------------------------------
def head() -> str:
    script = ScriptDirectory.from_config(migrations.config())
    revision = script.get_current_head()
    assert revision is not None
    return revision


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as db:
        return MigrationContext.configure(db).get_current_revision()


def test_migrations_run_twice(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        migrations.upgrade(engine)
        assert current(engine) == head()
        store = JobStore(url)
        batch_id = new_batch(store)
        migrations.upgrade(engine)  # the second gateway, or a restart: nothing to do, no loss
        assert current(engine) == head()
        assert store.get_batch(batch_id) is not None
        store.close()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_migrations_concurrently_on_postgres(postgres_url: str) -> None:
    """Gateways starting together on a new database: one migrates (under the advisory lock),
    the others wait, then find the schema at head."""
    engines = [sa.create_engine(postgres_url) for _ in range(4)]
    go = threading.Barrier(len(engines))
    failed: list[BaseException] = []

    def migrate(engine: sa.Engine) -> None:
        go.wait()
        try:
            migrations.upgrade(engine)
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=migrate, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert failed == []
        assert current(engines[0]) == head()
        with engines[0].connect() as db:
            assert db.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        for e in engines:
            e.dispose()


def test_alembic_head_matches_store_metadata(url: str) -> None:
    """The migrations end at exactly store.py's tables (columns, types, nullability, indexes):
    a change to one without the other fails here."""
    engine = sa.create_engine(url)
    try:
        migrations.upgrade(engine)
        with engine.connect() as db:
            diff = compare_metadata(MigrationContext.configure(db), metadata)
        assert diff == []
        names = set(sa.inspect(engine).get_table_names())
        assert {batches.name, files.name, lines.name, "alembic_version"} <= names
    finally:
        engine.dispose()


def test_a_database_at_the_first_revision_upgrades_to_the_head(url: str) -> None:
    """An older gateway's database (revision 0001: files and batches, no videos) upgrades to
    the same tables."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            command.upgrade(migrations.config(connection), "0001")
            assert "videos" not in sa.inspect(connection).get_table_names()
        migrations.upgrade(engine)
        with engine.connect() as db:
            assert compare_metadata(MigrationContext.configure(db), metadata) == []
    finally:
        engine.dispose()
