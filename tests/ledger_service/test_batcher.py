"""Group commit: many requests, one transaction, each request its own results and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from farthing.ledger import (
    AccountEvent,
    CreateAccountResult,
    CreateTransferResult,
    TransferEvent,
)
from farthing.ledger_service import (
    CreateAccounts,
    CreateTransfers,
    GroupCommitter,
    LedgerService,
    LedgerWriter,
    Outcome,
    WriteRequest,
)

POISON_LEDGER_ID = -1


class _DiskFullOnPoison(LedgerWriter):
    """The real writer, except that a commit holding the poison request fails like a full disk."""

    def commit(self, requests: Sequence[WriteRequest]) -> list[Outcome]:
        if any(request.ledger_id == POISON_LEDGER_ID for request in requests):
            raise OSError(28, "No space left on device")
        return super().commit(requests)


def _transfer(index: int) -> CreateTransfers:
    return CreateTransfers(
        ledger_id=0,
        events=(
            TransferEvent(
                id=f"t{index}", debit_account_id="a", credit_account_id="b", amount_minor=1
            ),
        ),
    )


async def _run_group(service: LedgerService, ledger_id: int) -> list[Outcome | BaseException]:
    writer = _DiskFullOnPoison(service.engine, journal_key=service.writer._key)
    committer = GroupCommitter(writer)
    await committer.start()
    try:
        requests: list[WriteRequest] = [
            CreateTransfers(ledger_id=ledger_id, events=_transfer(index).events)
            for index in range(20)
        ]
        poison = CreateAccounts(
            ledger_id=POISON_LEDGER_ID, events=(AccountEvent(id="p", currency="EUR"),)
        )
        requests.insert(7, poison)
        return await asyncio.gather(
            *(committer.submit(request) for request in requests), return_exceptions=True
        )
    finally:
        await committer.stop()


def test_a_failing_request_fails_alone(service: LedgerService, ledger_id: int) -> None:
    accounts = (AccountEvent(id="a", currency="EUR"), AccountEvent(id="b", currency="EUR"))
    (created,) = service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)])
    assert created == [CreateAccountResult.ok, CreateAccountResult.ok]
    outcomes = asyncio.run(_run_group(service, ledger_id))
    assert isinstance(outcomes[7], OSError)
    others = outcomes[:7] + outcomes[8:]
    assert others == [[CreateTransferResult.ok]] * 20
    balances = service.get_accounts(ledger_id, ["a", "b"])
    assert balances["a"].balances.debits_posted == 20
    assert balances["b"].balances.credits_posted == 20
    service.verify()


def test_group_commit_coalesces_concurrent_requests(service: LedgerService, ledger_id: int) -> None:
    accounts = (AccountEvent(id="a", currency="EUR"), AccountEvent(id="b", currency="EUR"))
    service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)])

    async def run() -> tuple[list[Outcome], int]:
        committer = GroupCommitter(service.writer)
        await committer.start()
        try:
            outcomes = await asyncio.gather(
                *(
                    committer.submit(
                        CreateTransfers(ledger_id=ledger_id, events=_transfer(index).events)
                    )
                    for index in range(200)
                )
            )
            return list(outcomes), committer.commits
        finally:
            await committer.stop()

    outcomes, commits = asyncio.run(run())
    assert outcomes == [[CreateTransferResult.ok]] * 200
    # All 200 were queued before the first commit started: far fewer commits than requests.
    assert commits < 200
    service.verify()


def test_submit_rejects_oversized_requests(service: LedgerService) -> None:
    async def run() -> None:
        committer = GroupCommitter(service.writer, events_per_commit_max=2)
        await committer.start()
        try:
            events = tuple(_transfer(index).events[0] for index in range(3))
            with pytest.raises(AssertionError):
                await committer.submit(CreateTransfers(ledger_id=1, events=events))
        finally:
            await committer.stop()

    asyncio.run(run())
