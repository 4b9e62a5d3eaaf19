"""The payments ledger: which ledger accounts hold whose money, and how movements are posted.

Each top-level account (platform) has a payments ledger per mode, holding its own and its
connected accounts' balances plus Farthing's side of every movement:

| account | holds |
| --- | --- |
| ``{acct}.pending.{CUR}`` | funds not yet available (and authorisation holds, as pending credits) |
| ``{acct}.available.{CUR}`` | funds that can be refunded, transferred or paid out |
| ``farthing.card_network.{CUR}`` | card networks: source of card funds, sink of refunds |
| ``farthing.fees.{CUR}`` | Farthing's processing fees |
| ``farthing.bank.{CUR}`` | the bank rail payouts leave by |

Balances of merchants and of the fee account may never go below zero (the ledger enforces it
with ``debits_must_not_exceed_credits``). Transfer ids derive from the API object they belong to
(``ch_….capture``), so the ledger's idempotency by id makes a retried step a no-op.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import sqlalchemy as sa

from farthing.auth import PAYMENTS, Mode, ledger_id_for
from farthing.http._errors import ApiError
from farthing.ledger import (
    Account,
    AccountEvent,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    TransferEvent,
    TransferFlags,
)
from farthing.ledger_service import CreateAccounts, CreateTransfers, LedgerService, get_accounts
from farthing.stripe_api._request import Partition

__all__ = [
    "AccountCode",
    "Movement",
    "PaymentsLedger",
    "TransferCode",
    "available_account",
    "bank_account",
    "card_network_account",
    "chain",
    "fees_account",
    "insufficient_funds",
    "pending_account",
    "require_done",
]

# Accounts known to exist, per process (accounts are never deleted); beyond this, start over.
KNOWN_ACCOUNTS_MAX = 100_000
# Events of one movement: a payment step is a handful; a settlement sweep is bounded too.
MOVEMENT_EVENTS_MAX = 4_096
# Serialises creation of new accounts per payments ledger on PostgreSQL (see Movement.post).
_ADVISORY_LOCK_BASE = 0x46415254 << 20  # "FART"


class AccountCode(enum.IntEnum):
    available = 1
    pending = 2
    card_network = 10
    fees = 11
    bank = 12


class TransferCode(enum.IntEnum):
    charge = 1
    fee = 2
    authorization = 3
    capture = 4
    release = 5
    settle = 6
    refund = 7
    fee_return = 8
    transfer = 9
    transfer_reversal = 10
    payout = 11
    payout_paid = 12
    payout_failed = 13


def available_account(tenant_id: str, currency: str) -> str:
    return f"{tenant_id}.available.{currency.upper()}"


def pending_account(tenant_id: str, currency: str) -> str:
    return f"{tenant_id}.pending.{currency.upper()}"


def card_network_account(currency: str) -> str:
    return f"farthing.card_network.{currency.upper()}"


def fees_account(currency: str) -> str:
    return f"farthing.fees.{currency.upper()}"


def bank_account(currency: str) -> str:
    return f"farthing.bank.{currency.upper()}"


_NO_OVERDRAFT = AccountFlags.debits_must_not_exceed_credits


def _accounts_for(tenant_id: str, currency: str) -> list[AccountEvent]:
    upper = currency.upper()
    return [
        AccountEvent(
            id=available_account(tenant_id, currency),
            currency=upper,
            code=AccountCode.available,
            flags=_NO_OVERDRAFT,
        ),
        AccountEvent(
            id=pending_account(tenant_id, currency),
            currency=upper,
            code=AccountCode.pending,
            flags=_NO_OVERDRAFT,
        ),
        AccountEvent(
            id=card_network_account(currency), currency=upper, code=AccountCode.card_network
        ),
        AccountEvent(
            id=fees_account(currency), currency=upper, code=AccountCode.fees, flags=_NO_OVERDRAFT
        ),
        AccountEvent(id=bank_account(currency), currency=upper, code=AccountCode.bank),
    ]


def insufficient_funds(message: str) -> ApiError:
    return ApiError(
        400, type_="invalid_request_error", code="balance_insufficient", message=message
    )


@dataclass(slots=True)
class Movement:
    """Ledger events gathered during one API effect and posted once, inside its transaction.

    One post per effect locks every account the effect touches together, in primary-key order,
    so concurrent effects cannot deadlock on ledger rows.
    """

    ledger: PaymentsLedger
    ledger_id: int
    accounts: dict[str, AccountEvent] = field(default_factory=dict)
    transfers: list[TransferEvent] = field(default_factory=list)
    # Run after a successful post, in the same transaction (events that describe its result).
    after_post: list[Callable[[sa.Connection], object]] = field(default_factory=list)

    def involve(self, tenant_id: str, currency: str) -> None:
        for event in _accounts_for(tenant_id, currency):
            self.accounts.setdefault(event.id, event)

    def add(self, *events: TransferEvent) -> None:
        self.transfers.extend(events)
        assert len(self.transfers) <= MOVEMENT_EVENTS_MAX

    def post(self, connection: sa.Connection) -> list[CreateTransferResult]:
        """Write the accounts and transfers in the caller's transaction; results per transfer.
        The ``after_post`` callbacks run only when every transfer happened."""
        results = self.ledger.post(connection, self)
        if all(result in _DONE for result in results):
            for callback in self.after_post:
                callback(connection)
        return results


class PaymentsLedger:
    """Posts movements to the payments ledger of a scope."""

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger
        self._known: set[tuple[int, str]] = set()
        self._ledger_ids: dict[tuple[str, str], int] = {}
        self._postgres = ledger.engine.dialect.name == "postgresql"

    def movement(self, connection: sa.Connection, scope: Partition) -> Movement:
        return Movement(self, self.ledger_id(connection, scope))

    def ledger_id(self, connection: sa.Connection, scope: Partition) -> int:
        key = (scope.platform_id, scope.mode)
        if key not in self._ledger_ids:
            self._ledger_ids[key] = ledger_id_for(
                connection, scope.platform_id, Mode(scope.mode), purpose=PAYMENTS
            )
        return self._ledger_ids[key]

    def accounts(
        self, connection: sa.Connection, scope: Partition, ids: Sequence[str]
    ) -> dict[str, Account]:
        return get_accounts(connection, self.ledger_id(connection, scope), ids)

    def post(self, connection: sa.Connection, movement: Movement) -> list[CreateTransferResult]:
        ledger_id = movement.ledger_id
        unknown = [e for i, e in movement.accounts.items() if (ledger_id, i) not in self._known]
        requests: list[CreateAccounts | CreateTransfers] = []
        if unknown:
            if self._postgres:
                # Two transactions creating the same new account would end in a unique
                # violation that aborts one of them; taking turns makes the second see "exists".
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": _ADVISORY_LOCK_BASE + ledger_id},
                )
            requests.append(CreateAccounts(ledger_id=ledger_id, events=tuple(unknown)))
        if movement.transfers:
            requests.append(CreateTransfers(ledger_id=ledger_id, events=tuple(movement.transfers)))
        if not requests:
            return []
        outcomes = self._ledger.commit_within(connection, requests)
        if unknown:
            account_results = outcomes[0]
            assert isinstance(account_results, list)
            for event, result in zip(unknown, account_results, strict=True):
                assert result in {CreateAccountResult.ok, CreateAccountResult.exists}, result
                if result is CreateAccountResult.exists:
                    self._remember(ledger_id, event.id)
        if not movement.transfers:
            return []
        results = outcomes[-1]
        assert isinstance(results, list)
        return results  # type: ignore[return-value]

    def _remember(self, ledger_id: int, account_id: str) -> None:
        if len(self._known) >= KNOWN_ACCOUNTS_MAX:
            self._known.clear()
        self._known.add((ledger_id, account_id))


def chain(events: Sequence[TransferEvent]) -> list[TransferEvent]:
    """The events as one linked chain (all or none): each but the last carries ``linked``."""
    last = len(events) - 1
    return [
        replace(event, flags=event.flags | TransferFlags.linked) if index < last else event
        for index, event in enumerate(events)
    ]


_DONE = frozenset({CreateTransferResult.ok, CreateTransferResult.exists})


def require_done(results: Sequence[CreateTransferResult], *, message: str) -> None:
    """Every transfer happened (now or by an earlier attempt); a shortage of funds is the
    caller's 400, anything else is a bug in the payments layer (500, nothing committed)."""
    failures = [result for result in results if result not in _DONE]
    if not failures:
        return
    cause = next((r for r in failures if r is not CreateTransferResult.linked_event_failed), None)
    if cause in {CreateTransferResult.exceeds_credits, CreateTransferResult.exceeds_debits}:
        raise insufficient_funds(message)
    msg = f"payments ledger refused a movement: {cause or failures[0]}"
    raise AssertionError(msg)
