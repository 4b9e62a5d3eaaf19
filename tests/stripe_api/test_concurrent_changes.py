"""Concurrent changes to the same object through real HTTP: each change waits for the one before
it (row locks on PostgreSQL, one writer on SQLite), so none is lost, a state moves once, and
nothing answers 500."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx

from farthing.stripe_api.webhooks._service import ENDPOINTS_PER_ACCOUNT_MAX
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account

CLIENTS = 6


def _send(server: Server, account: Account, method: str, path: str, data: Any = None) -> int:
    headers = {"Authorization": f"Bearer {account.test_secret}"}
    # No keep-alive: every request is a connection of its own, as separate clients are.
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
        return http.request(method, path, data=data).status_code


def _all(server: Server, account: Account, calls: list[tuple[str, str, Any]]) -> list[int]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_send, server, account, *call) for call in calls]
        return [future.result() for future in futures]


def test_concurrent_metadata_updates_are_all_kept(v1_server: Server, account: Account) -> None:
    customer = account.test.v1.customers.create(params={"name": "c"})
    path = f"/v1/customers/{customer.id}"
    calls = [("POST", path, {f"metadata[k{n}]": str(n)}) for n in range(CLIENTS * 2)]
    assert _all(v1_server, account, calls) == [200] * len(calls)
    metadata = account.test.v1.customers.retrieve(customer.id).to_dict()["metadata"]
    assert metadata == {f"k{n}": str(n) for n in range(CLIENTS * 2)}


def test_concurrent_deletes_delete_once(v1_server: Server, account: Account) -> None:
    customer = account.test.v1.customers.create(params={"name": "c"})
    statuses = _all(
        v1_server, account, [("DELETE", f"/v1/customers/{customer.id}", None)] * CLIENTS
    )
    assert sorted(statuses) == [200] + [404] * (CLIENTS - 1)
    events = account.test.v1.events.list(params={"type": "customer.deleted"}).data
    assert len(events) == 1


def test_a_payment_method_is_attached_to_one_customer(v1_server: Server, account: Account) -> None:
    method = account.test.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                          "exp_year": 2040, "cvc": "123"}}
    )  # fmt: skip
    owners = [account.test.v1.customers.create(params={"name": f"o{n}"}) for n in range(CLIENTS)]
    calls = [
        ("POST", f"/v1/payment_methods/{method.id}/attach", {"customer": owner.id})
        for owner in owners
    ]
    statuses = _all(v1_server, account, calls)
    assert sorted(statuses) == [200] + [400] * (CLIENTS - 1)
    events = account.test.v1.events.list(params={"type": "payment_method.attached"}).data
    assert len(events) == 1


def test_the_webhook_endpoint_cap_holds_under_concurrent_creates(
    v1_server: Server, account: Account
) -> None:
    calls = [
        ("POST", "/v1/webhook_endpoints",
         {"url": f"https://example.com/hook/{n}", "enabled_events[]": "*"})
        for n in range(ENDPOINTS_PER_ACCOUNT_MAX + CLIENTS)
    ]  # fmt: skip
    statuses = _all(v1_server, account, calls)
    assert statuses.count(200) == ENDPOINTS_PER_ACCOUNT_MAX
    assert statuses.count(400) == CLIENTS
    assert len(account.test.v1.webhook_endpoints.list(params={"limit": 100}).data) == (
        ENDPOINTS_PER_ACCOUNT_MAX
    )


def test_one_default_bank_account_per_currency_under_concurrent_creates(
    v1_server: Server, account: Account
) -> None:
    bank = {
        "external_account[object]": "bank_account", "external_account[country]": "US",
        "external_account[currency]": "usd", "external_account[routing_number]": "110000000",
    }  # fmt: skip
    calls = [
        ("POST", f"/v1/accounts/{account.id}/external_accounts",
         bank | {"external_account[account_number]": "000123456789",
                 "external_account[account_holder_name]": f"holder {n}"})
        for n in range(CLIENTS)
    ]  # fmt: skip
    assert _all(v1_server, account, calls) == [200] * CLIENTS
    listed = account.test.v1.accounts.external_accounts.list(account.id).data
    assert [cast("Any", item).default_for_currency for item in listed].count(True) == 1
