"""Tamper evidence: direct edits of the database make `farthing verify` fail, naming the spot.

A small ledger is built with several commits (accounts with flags, limits and metadata, plain
transfers, pending transfers posted and voided, limit changes, a hold left open, an account
created late). Verification passes; then one edit is made straight in the database, as someone
with write access but without the journal key could, and ``verify_ledger`` must raise
``IntegrityError`` whose message names the journal entry (or the account) concerned. The CLI
must exit non-zero with the message on stderr. A seeded random campaign of single-cell edits
over every journaled table must be detected every time (FARTHING_TAMPER_SEED reproduces one).

Each case once reproduced a gap that was then closed; they stay as regression tests.
"""

from __future__ import annotations

import gc
import os
import random
import re
import string
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from farthing._errors import IntegrityError
from farthing.auth import Mode, create_tenant, ledger_id_for
from farthing.db.engine import create_engine
from farthing.db.schema import (
    ledger_accounts,
    ledger_failed_transfers,
    ledger_history_marks,
    ledger_holds,
    ledger_journal,
    ledger_journal_head,
    ledger_limit_changes,
    ledger_transfers,
    ledgers,
)
from farthing.ledger import (
    AccountEvent,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    SetLimitResult,
    TransferEvent,
    TransferFlags,
)
from farthing.ledger_service import CreateAccounts, CreateTransfers, LedgerService, SetLimit
from tests.conftest import JOURNAL_KEY, _migrate, _postgres_database, postgres_server_url

FARTHING = str(Path(sys.executable).with_name("farthing"))
CAMPAIGN_EDITS = 30
CAMPAIGN_DRAWS_MAX = 400
CAMPAIGN_SEED = int(
    os.environ.get("FARTHING_TAMPER_SEED", str(random.SystemRandom().randrange(2**32)))
)
ENTRIES = 6
_DEBITS_LIMITED = AccountFlags.debits_must_not_exceed_credits
_CREDITS_LIMITED = AccountFlags.credits_must_not_exceed_debits


def _transfer(id_: str, debit: str, credit: str, amount: int, **fields: Any) -> TransferEvent:
    return TransferEvent(
        id=id_, debit_account_id=debit, credit_account_id=credit, amount_minor=amount, **fields
    )


def _build(service: LedgerService, ledger_id: int) -> None:
    """Six journal entries; every event must succeed."""
    commits: list[list[Any]] = [
        [  # entry 1: accounts
            CreateAccounts(
                ledger_id=ledger_id,
                events=(
                    AccountEvent(id="bank", currency="USD"),
                    AccountEvent(
                        id="alice",
                        currency="USD",
                        flags=_DEBITS_LIMITED,
                        limit_minor=100,
                        metadata=(("kyc", "full"),),
                    ),
                    AccountEvent(
                        id="bob", currency="USD", flags=_CREDITS_LIMITED, limit_minor=5000
                    ),
                    AccountEvent(id="carol", currency="USD", code=7),
                    AccountEvent(id="euro-a", currency="EUR"),
                    AccountEvent(id="euro-b", currency="EUR", flags=_DEBITS_LIMITED),
                ),
            )
        ],
        [  # entry 2: funding and two holds
            CreateTransfers(
                ledger_id=ledger_id,
                events=(
                    _transfer("fund-alice", "bank", "alice", 1000),
                    _transfer("fund-bob", "bank", "bob", 2000),
                    _transfer("fund-euro-b", "euro-a", "euro-b", 300),
                    _transfer(
                        "hold-1", "alice", "carol", 300, flags=TransferFlags.pending, timeout_s=3600
                    ),
                    _transfer(
                        "hold-2",
                        "alice",
                        "bob",
                        50,
                        flags=TransferFlags.pending,
                        metadata=(("order", "42"),),
                    ),
                ),
            )
        ],
        [  # entry 3: a limit change, a partial post, a void, a payment inside the new limit
            SetLimit(ledger_id=ledger_id, account_id="alice", limit_minor=500),
            CreateTransfers(
                ledger_id=ledger_id,
                events=(
                    TransferEvent(
                        id="post-1",
                        pending_id="hold-1",
                        amount_minor=200,
                        flags=TransferFlags.post_pending,
                    ),
                    TransferEvent(
                        id="void-2", pending_id="hold-2", flags=TransferFlags.void_pending
                    ),
                    _transfer("pay-1", "alice", "carol", 700, code=3),
                ),
            ),
        ],
        [  # entry 4: EUR back and a transfer with metadata
            CreateTransfers(
                ledger_id=ledger_id,
                events=(
                    _transfer("pay-euro", "euro-b", "euro-a", 100),
                    _transfer("pay-2", "carol", "bob", 50, metadata=(("note", "rent"),)),
                ),
            )
        ],
        [  # entry 5: another limit change, a hold left open, a linked pair
            SetLimit(ledger_id=ledger_id, account_id="alice", limit_minor=400),
            CreateTransfers(
                ledger_id=ledger_id,
                events=(
                    _transfer(
                        "hold-3", "bank", "carol", 25, flags=TransferFlags.pending, timeout_s=7200
                    ),
                    _transfer("pay-3", "bob", "carol", 10, flags=TransferFlags.linked),
                    _transfer("pay-4", "carol", "alice", 5),
                ),
            ),
        ],
        [  # entry 6: an account created late, and its first transfer
            CreateAccounts(ledger_id=ledger_id, events=(AccountEvent(id="dave", currency="USD"),)),
            CreateTransfers(
                ledger_id=ledger_id, events=(_transfer("pay-dave", "bank", "dave", 5),)
            ),
        ],
    ]
    for requests in commits:
        for outcome in service.commit(requests):
            if isinstance(outcome, SetLimitResult):
                assert outcome is SetLimitResult.ok
            else:
                assert set(outcome) <= {CreateAccountResult.ok, CreateTransferResult.ok}, outcome
    report = service.verify()
    assert (report.entries, report.accounts, report.transfers) == (ENTRIES, 7, 14)


