"""The job store's Alembic revisions end at the tables gateway/jobs/store.py declares (the
videos table of revision 0002 included), and a database at 0001 upgrades to it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.jobs.migrations import config
from gateway.jobs.store import JobStore, metadata


def test_migrations_end_at_the_declared_tables(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    with store.engine.begin() as connection:  # an older gateway's database
        command.upgrade(config(connection), "0001")
        assert "videos" not in sa.inspect(connection).get_table_names()
    store.migrate()
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []
    store.close()
