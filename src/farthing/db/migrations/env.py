"""Alembic environment: migrations run on the connection `farthing init` hands over."""

from __future__ import annotations

from typing import Any

from alembic import context

from farthing.db.schema import metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through `farthing init`"


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate compares only what this database has: an index declared for one dialect
    (``Index.ddl_if``) exists only there. Alembic does not read ``ddl_if`` itself."""
    del name, compare_to
    condition = getattr(obj, "_ddl_if", None)
    if type_ != "index" or reflected or condition is None or condition.dialect is None:
        return True
    dialects = condition.dialect
    if isinstance(dialects, str):
        return bool(dialects == connection.dialect.name)
    return connection.dialect.name in dialects


context.configure(
    connection=connection,
    target_metadata=metadata,
    include_object=_include_object,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
