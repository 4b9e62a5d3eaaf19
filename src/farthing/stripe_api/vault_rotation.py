"""Re-wrapping every sealed value under the vault's current key (`farthing vault rotate`).

Sealed values live in two places: card numbers (``stripe_payment_methods.pan_sealed``) and
webhook signing secrets (``stripe_webhook_endpoints.secret_sealed`` and, during a secret roll,
``previous_secret_sealed``, both under the row's one key id). Only each blob's wrapped data key
changes; the secret's ciphertext is kept.

Rows go in bounded batches, each its own short transaction (SQLite's write lock and
PostgreSQL's row locks are held for one batch only), so servers keep serving in between. Rows
already under the current key are never touched: the job can stop anywhere and run again. Rows
sealed by servers while a pass runs are caught by the next pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_payment_methods as methods
from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.stripe_api._request import Partition
from farthing.stripe_api.webhooks._service import secret_aad
from farthing.vault import Vault, VaultError, associated_data

__all__ = [
    "ROTATE_BATCH_SIZE_MAX",
    "ROTATE_PASSES_MAX",
    "RotationError",
    "RotationReport",
    "count_by_key",
    "rewrap_all",
]

# Rows per transaction: large enough to finish millions of rows in minutes, small enough that a
# batch holds SQLite's write lock for milliseconds.
ROTATE_BATCH_SIZE_MAX = 500
# Passes over every table; one more than one is needed only while servers still seal under an
# old key, and a process that keeps doing so must not keep the job running for ever.
ROTATE_PASSES_MAX = 5


class RotationError(Exception):
    """A row does not open under any configured key; it names the row, never a secret."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _SealedTable:
    name: str
    table: sa.Table
    key_id: sa.Column[Any]
    blobs: tuple[sa.Column[Any], ...]
    aad: Callable[[sa.RowMapping], bytes]


def _card_aad(row: sa.RowMapping) -> bytes:
    return associated_data(row["tenant_id"], row["mode"], row["id"])


def _webhook_aad(row: sa.RowMapping) -> bytes:
    scope = Partition(tenant_id=row["tenant_id"], mode=row["mode"], platform_id=row["tenant_id"])
    return secret_aad(scope, row["id"])


SEALED_TABLES = (
    _SealedTable(
        name="payment_methods",
        table=methods,
        key_id=methods.c.vault_key_id,
        blobs=(methods.c.pan_sealed,),
        aad=_card_aad,
    ),
    _SealedTable(
        name="webhook_endpoints",
        table=endpoints,
        key_id=endpoints.c.secret_key_id,
        blobs=(endpoints.c.secret_sealed, endpoints.c.previous_secret_sealed),
        aad=_webhook_aad,
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationReport:
    key_id: str  # the key everything was re-wrapped under
    rewrapped: Mapping[str, int]  # table -> rows re-wrapped by this run
    remaining: int  # rows still under another key after the last pass (0 when done)
    passes: int


def _rewrap_row(vault: Vault, table: _SealedTable, row: sa.RowMapping) -> dict[str, Any]:
    aad = table.aad(row)
    values: dict[str, Any] = {table.key_id.name: vault.key_id}
    for column in table.blobs:
        blob = row[column.name]
        if blob is None:
            continue
        try:
            sealed = vault.rewrap(bytes(blob), aad, key_id=row[table.key_id.name])
        except VaultError:
            msg = (
                f"{table.name} row {row['id']} (vault key {row[table.key_id.name]}) does not "
                "open under the configured keys; add its key as previous:HEX to the key file"
            )
            raise RotationError(msg) from None
        assert sealed.key_id == vault.key_id
        values[column.name] = sealed.blob
    return values


def _rewrap_batch(
    connection: sa.Connection, vault: Vault, table: _SealedTable, *, after_seq: int, limit: int
) -> tuple[int, int]:
    """Re-wrap up to ``limit`` rows after ``after_seq`` that are under another key, in the
    caller's transaction; returns (rows re-wrapped, last seq seen)."""
    assert 0 < limit <= ROTATE_BATCH_SIZE_MAX
    t = table.table
    query = (
        sa.select(t.c.seq, t.c.id, t.c.tenant_id, t.c.mode, table.key_id, *table.blobs)
        .where(table.key_id != vault.key_id, t.c.seq > after_seq)
        .order_by(t.c.seq)
        .limit(limit)
    )
    # Locked (PostgreSQL) so that a concurrent roll of a webhook secret is never overwritten
    # with the old secret; SQLite's write transaction excludes it anyway.
    rows = connection.execute(query.with_for_update()).mappings().all()
    for row in rows:
        updated = connection.execute(
            t.update()
            .where(t.c.seq == row["seq"], table.key_id == row[table.key_id.name])
            .values(_rewrap_row(vault, table, row))
        )
        assert updated.rowcount == 1, row["id"]
    return len(rows), (rows[-1]["seq"] if rows else after_seq)


def _rewrap_table(
    engine: sa.Engine,
    vault: Vault,
    table: _SealedTable,
    *,
    batch_size: int,
    after_batch: Callable[[str, int], None] | None,
) -> int:
    total, after_seq = 0, 0
    while True:
        with begin_write(engine) as connection:
            count, after_seq = _rewrap_batch(
                connection, vault, table, after_seq=after_seq, limit=batch_size
            )
        if count == 0:
            return total
        total += count
        if after_batch is not None:
            after_batch(table.name, count)


def count_by_key(engine: sa.Engine) -> dict[str, int]:
    """Sealed rows per vault key id, over every table."""
    counts: dict[str, int] = {}
    with engine.connect() as connection:
        for table in SEALED_TABLES:
            query = sa.select(table.key_id, sa.func.count()).group_by(table.key_id)
            for key_id, count in connection.execute(query).all():
                counts[key_id] = counts.get(key_id, 0) + int(count)
    return counts


def rewrap_all(
    engine: sa.Engine,
    vault: Vault,
    *,
    batch_size: int = ROTATE_BATCH_SIZE_MAX,
    after_batch: Callable[[str, int], None] | None = None,
) -> RotationReport:
    """Re-wrap every row under ``vault``'s current key; ``after_batch(table, rows)`` runs after
    each committed batch (progress). ``vault`` must not reload keys meanwhile (no key file)."""
    totals = {table.name: 0 for table in SEALED_TABLES}
    remaining, passes = 0, 0
    for passes in range(1, ROTATE_PASSES_MAX + 1):  # noqa: B007 - reported
        for table in SEALED_TABLES:
            totals[table.name] += _rewrap_table(
                engine, vault, table, batch_size=batch_size, after_batch=after_batch
            )
        counts = count_by_key(engine)
        remaining = sum(count for key_id, count in counts.items() if key_id != vault.key_id)
        if remaining == 0:
            break
    return RotationReport(
        key_id=vault.key_id,
        rewrapped=MappingProxyType(totals),
        remaining=remaining,
        passes=passes,
    )
