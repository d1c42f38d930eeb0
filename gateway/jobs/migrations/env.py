"""Alembic's environment: runs on the connection `upgrade` hands it (never a URL of its own)."""

from __future__ import annotations

from alembic import context

from gateway.jobs.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from the command line
    raise SystemExit("run migrations through gateway.jobs.migrations.upgrade(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
