"""Alembic environment: migrations run on the connection `farthing init` hands over."""

from __future__ import annotations

from alembic import context

from farthing.db.schema import metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through `farthing init`"
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