_TABLES = (
    ledger_accounts,
    ledger_limit_changes,
    ledger_transfers,
    ledger_holds,
    ledger_history_marks,
    ledger_failed_transfers,
    ledger_journal,
    ledger_journal_head,
    ledgers,
)


@dataclass(frozen=True, slots=True)
class _Built:
    url: str
    service: LedgerService
    snapshot: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built_once(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Built]:
    """One database per kind for the whole module: built once, restored before every test."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('tamper') / 'f.db'}"])
    else:
        base = postgres_server_url()
        assert base is not None
        urls = _postgres_database(base)
    for url in urls:
        _migrate(url)
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                tenant = create_tenant(connection, name="tamper", journal_key=JOURNAL_KEY)
                ledger_id = ledger_id_for(connection, tenant, Mode.test)
            service = LedgerService(engine, journal_key=JOURNAL_KEY)
            _build(service, ledger_id)
            with engine.connect() as connection:
                snapshot = {
                    table.name: [dict(row._mapping) for row in connection.execute(sa.select(table))]
                    for table in _TABLES
                }
            yield _Built(url, service, snapshot)
        finally:
            engine.dispose()


@pytest.fixture
def built(built_once: _Built) -> LedgerService:
    """The built ledger as it was right after it was built; verify passes on it."""
    with built_once.service.engine.begin() as connection:
        for table in _TABLES:
            connection.execute(sa.delete(table))
            rows = built_once.snapshot[table.name]
            if rows:
                connection.execute(sa.insert(table), rows)
    report = built_once.service.verify()
    assert (report.entries, report.accounts, report.transfers) == (ENTRIES, 7, 14)
    return built_once.service


def _verify_failure(service: LedgerService) -> str | None:
    """The IntegrityError message of verify, or None when the ledger verifies.

    A failing verify must close its server-side cursors: the suite turns the ResourceWarning of
    a leaked one into an error when it is collected here.
    """
    message: str | None = None
    try:
        service.verify()
    except IntegrityError as error:
        message = str(error)
    gc.collect()
    return message


# ---------------------------------------------------------------------------------------------
# Helpers that read the spot an edit concerns


def _seq_of(connection: sa.Connection, transfer_id: str) -> int:
    t = ledger_transfers
    return int(
        connection.execute(sa.select(t.c.journal_seq).where(t.c.id == transfer_id)).scalar_one()
    )


def _row(connection: sa.Connection, transfer_id: str) -> dict[str, Any]:
    t = ledger_transfers
    return dict(connection.execute(sa.select(t).where(t.c.id == transfer_id)).one()._mapping)


def _entry(seq: int) -> str:
    return rf"^journal entry {seq}\b"


def _limit_change_ts(connection: sa.Connection, index: int) -> tuple[int, int]:
    lc = ledger_limit_changes
    row = connection.execute(
        sa.select(lc.c.ts, lc.c.journal_seq).order_by(lc.c.ts).offset(index).limit(1)
    ).one()
    return int(row.ts), int(row.journal_seq)


def _flip_hex(value: str) -> str:
    return ("1" if value[0] != "1" else "2") + value[1:]


# ---------------------------------------------------------------------------------------------
# Tampering cases: each edits the database and returns the pattern the message must match.

Tamper = Callable[[sa.Connection], str]
t, a, j = ledger_transfers, ledger_accounts, ledger_journal


def transfer_amount(connection: sa.Connection) -> str:
    connection.execute(sa.update(t).where(t.c.id == "pay-1").values(amount=t.c.amount + 1))
    return _entry(_seq_of(connection, "pay-1"))


def transfer_balance_snapshot(connection: sa.Connection) -> str:
    connection.execute(
        sa.update(t).where(t.c.id == "pay-2").values(cr_credits_posted=t.c.cr_credits_posted + 1)
    )
    return _entry(_seq_of(connection, "pay-2"))


def transfer_deleted(connection: sa.Connection) -> str:
    seq = _seq_of(connection, "post-1")
    connection.execute(sa.delete(t).where(t.c.id == "post-1"))
    return _entry(seq)


def transfers_reordered(connection: sa.Connection) -> str:
    """Swap the timestamps (the commit order) of two transfers of different entries."""
    first, second = _row(connection, "fund-bob"), _row(connection, "pay-2")
    connection.execute(sa.update(t).where(t.c.id == "fund-bob").values(ts=-1))
    connection.execute(sa.update(t).where(t.c.id == "pay-2").values(ts=first["ts"]))
    connection.execute(sa.update(t).where(t.c.id == "fund-bob").values(ts=second["ts"]))
    return _entry(first["journal_seq"])


def transfer_forged_inside_an_entry(connection: sa.Connection) -> str:
    """A copy of a payment under a new id, slotted just before the entry's first record."""
    row = _row(connection, "pay-2")
    seq = row["journal_seq"]
    previous_ts = connection.execute(sa.select(j.c.ts).where(j.c.seq == seq - 1)).scalar_one()
    first_ts = connection.execute(
        sa.select(sa.func.min(t.c.ts)).where(t.c.journal_seq == seq)
    ).scalar_one()
    assert previous_ts + 1 < first_ts
    connection.execute(sa.insert(t).values({**row, "id": "forged", "ts": previous_ts + 1}))
    return _entry(seq)


