"""Schema migrations (Alembic), run programmatically by `farthing init`."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from farthing._errors import ConfigurationError
from farthing.db.engine import application_name

__all__ = ["alembic_config", "check_revision", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine) -> None:
    """Create or migrate the schema to the newest revision; safe to run again (also while
    servers run, when there is nothing to migrate)."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        connection.rollback()  # Alembic begins its own transactions (and autocommit blocks).
        if current != _known_revisions()[0] and connection.dialect.name == "postgresql":
            _refuse_while_others_connected(connection)
        command.upgrade(alembic_config(connection), "head")
        connection.commit()


def _refuse_while_others_connected(connection: sa.Connection) -> None:
    """A process of the older version would go on writing rows the new schema's derived data
    does not expect (e.g. transfers without history links): migrate only when none is left."""
    others = connection.execute(
        sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'farthing:%' AND application_name <> :mine "
            "AND pid <> pg_backend_pid()"
        ),
        {"mine": application_name()},
    ).scalar_one()
    connection.rollback()
    if others:
        msg = (
            f"{others} session(s) of other Farthing processes are open on this database: stop "
            "every Farthing process (servers, workers) before migrating it"
        )
        raise ConfigurationError(msg)


@functools.cache
def _known_revisions() -> tuple[str, frozenset[str]]:
    """The newest revision this code knows, and all it knows."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    assert head is not None
    return head, frozenset(script.revision for script in scripts.walk_revisions())


def check_revision(connection: sa.Connection) -> None:
    """Refuse a schema this code was not written for: older code would write rows the newer
    schema's derived data does not expect (history links, for one), and newer code would find
    columns missing."""
    current = MigrationContext.configure(connection).get_current_revision()
    head, known = _known_revisions()
    if current == head:
        return
    if current is None:
        msg = "database is not initialised: run `farthing init` first"
    elif current in known:
        msg = (
            f"database schema is at revision {current}, this Farthing needs {head}: stop every "
            "Farthing process using it, then run `farthing init`"
        )
    else:
        msg = (
            f"database schema is at revision {current}, which this Farthing does not know: a "
            "newer Farthing migrated it; run that version"
        )
    raise ConfigurationError(msg)
