"""Shared fixtures: a migrated database on SQLite and, when configured, on PostgreSQL.

PostgreSQL tests run against FARTHING_TEST_POSTGRES_URL (each test gets its own database). Without
that variable they skip on a developer machine, and fail under CI=true.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from farthing.auth import Mode, create_key, create_tenant, ledger_id_for
from farthing.db.engine import Dialect, create_engine, dialect_of
from farthing.db.migrate import upgrade
from farthing.ledger_service import LedgerService

JOURNAL_KEY = bytes.fromhex("6a" * 32)
POSTGRES_ENV = "FARTHING_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _journal_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARTHING_JOURNAL_KEY", JOURNAL_KEY.hex())


def postgres_server_url() -> str | None:
    """The PostgreSQL server for tests; skip (or fail in CI) when there is none."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {POSTGRES_ENV} is not set: the PostgreSQL suite must run")
    pytest.skip(f"{POSTGRES_ENV} not set")
    return None


def _postgres_database(base_url: str) -> Iterator[str]:
    name = "farthing_t_" + secrets.token_hex(6)
    admin = sa.create_engine(
        sa.make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"PostgreSQL unreachable: {error.orig}")
    url = sa.make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'farthing.db'}"
        _migrate(url)
        yield url
        return
    base = postgres_server_url()
    assert base is not None
    for url in _postgres_database(base):
        _migrate(url)
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'farthing.db'}"
    _migrate(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = postgres_server_url()
    assert base is not None
    for url in _postgres_database(base):
        _migrate(url)
        yield url


def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    created = create_engine(database_url)
    yield created
    created.dispose()


@pytest.fixture
def service(engine: sa.Engine) -> LedgerService:
    return LedgerService(engine, journal_key=JOURNAL_KEY)


@pytest.fixture
def ledger_id(engine: sa.Engine) -> int:
    """The test-mode ledger of a new tenant."""
    with engine.begin() as connection:
        tenant = create_tenant(connection, name="test tenant", journal_key=JOURNAL_KEY)
        return ledger_id_for(connection, tenant, Mode.test)


def new_key(engine: sa.Engine, *, mode: Mode = Mode.test) -> tuple[str, int]:
    """A new tenant with a secret key; returns (secret, ledger id)."""
    with engine.begin() as connection:
        tenant = create_tenant(connection, name="key tenant", journal_key=JOURNAL_KEY)
        secret = create_key(connection, tenant_id=tenant, mode=mode)
        return secret, ledger_id_for(connection, tenant, mode)


def waiting_on_a_lock(engine: sa.Engine) -> bool:
    """Whether a session of this PostgreSQL database waits for a lock now (race tests poll it
    to know that a concurrent request has reached the lock they hold)."""
    with engine.connect() as connection:
        return bool(
            connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).scalar_one()
        )


def explain(engine: sa.Engine, statement: str, parameters: Any) -> str:
    """The plan the database makes for a driver-level statement. PostgreSQL is told not to scan
    sequentially, so that a missing index shows even on a small table, where a scan would be the
    planner's honest choice."""
    with engine.connect() as connection:
        if dialect_of(engine) is Dialect.sqlite:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters)
        return "\n".join(str(row[0]) for row in rows)