def transfer_forged_after_the_journal(connection: sa.Connection) -> str:
    """A consistent-looking transfer appended after the last entry, balances adjusted to match."""
    head = connection.execute(sa.select(ledger_journal_head)).one()
    pks = {row.id: row.pk for row in connection.execute(sa.select(a.c.id, a.c.pk))}
    bank, dave = (
        connection.execute(sa.select(a).where(a.c.id == name)).one() for name in ("bank", "dave")
    )
    connection.execute(
        sa.insert(t).values(
            ts=head.ts + 10,
            ledger_id=bank.ledger_id,
            id="forged",
            debit_pk=pks["bank"],
            credit_pk=pks["dave"],
            amount=1,
            currency="USD",
            pending_id=None,
            timeout_s=0,
            expires_at_ns=None,
            code=0,
            flags=0,
            metadata=None,
            journal_seq=head.seq + 1,
            dr_debits_pending=bank.debits_pending,
            dr_debits_posted=bank.debits_posted + 1,
            dr_credits_pending=bank.credits_pending,
            dr_credits_posted=bank.credits_posted,
            cr_debits_pending=dave.debits_pending,
            cr_debits_posted=dave.debits_posted,
            cr_credits_pending=dave.credits_pending,
            cr_credits_posted=dave.credits_posted + 1,
        )
    )
    connection.execute(
        sa.update(a).where(a.c.id == "bank").values(debits_posted=a.c.debits_posted + 1)
    )
    connection.execute(
        sa.update(a).where(a.c.id == "dave").values(credits_posted=a.c.credits_posted + 1)
    )
    return rf"^transfer row outside the journal \(journal_seq {head.seq + 1}\)"


