"""Read side of the ledger: look-ups, an account's transfers, balances at a past moment.

Every query takes the caller's ledger id, so one tenant or mode never sees another's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import ledger_accounts, ledger_transfers
from farthing.ledger import (
    PAGE_SIZE_MAX,
    Account,
    AccountFlags,
    Balances,
    Metadata,
    TransferFlags,
)
from farthing.ledger_service._sql import storable
from farthing.ledger_service._writer import decode_metadata

__all__ = [
    "CommittedTransfer",
    "TransferPage",
    "balance_at",
    "get_accounts",
    "get_transfers",
    "list_account_transfers",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedTransfer:
    """A transfer as clients read it back."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    pending_id: str | None
    timeout_s: int
    expires_at_ns: int | None
    code: int
    flags: TransferFlags
    metadata: Metadata
    timestamp_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPage:
    transfers: tuple[CommittedTransfer, ...]
    # Pass as ``after`` to get the next page; None when this page is the last.
    next_cursor: int | None


_debit = ledger_accounts.alias("debit")
_credit = ledger_accounts.alias("credit")
_t = ledger_transfers
_TRANSFER_SELECT = sa.select(
    _t.c.id,
    _debit.c.id.label("debit_id"),
    _credit.c.id.label("credit_id"),
    _t.c.amount,
    _t.c.currency,
    _t.c.pending_id,
    _t.c.timeout_s,
    _t.c.expires_at_ns,
    _t.c.code,
    _t.c.flags,
    _t.c.metadata,
    _t.c.ts,
).select_from(
    _t.join(_debit, _debit.c.pk == _t.c.debit_pk).join(_credit, _credit.c.pk == _t.c.credit_pk)
)


def _transfer(row: Any) -> CommittedTransfer:  # A SQLAlchemy Row of _TRANSFER_SELECT.
    mapping = row._mapping  # noqa: SLF001 - SQLAlchemy's public row mapping accessor.
    return CommittedTransfer(
        id=mapping["id"],
        debit_account_id=mapping["debit_id"],
        credit_account_id=mapping["credit_id"],
        amount_minor=mapping["amount"],
        currency=mapping["currency"],
        pending_id=mapping["pending_id"],
        timeout_s=mapping["timeout_s"],
        expires_at_ns=mapping["expires_at_ns"],
        code=mapping["code"],
        flags=TransferFlags(mapping["flags"]),
        metadata=decode_metadata(mapping["metadata"]),
        timestamp_ns=mapping["ts"],
    )


def get_accounts(
    connection: sa.Connection, ledger_id: int, ids: Sequence[str]
) -> dict[str, Account]:
    assert len(ids) <= PAGE_SIZE_MAX
    a = ledger_accounts
    rows = connection.execute(
        sa.select(a).where(a.c.ledger_id == ledger_id, a.c.id.in_(_storable(ids)))
    ).all()
    found: dict[str, Account] = {}
    for row in rows:
        found[row.id] = Account(
            id=row.id,
            currency=row.currency,
            code=row.code,
            flags=AccountFlags(row.flags),
            limit_minor=row.limit_minor,
            limit_initial_minor=row.limit_initial_minor,
            metadata=decode_metadata(row.metadata),
            balances=Balances(
                row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted
            ),
            timestamp_ns=row.created_ns,
        )
    return found


def get_transfers(
    connection: sa.Connection, ledger_id: int, ids: Sequence[str]
) -> dict[str, CommittedTransfer]:
    assert len(ids) <= PAGE_SIZE_MAX
    rows = connection.execute(
        _TRANSFER_SELECT.where(_t.c.ledger_id == ledger_id, _t.c.id.in_(_storable(ids)))
    ).all()
    return {row.id: _transfer(row) for row in rows}


def _storable(ids: Sequence[str]) -> list[str]:
    return [value for value in ids if storable(value)]


def _account_pk(connection: sa.Connection, ledger_id: int, account_id: str) -> int | None:
    if not storable(account_id):
        return None
    a = ledger_accounts
    pk = connection.execute(
        sa.select(a.c.pk).where(a.c.ledger_id == ledger_id, a.c.id == account_id)
    ).scalar_one_or_none()
    return None if pk is None else int(pk)


def list_account_transfers(  # noqa: PLR0913
    connection: sa.Connection,
    ledger_id: int,
    account_id: str,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    after: int | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> TransferPage | None:
    """Transfers debiting or crediting an account, by timestamp; None if no such account."""
    assert 0 < limit <= PAGE_SIZE_MAX
    pk = _account_pk(connection, ledger_id, account_id)
    if pk is None:
        return None
    conditions = []
    if since_ns is not None:
        conditions.append(_t.c.ts >= since_ns)
    if until_ns is not None:
        conditions.append(_t.c.ts < until_ns)
    if after is not None:
        conditions.append(_t.c.ts < after if newest_first else _t.c.ts > after)
    order = _t.c.ts.desc() if newest_first else _t.c.ts.asc()
    # Two index range scans (debit side, credit side) merged, instead of one OR scan.
    sides = [
        sa.select(_t.c.ts).where(column == pk, *conditions).order_by(order).limit(limit + 1)
        for column in (_t.c.debit_pk, _t.c.credit_pk)
    ]
    union = sa.union_all(*(side.subquery().select() for side in sides)).subquery()
    timestamps = sa.select(union.c.ts)
    rows = connection.execute(
        _TRANSFER_SELECT.where(_t.c.ts.in_(timestamps)).order_by(order).limit(limit + 1)
    ).all()
    page = tuple(_transfer(row) for row in rows[:limit])
    next_cursor = page[-1].timestamp_ns if len(rows) > limit else None
    return TransferPage(transfers=page, next_cursor=next_cursor)


def balance_at(
    connection: sa.Connection, ledger_id: int, account_id: str, at_ns: int
) -> Balances | None:
    """The account's balances right after its last transfer at or before ``at_ns``.

    Two indexed look-ups of the balances stored on the transfer rows; None if no such account.
    """
    pk = _account_pk(connection, ledger_id, account_id)
    if pk is None:
        return None
    latest: tuple[int, Balances] | None = None
    for side, prefix in ((_t.c.debit_pk, "dr_"), (_t.c.credit_pk, "cr_")):
        columns = [
            _t.c[prefix + name]
            for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
        ]
        row = connection.execute(
            sa.select(_t.c.ts, *columns)
            .where(side == pk, _t.c.ts <= at_ns)
            .order_by(_t.c.ts.desc())
            .limit(1)
        ).first()
        if row is not None and (latest is None or row[0] > latest[0]):
            latest = (row[0], Balances(row[1], row[2], row[3], row[4]))
    return Balances() if latest is None else latest[1]
