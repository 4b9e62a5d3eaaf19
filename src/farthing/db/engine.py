"""Database engines for the embedded default (SQLite) and production (PostgreSQL).

SQLite runs in WAL mode with ``synchronous=FULL`` so that an acknowledged commit survives power
loss; PostgreSQL runs with ``synchronous_commit=on``. Either way a request is acknowledged only
after its commit returned.
"""

from __future__ import annotations

import enum
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from farthing._errors import ConfigurationError

__all__ = [
    "WRITE_OPTION",
    "Dialect",
    "application_name",
    "begin_write",
    "create_engine",
    "dialect_of",
    "normalize_url",
    "open_initialised",
]

# Execution option marking a connection whose transactions write: SQLite begins them IMMEDIATE.
WRITE_OPTION = "farthing_write"

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Page cache per connection: index pages of a large ledger stay in memory.
SQLITE_CACHE_KIB = 65_536
POSTGRES_CONNECT_TIMEOUT_S = 10
POOL_SIZE_MAX = 16


class Dialect(enum.Enum):
    """The two supported databases."""

    sqlite = "sqlite"
    postgresql = "postgresql"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs; pick the drivers Farthing uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
    msg = f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://..."
    raise ValueError(msg)


def dialect_of(engine: sa.Engine) -> Dialect:
    return Dialect(engine.dialect.name)


def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Autocommit at the driver level: transactions are begun explicitly (BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = cursor.execute("PRAGMA synchronous").fetchone()[0]
    cursor.close()
    assert mode == "wal", mode
    assert synchronous == 2, synchronous  # 2 = FULL


def _on_sqlite_begin(connection: sa.Connection) -> None:
    # The driver runs in autocommit mode, so SQLAlchemy's transactions are begun here. Deferred:
    # readers never take the write lock; the ledger's write path begins IMMEDIATE itself. Writers
    # through SQLAlchemy (begin_write) begin IMMEDIATE too: a deferred transaction that upgrades
    # to a writer after another commit fails at once with SQLITE_BUSY, whatever the busy timeout.
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def begin_write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that will write; committed on success, rolled back on error."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            yield connection


def create_engine(url: str) -> sa.Engine:
    """An engine with durable settings. A new SQLite file, and a new directory for it, are the
    owner's alone (0600, 0700): they hold customers' data, the audit trail and key hashes, and
    SQLite gives its -wal and -shm files the mode of the database."""
    normalized = normalize_url(url)
    parsed = make_url(normalized)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database not in (None, "", ":memory:"), "SQLite needs a file"
        path = Path(str(parsed.database))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # An empty file is a new database.
        engine = sa.create_engine(
            normalized,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=POOL_SIZE_MAX,
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    engine = sa.create_engine(
        normalized,
        connect_args={
            "application_name": application_name(),
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "options": "-c synchronous_commit=on -c default_transaction_isolation=read\\ committed",
        },
        pool_size=POOL_SIZE_MAX,
        pool_pre_ping=True,
    )
    assert dialect_of(engine) is Dialect.postgresql
    event.listen(engine, "do_connect", _name_the_session)
    return engine


def application_name() -> str:
    """How this process's PostgreSQL sessions are named in pg_stat_activity: `farthing init`
    refuses to migrate while sessions of other Farthing processes are open."""
    return f"farthing:{os.getpid()}"


def _name_the_session(_dialect: Any, _record: Any, _args: Any, parameters: dict[str, Any]) -> None:
    parameters["application_name"] = application_name()  # The pid of now, after any fork.


def open_initialised(url: str) -> sa.Engine:
    """An engine on a database that `farthing init` prepared; never creates a file."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).is_file():
        msg = f"no database at {parsed.database}: run `farthing init` first"
        raise ConfigurationError(msg)
    engine = create_engine(url)
    try:
        initialised = sa.inspect(engine).has_table("ledger_journal_head")
    except sa.exc.OperationalError as error:
        engine.dispose()
        msg = f"cannot connect to the database: {error.orig}"
        raise ConfigurationError(msg) from None
    if not initialised:
        engine.dispose()
        msg = "database is not initialised: run `farthing init` first"
        raise ConfigurationError(msg)
    from farthing.db.migrate import check_revision  # noqa: PLC0415 - alembic loads only here

    try:
        with engine.connect() as connection:
            check_revision(connection)
    except ConfigurationError:
        engine.dispose()
        raise
    return engine