def journal_entry_deleted(connection: sa.Connection) -> str:
    connection.execute(sa.delete(j).where(j.c.seq == 3))
    return r"^journal entry 3 missing"


def journal_last_entry_deleted(connection: sa.Connection) -> str:
    connection.execute(sa.delete(j).where(j.c.seq == ENTRIES))
    return rf"^account row outside the journal \(journal_seq {ENTRIES}\)"


def journal_entries_swapped(connection: sa.Connection) -> str:
    second, third = (
        dict(connection.execute(sa.select(j).where(j.c.seq == seq)).one()._mapping)
        for seq in (2, 3)
    )
    connection.execute(sa.update(j).where(j.c.seq == 2).values({**third, "seq": 2}))
    connection.execute(sa.update(j).where(j.c.seq == 3).values({**second, "seq": 3}))
    return _entry(2)


def journal_digest(connection: sa.Connection) -> str:
    digest = connection.execute(sa.select(j.c.digest).where(j.c.seq == 4)).scalar_one()
    connection.execute(sa.update(j).where(j.c.seq == 4).values(digest=_flip_hex(digest)))
    return _entry(4)


def journal_mac(connection: sa.Connection) -> str:
    mac = connection.execute(sa.select(j.c.mac).where(j.c.seq == 4)).scalar_one()
    connection.execute(sa.update(j).where(j.c.seq == 4).values(mac=_flip_hex(mac)))
    return _entry(4)


def journal_timestamp(connection: sa.Connection) -> str:
    connection.execute(sa.update(j).where(j.c.seq == 5).values(ts=j.c.ts + 1))
    return _entry(5)


def journal_counts(connection: sa.Connection) -> str:
    connection.execute(
        sa.update(j).where(j.c.seq == 2).values(transfers_count=j.c.transfers_count - 1)
    )
    return _entry(2)


def journal_head(connection: sa.Connection) -> str:
    mac = connection.execute(sa.select(ledger_journal_head.c.mac)).scalar_one()
    connection.execute(sa.update(ledger_journal_head).values(mac=_flip_hex(mac)))
    return rf"^journal head \({ENTRIES}\) does not match"


def account_balance(connection: sa.Connection) -> str:
    connection.execute(
        sa.update(a).where(a.c.id == "carol").values(credits_posted=a.c.credits_posted + 1)
    )
    return r"^account 'carol': stored balances"


def account_pending_balance(connection: sa.Connection) -> str:
    connection.execute(
        sa.update(a).where(a.c.id == "bank").values(debits_pending=a.c.debits_pending - 25)
    )
    return r"^account 'bank': stored balances"


def account_current_limit(connection: sa.Connection) -> str:
    connection.execute(sa.update(a).where(a.c.id == "alice").values(limit_minor=1_000_000))
    return r"^account 'alice': stored balances or limit"


def account_flags(connection: sa.Connection) -> str:
    connection.execute(sa.update(a).where(a.c.id == "alice").values(flags=0))
    return _entry(1)


def account_metadata(connection: sa.Connection) -> str:
    connection.execute(sa.update(a).where(a.c.id == "alice").values(metadata='{"kyc":"none"}'))
    return _entry(1)


def account_created_late(connection: sa.Connection) -> str:
    connection.execute(sa.update(a).where(a.c.id == "dave").values(code=1))
    return _entry(ENTRIES)


def limit_change_value(connection: sa.Connection) -> str:
    ts, seq = _limit_change_ts(connection, 0)
    lc = ledger_limit_changes
    connection.execute(sa.update(lc).where(lc.c.ts == ts).values(limit_minor=10_000))
    return _entry(seq)


def limit_change_previous_value(connection: sa.Connection) -> str:
    ts, seq = _limit_change_ts(connection, 1)
    lc = ledger_limit_changes
    connection.execute(sa.update(lc).where(lc.c.ts == ts).values(previous_limit_minor=100))
    return _entry(seq)


def limit_change_deleted(connection: sa.Connection) -> str:
    ts, seq = _limit_change_ts(connection, 1)
    lc = ledger_limit_changes
    connection.execute(sa.delete(lc).where(lc.c.ts == ts))
    return _entry(seq)


def hold_state(connection: sa.Connection) -> str:
    """Hold states are derived rows; verify rebuilds them and names the hold's transfer."""
    ts = _row(connection, "hold-1")["ts"]
    connection.execute(
        sa.update(ledger_holds).where(ledger_holds.c.transfer_ts == ts).values(state=0)
    )
    return rf"^hold of the transfer at {ts}: "


