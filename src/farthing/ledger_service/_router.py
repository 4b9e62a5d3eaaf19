"""HTTP routes of the native ledger API under ``/ledger/v1``; every query is scoped to the
caller's ledger (tenant and mode)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from farthing.http._auth import Caller
from farthing.http._errors import ApiError
from farthing.ledger import PAGE_SIZE_MAX, SetLimitResult
from farthing.ledger_service._schemas import (
    AccountOut,
    AccountsIn,
    BalancesOut,
    IdsIn,
    LimitIn,
    LimitOut,
    ResultOut,
    ResultsOut,
    TransferOut,
    TransferPageOut,
    TransfersIn,
)
from farthing.ledger_service._service import LedgerService

__all__ = ["router"]

router = APIRouter(prefix="/ledger/v1", tags=["ledger"])
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such object in the caller's ledger"},
    413: {"description": "Body too large"},
}


def _service(request: Request) -> LedgerService:
    service: LedgerService = request.app.state.ledger
    return service


def _not_found(kind: str, object_id: str) -> ApiError:
    return ApiError(
        404,
        type_="invalid_request_error",
        code="resource_missing",
        message=f"No such {kind}: '{object_id}'",
        param="id",
    )


@router.post("/accounts", response_model=ResultsOut, responses=_ERRORS)
async def create_accounts(body: AccountsIn, caller: Caller, request: Request) -> ResultsOut:
    """Create up to 8189 accounts; one named result per event, in order."""
    events = [account.to_event() for account in body.accounts]
    results = await _service(request).create_accounts(caller.ledger_id, events)
    return ResultsOut(
        results=[ResultOut(id=e.id, result=r.value) for e, r in zip(events, results, strict=True)]
    )


@router.post("/transfers", response_model=ResultsOut, responses=_ERRORS)
async def create_transfers(body: TransfersIn, caller: Caller, request: Request) -> ResultsOut:
    """Create up to 8189 transfers; one named result per event, in order."""
    events = [transfer.to_event() for transfer in body.transfers]
    results = await _service(request).create_transfers(caller.ledger_id, events)
    return ResultsOut(
        results=[ResultOut(id=e.id, result=r.value) for e, r in zip(events, results, strict=True)]
    )


@router.post("/accounts/lookup", response_model=list[AccountOut], responses=_ERRORS)
def lookup_accounts(body: IdsIn, caller: Caller, request: Request) -> list[AccountOut]:
    """The accounts that exist among the given ids, in the order asked."""
    found = _service(request).get_accounts(caller.ledger_id, body.ids)
    return [AccountOut.of(found[i]) for i in dict.fromkeys(body.ids) if i in found]


@router.post("/transfers/lookup", response_model=list[TransferOut], responses=_ERRORS)
def lookup_transfers(body: IdsIn, caller: Caller, request: Request) -> list[TransferOut]:
    """The transfers that exist among the given ids, in the order asked."""
    found = _service(request).get_transfers(caller.ledger_id, body.ids)
    return [TransferOut.of(found[i]) for i in dict.fromkeys(body.ids) if i in found]


@router.get("/accounts/{account_id}", response_model=AccountOut, responses=_ERRORS)
def get_account(account_id: str, caller: Caller, request: Request) -> AccountOut:
    found = _service(request).get_accounts(caller.ledger_id, [account_id])
    if account_id not in found:
        raise _not_found("account", account_id)
    return AccountOut.of(found[account_id])


@router.get("/transfers/{transfer_id}", response_model=TransferOut, responses=_ERRORS)
def get_transfer(transfer_id: str, caller: Caller, request: Request) -> TransferOut:
    found = _service(request).get_transfers(caller.ledger_id, [transfer_id])
    if transfer_id not in found:
        raise _not_found("transfer", transfer_id)
    return TransferOut.of(found[transfer_id])


@router.post("/accounts/{account_id}/limit", response_model=LimitOut, responses=_ERRORS)
async def set_limit(account_id: str, body: LimitIn, caller: Caller, request: Request) -> LimitOut:
    """Change the account's overdraft allowance; the change is journaled."""
    result = await _service(request).set_limit(caller.ledger_id, account_id, body.limit)
    if result is SetLimitResult.account_not_found:
        raise _not_found("account", account_id)
    return LimitOut(result=result.value)


_NsQuery = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


@router.get("/accounts/{account_id}/transfers", response_model=TransferPageOut, responses=_ERRORS)
def list_transfers(  # noqa: PLR0913
    account_id: str,
    caller: Caller,
    request: Request,
    since: _NsQuery = None,
    until: _NsQuery = None,
    after: _NsQuery = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 100,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> TransferPageOut:
    """The account's transfers by timestamp: ``since`` (inclusive), ``until`` (exclusive), and
    ``after`` = the previous page's ``next_cursor``."""
    page = _service(request).list_account_transfers(
        caller.ledger_id,
        account_id,
        since_ns=since,
        until_ns=until,
        after=after,
        limit=limit,
        newest_first=order == "desc",
    )
    if page is None:
        raise _not_found("account", account_id)
    return TransferPageOut(
        data=[TransferOut.of(t) for t in page.transfers],
        has_more=page.next_cursor is not None,
        next_cursor=page.next_cursor,
    )


@router.get("/accounts/{account_id}/balance", response_model=BalancesOut, responses=_ERRORS)
def get_balance(
    account_id: str,
    caller: Caller,
    request: Request,
    at: Annotated[int, Query(ge=0, le=2**63 - 1, description="Unix time in nanoseconds")],
) -> BalancesOut:
    """The account's balances as they were at ``at``, from the stored history."""
    balances = _service(request).balance_at(caller.ledger_id, account_id, at)
    if balances is None:
        raise _not_found("account", account_id)
    return BalancesOut.of(balances)
