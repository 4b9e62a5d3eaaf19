"""The ledger service: the one way callers (HTTP, CLI, benchmark, tests) use the ledger."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from farthing.ledger import (
    Account,
    AccountEvent,
    Balances,
    CreateAccountResult,
    CreateTransferResult,
    SetLimitResult,
    TransferEvent,
)
from farthing.ledger_service._batcher import GroupCommitter
from farthing.ledger_service._queries import (
    CommittedTransfer,
    TransferPage,
    balance_at,
    get_accounts,
    get_transfers,
    list_account_transfers,
)
from farthing.ledger_service._requests import (
    CreateAccounts,
    CreateTransfers,
    Outcome,
    SetLimit,
    WriteRequest,
)
from farthing.ledger_service._verify import ProgressCallback, VerifyReport, verify_ledger
from farthing.ledger_service._writer import LedgerWriter

__all__ = ["LedgerService"]


class LedgerService:
    """Writes go through a group committer when one is running, else straight to the writer."""

    def __init__(self, engine: sa.Engine, *, journal_key: bytes) -> None:
        self.engine = engine
        self._journal_key = journal_key
        self.writer = LedgerWriter(engine, journal_key=journal_key)
        self.committer: GroupCommitter | None = None

    async def start(self) -> None:
        """Start group commit (call from the event loop that will submit requests)."""
        self.committer = GroupCommitter(self.writer)
        await self.committer.start()

    async def stop(self) -> None:
        if self.committer is not None:
            await self.committer.stop()
            self.committer = None

    async def _submit(self, request: WriteRequest) -> Outcome:
        assert self.committer is not None, "call start() first"
        return await self.committer.submit(request)

    async def create_accounts(
        self, ledger_id: int, events: Sequence[AccountEvent]
    ) -> list[CreateAccountResult]:
        outcome = await self._submit(CreateAccounts(ledger_id=ledger_id, events=tuple(events)))
        assert isinstance(outcome, list)
        return outcome  # type: ignore[return-value]

    async def create_transfers(
        self, ledger_id: int, events: Sequence[TransferEvent]
    ) -> list[CreateTransferResult]:
        outcome = await self._submit(CreateTransfers(ledger_id=ledger_id, events=tuple(events)))
        assert isinstance(outcome, list)
        return outcome  # type: ignore[return-value]

    async def set_limit(self, ledger_id: int, account_id: str, limit_minor: int) -> SetLimitResult:
        outcome = await self._submit(
            SetLimit(ledger_id=ledger_id, account_id=account_id, limit_minor=limit_minor)
        )
        assert isinstance(outcome, SetLimitResult)
        return outcome

    def commit(self, requests: Sequence[WriteRequest]) -> list[Outcome]:
        """Synchronous write of requests in one transaction (CLI, benchmark, tests)."""
        return self.writer.commit(requests)

    def commit_within(
        self, connection: sa.Connection, requests: Sequence[WriteRequest]
    ) -> list[Outcome]:
        """Write inside the caller's transaction (payments: ledger and API objects as one)."""
        return self.writer.commit_within(connection, requests)

    def get_accounts(self, ledger_id: int, ids: Sequence[str]) -> dict[str, Account]:
        with self.engine.connect() as connection:
            return get_accounts(connection, ledger_id, ids)

    def get_transfers(self, ledger_id: int, ids: Sequence[str]) -> dict[str, CommittedTransfer]:
        with self.engine.connect() as connection:
            return get_transfers(connection, ledger_id, ids)

    def list_account_transfers(  # noqa: PLR0913
        self,
        ledger_id: int,
        account_id: str,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        after: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> TransferPage | None:
        with self.engine.connect() as connection:
            return list_account_transfers(
                connection,
                ledger_id,
                account_id,
                since_ns=since_ns,
                until_ns=until_ns,
                after=after,
                limit=limit,
                newest_first=newest_first,
            )

    def balance_at(self, ledger_id: int, account_id: str, at_ns: int) -> Balances | None:
        with self.engine.connect() as connection:
            return balance_at(connection, ledger_id, account_id, at_ns)

    def verify(
        self,
        *,
        expect_head: tuple[int, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> VerifyReport:
        return verify_ledger(
            self.engine, journal_key=self._journal_key, expect_head=expect_head, progress=progress
        )