def pending_id_null_to_empty(connection: sa.Connection) -> str:
    connection.execute(sa.update(t).where(t.c.id == "pay-1").values(pending_id=""))
    return _entry(_seq_of(connection, "pay-1"))


def transfer_metadata_null_to_empty(connection: sa.Connection) -> str:
    connection.execute(sa.update(t).where(t.c.id == "pay-1").values(metadata=""))
    return _entry(_seq_of(connection, "pay-1"))


def journal_head_timestamp(connection: sa.Connection) -> str:
    connection.execute(sa.update(ledger_journal_head).values(ts=ledger_journal_head.c.ts + 10**15))
    return r"^journal head"


def hold_expiry(connection: sa.Connection) -> str:
    ts = _row(connection, "hold-3")["ts"]
    connection.execute(
        sa.update(ledger_holds).where(ledger_holds.c.transfer_ts == ts).values(expires_at_ns=None)
    )
    return r"hold"


def transfer_history_link(connection: sa.Connection) -> str:
    """History links are derived: one that skips a transfer would hide it from listings."""
    previous = _row(connection, "pay-2")["dr_previous_ts"]
    assert previous is not None
    connection.execute(sa.update(t).where(t.c.id == "pay-3").values(dr_previous_ts=previous))
    return rf"^journal entry {_seq_of(connection, 'pay-3')}: transfer 'pay-3': its link"


def account_history_head(connection: sa.Connection) -> str:
    connection.execute(
        sa.update(a).where(a.c.id == "carol").values(last_transfer_ts=a.c.last_transfer_ts - 1)
    )
    return r"^account 'carol': stored history head"


def account_history_count(connection: sa.Connection) -> str:
    connection.execute(
        sa.update(a).where(a.c.id == "bob").values(transfers_count=a.c.transfers_count + 1)
    )
    return r"^account 'bob': stored history head"


def _ledger_of(connection: sa.Connection) -> tuple[int, str]:
    """The id and owner of the built ledger (the one holding account 'bob')."""
    ledger_id = connection.execute(sa.select(a.c.ledger_id).where(a.c.id == "bob")).scalar_one()
    tenant = connection.execute(
        sa.select(ledgers.c.tenant_id).where(ledgers.c.id == ledger_id)
    ).scalar_one()
    return int(ledger_id), str(tenant)


def ledger_modes_swapped(connection: sa.Connection) -> str:
    """The tenant's test ledger becomes its live one and the other way round."""
    test_id, tenant = _ledger_of(connection)
    live_id = connection.execute(
        sa.select(ledgers.c.id).where(
            ledgers.c.tenant_id == tenant, ledgers.c.mode == "live", ledgers.c.purpose == "native"
        )
    ).scalar_one()
    for ledger_id, mode in ((test_id, "swap"), (live_id, "test"), (test_id, "live")):
        connection.execute(sa.update(ledgers).where(ledgers.c.id == ledger_id).values(mode=mode))
    return rf"^ledger {min(test_id, live_id)}: owner {tenant} \w+ native does not match its seal"


def ledger_id_not_positive(connection: sa.Connection) -> str:
    """Found by the random campaign: an id no ledger is created with, so none has a seal."""
    ledger_id, _tenant = _ledger_of(connection)
    connection.execute(sa.update(ledgers).where(ledgers.c.id == ledger_id).values(id=-ledger_id))
    return rf"^ledger {-ledger_id}: not an id a ledger is created with"


def ledger_deleted(connection: sa.Connection) -> str:
    ledger_id, _tenant = _ledger_of(connection)
    connection.execute(sa.delete(ledgers).where(ledgers.c.id == ledger_id))
    return r"^account '[^']+' belongs to a ledger that does not exist"


