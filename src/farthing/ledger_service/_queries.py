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
from farthing.ledger_service._history import history
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


_TS_MAX = 2**63 - 1
_BALANCE_COLUMNS = {
    prefix: [
        ledger_transfers.c[prefix + name]
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    ]
    for prefix in ("dr_", "cr_")
}
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


def _account_head(
    connection: sa.Connection, ledger_id: int, account_id: str
) -> tuple[int, int | None] | None:
    """The account's pk and newest transfer's timestamp; None if there is no such account."""
    if not storable(account_id):
        return None
    a = ledger_accounts
    row = connection.execute(
        sa.select(a.c.pk, a.c.last_transfer_ts).where(
            a.c.ledger_id == ledger_id, a.c.id == account_id
        )
    ).first()
    return None if row is None else (int(row[0]), row[1])


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
    head = _account_head(connection, ledger_id, account_id)
    if head is None:
        return None
    # The range as low < ts <= top (top inclusive, so that no bound leaves BIGINT).
    low = -1 if since_ns is None else since_ns - 1
    top = _TS_MAX if until_ns is None else until_ns - 1
    if after is not None:
        if newest_first:
            top = min(top, after - 1)
        else:
            low = max(low, after)
    timestamps = history(
        connection,
        account_pk=head[0],
        last_ts=head[1],
        low=low,
        top=top,
        count=limit + 1,
        newest_first=newest_first,
    )
    order = _t.c.ts.desc() if newest_first else _t.c.ts.asc()
    rows = (
        connection.execute(_TRANSFER_SELECT.where(_t.c.ts.in_(timestamps)).order_by(order)).all()
        if timestamps
        else []
    )
    assert len(rows) == len(timestamps)
    page = tuple(_transfer(row) for row in rows[:limit])
    next_cursor = page[-1].timestamp_ns if len(rows) > limit else None
    return TransferPage(transfers=page, next_cursor=next_cursor)


def balance_at(
    connection: sa.Connection, ledger_id: int, account_id: str, at_ns: int
) -> Balances | None:
    """The account's balances right after its last transfer at or before ``at_ns``.

    Read from the balances stored on that transfer's row, found by a walk of the account's
    history (at most HISTORY_MARK_EVERY links); None if no such account.
    """
    head = _account_head(connection, ledger_id, account_id)
    if head is None:
        return None
    pk = head[0]
    found = history(
        connection, account_pk=pk, last_ts=head[1], low=-1, top=at_ns, count=1, newest_first=True
    )
    if not found:
        return Balances()
    row = connection.execute(
        sa.select(_t.c.debit_pk, *_BALANCE_COLUMNS["dr_"], *_BALANCE_COLUMNS["cr_"]).where(
            _t.c.ts == found[0]
        )
    ).one()
    side = row[1:5] if row[0] == pk else row[5:9]
    return Balances(side[0], side[1], side[2], side[3])
