"""The job store's schema, as Alembic revisions (versions/). `upgrade(engine)` brings a database
to the newest one; gateways call it when they open the store, so several gateways on one
PostgreSQL agree (Alembic's version table; PostgreSQL takes an advisory lock around it).

A new revision: `alembic -c gateway/jobs/migrations/alembic.ini revision -m "..."` and write
its upgrade by hand (gateway/jobs/store.py's tables are the model it must end at; a test
compares the two)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# any 64-bit number, the same in every gateway: PostgreSQL's advisory lock around migrations
ADVISORY_LOCK = 0x616967632D6A6F62


def config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Any) -> None:
    import sqlalchemy as sa
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # one gateway migrates, the others wait
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})
        command.upgrade(config(connection), "head")