CASES: list[Any] = [
    transfer_amount,
    transfer_balance_snapshot,
    transfer_deleted,
    transfers_reordered,
    transfer_forged_inside_an_entry,
    transfer_forged_after_the_journal,
    journal_entry_deleted,
    journal_last_entry_deleted,
    journal_entries_swapped,
    journal_digest,
    journal_mac,
    journal_timestamp,
    journal_counts,
    journal_head,
    account_balance,
    account_pending_balance,
    account_current_limit,
    account_flags,
    account_metadata,
    account_created_late,
    limit_change_value,
    limit_change_previous_value,
    limit_change_deleted,
    hold_state,
    pending_id_null_to_empty,
    transfer_metadata_null_to_empty,
    journal_head_timestamp,
    hold_expiry,
    transfer_history_link,
    account_history_head,
    account_history_count,
    ledger_modes_swapped,
    ledger_id_not_positive,
    ledger_deleted,
]


@pytest.mark.parametrize("tamper", CASES, ids=lambda case: case.__name__)
def test_edit_is_detected_and_named(built: LedgerService, tamper: Tamper) -> None:
    with built.engine.begin() as connection:
        pattern = tamper(connection)
    message = _verify_failure(built)
    assert message is not None, "verify passed"
    assert re.search(pattern, message), f"{message} does not match {pattern!r}"


def _run_verify_cli(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FARTHING, "verify", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),  # FARTHING_JOURNAL_KEY comes from the autouse fixture
    )


def test_cli_exits_nonzero_with_the_message(built: LedgerService, built_once: _Built) -> None:
    database_url = built_once.url
    completed = _run_verify_cli(database_url)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.startswith(f"ok: {ENTRIES} journal entries, 7 accounts, 14 transfers")
    with built.engine.begin() as connection:
        pattern = transfer_amount(connection)
    completed = _run_verify_cli(database_url)
    assert completed.returncode != 0
    assert completed.stdout == ""
    message = completed.stderr.strip()
    assert message.startswith("FAILED: "), message
    assert re.search(pattern, message.removeprefix("FAILED: ")), message


# ---------------------------------------------------------------------------------------------
# Random campaign of single-cell edits


@dataclass(frozen=True, slots=True)
class _Target:
    table: sa.Table
    key: str
    columns: tuple[str, ...]


_TARGETS = (
    _Target(ledger_accounts, "pk", tuple(c.name for c in ledger_accounts.columns)),
    _Target(ledger_transfers, "ts", tuple(c.name for c in ledger_transfers.columns)),
    _Target(ledger_limit_changes, "ts", tuple(c.name for c in ledger_limit_changes.columns)),
    _Target(ledger_journal, "seq", tuple(c.name for c in ledger_journal.columns)),
    # The head's ts is a known gap (test_edit_is_detected_and_named[journal_head_timestamp]).
    _Target(ledger_journal_head, "id", ("seq", "mac")),
    # expires_at_ns of holds is a known gap (test_edit_is_detected_and_named[hold_expiry]).
    _Target(ledger_holds, "transfer_ts", ("state",)),
    _Target(ledgers, "id", tuple(c.name for c in ledgers.columns)),
)
_CURRENCIES = ("USD", "EUR", "GBP", "JPY")


def _new_value(rng: random.Random, column: sa.Column[Any], value: Any) -> Any:  # noqa: PLR0911
    """A different value of the same type; NULL becomes a value, a value may become NULL."""
    if value is None:
        if isinstance(column.type, sa.String | sa.Text):
            return rng.choice(("x", "forged-id", '{"k":"v"}'))
        return rng.randint(1, 10**12)
    if column.nullable and rng.random() < 0.15:
        return None
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        delta = rng.choice((1, -1, 2, -7, 1000, -(10**6), 10**9))
        return value + delta
    assert isinstance(value, str), (column, value)
    if column.name == "currency":
        return rng.choice([currency for currency in _CURRENCIES if currency != value])
    if value == "":
        return "x"
    alphabet = string.hexdigits[:16] if column.name in ("digest", "mac") else string.ascii_letters
    position = rng.randrange(len(value))
    replacement = rng.choice([char for char in alphabet if char != value[position]])
    return value[:position] + replacement + value[position + 1 :]


def _edit(
    engine: sa.Engine, target: _Target, key: Any, column: str, value: Any
) -> tuple[bool, Any]:
    """Set one cell; returns (changed, key of the row after the edit)."""
    table = target.table
    with engine.begin() as connection:
        before = connection.execute(
            sa.select(table.c[column]).where(table.c[target.key] == key)
        ).scalar_one()
        connection.execute(
            sa.update(table).where(table.c[target.key] == key).values({column: value})
        )
        new_key = value if column == target.key else key
        after = connection.execute(
            sa.select(table.c[column]).where(table.c[target.key] == new_key)
        ).scalar_one()
    changed = not (type(before) is type(after) and before == after)
    return changed, new_key


@pytest.mark.timeout(240)
def test_random_single_cell_edits_are_all_detected(built: LedgerService) -> None:
    print(f"FARTHING_TAMPER_SEED={CAMPAIGN_SEED}")  # Shown with any failure, to reproduce it.
    rng = random.Random(CAMPAIGN_SEED)
    engine = built.engine
    detected: list[str] = []
    missed: list[str] = []
    for _ in range(CAMPAIGN_DRAWS_MAX):
        if len(detected) + len(missed) == CAMPAIGN_EDITS:
            break
        with engine.connect() as connection:  # every row of every journaled table, equally
            cells = [
                (target, row._mapping)
                for target in _TARGETS
                for row in connection.execute(sa.select(target.table))
            ]
        target, row = rng.choice(cells)
        table = target.table
        column = rng.choice(target.columns)
        original = row[column]
        value = _new_value(rng, table.c[column], original)
        try:
            changed, key = _edit(engine, target, row[target.key], column, value)
        except (sa.exc.IntegrityError, sa.exc.DataError):
            continue  # the database refused the edit (NOT NULL, unique, range): nothing changed
        what = f"{table.name}.{column} of {target.key}={row[target.key]}: {original!r} -> {value!r}"
        try:
            if changed:
                message = _verify_failure(built)
                if message is None:
                    missed.append(what)
                else:
                    detected.append(f"{what}: {message}")
        finally:
            _edit(engine, target, key, column, original)
        built.verify()  # restored
    print(f"\nFARTHING_TAMPER_SEED={CAMPAIGN_SEED}:", *detected, sep="\n  ")
    assert not missed, f"undetected edits (FARTHING_TAMPER_SEED={CAMPAIGN_SEED}): {missed}"
    assert len(detected) == CAMPAIGN_EDITS, (CAMPAIGN_SEED, detected)


# ---------------------------------------------------------------------------------------------
# Verification of honest ledgers


def test_limit_change_after_transfers_in_one_commit_verifies(
    service: LedgerService, ledger_id: int
) -> None:
    accounts = (
        AccountEvent(id="a", currency="USD", flags=_DEBITS_LIMITED, limit_minor=1000),
        AccountEvent(id="b", currency="USD"),
    )
    assert service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)]) == [
        [CreateAccountResult.ok] * 2
    ]
    outcomes = service.commit(
        [
            CreateTransfers(
                ledger_id=ledger_id,
                events=(_transfer("t1", "a", "b", 1000), _transfer("t2", "b", "a", 1000)),
            ),
            SetLimit(ledger_id=ledger_id, account_id="a", limit_minor=0),  # usage is 0 by now
        ]
    )
    assert outcomes == [[CreateTransferResult.ok] * 2, SetLimitResult.ok]
    service.verify()


def test_failed_verify_closes_its_cursors(pg_built: LedgerService) -> None:
    with pg_built.engine.begin() as connection:
        transfer_amount(connection)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(IntegrityError):
            pg_built.verify()
        gc.collect()
    leaks = [str(warning.message) for warning in caught if warning.category is ResourceWarning]
    assert not leaks, leaks


def _built_service(url: str) -> Iterator[LedgerService]:
    engine = create_engine(url)
    with engine.begin() as connection:
        ledger_id = ledger_id_for(
            connection, create_tenant(connection, name="t", journal_key=JOURNAL_KEY), Mode.test
        )
    service = LedgerService(engine, journal_key=JOURNAL_KEY)
    _build(service, ledger_id)
    yield service
    engine.dispose()


@pytest.fixture
def sqlite_built(sqlite_url: str) -> Iterator[LedgerService]:
    yield from _built_service(sqlite_url)


@pytest.fixture
def pg_built(postgres_url: str) -> Iterator[LedgerService]:
    yield from _built_service(postgres_url)


def test_type_confusion_is_reported_as_integrity_error(sqlite_built: LedgerService) -> None:
    with sqlite_built.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE ledger_transfers SET amount = 'abc' WHERE id = 'pay-1'")
    try:
        sqlite_built.verify()
    except IntegrityError:
        return
    except Exception as error:
        raise AssertionError(f"verify crashed: {error!r}") from error
    raise AssertionError("verify passed")
