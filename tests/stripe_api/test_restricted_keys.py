"""Restricted keys (rk_...) against the real server with the official SDK: each /v1 resource is
read or written only with that permission, expand[] included, Stripe's 403 makes the SDK raise
PermissionError, and the native ledger API refuses them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import httpx
import pytest
import stripe

from farthing.auth import Mode, create_key
from tests.http.conftest import Server, assert_error
from tests.stripe_api.conftest import Account, sdk


def _restricted(server: Server, account: Account, **permissions: str) -> str:
    with server.engine.begin() as connection:
        return create_key(connection, tenant_id=account.id, mode=Mode.test, permissions=permissions)


def _assert_denied(raised: pytest.ExceptionInfo[stripe.PermissionError], secret: str) -> None:
    assert raised.value.http_status == 403
    message = str(raised.value.user_message)
    assert "does not have the required permissions" in message, message
    assert f"'rk_test_...{secret[-4:]}'" in message, message
    # Never the secret: only its stored redacted form.
    assert secret not in str(raised.value.http_body)
    assert secret[8:-4] not in str(raised.value.http_body)


def test_read_permission_lists_but_does_not_create(v1_server: Server, account: Account) -> None:
    existing = account.test.v1.customers.create(params={"name": "made with sk"})
    secret = _restricted(v1_server, account, customers="read")
    assert secret.startswith("rk_test_")
    reader = sdk(v1_server, secret)
    assert [c.id for c in reader.v1.customers.list().data] == [existing.id]
    assert reader.v1.customers.retrieve(existing.id).name == "made with sk"
    with pytest.raises(stripe.PermissionError) as raised:
        reader.v1.customers.create(params={"name": "nope"})
    _assert_denied(raised, secret)
    with pytest.raises(stripe.PermissionError):
        reader.v1.customers.update(existing.id, params={"name": "nope"})
    with pytest.raises(stripe.PermissionError):
        reader.v1.customers.delete(existing.id)
    assert [c.name for c in account.test.v1.customers.list().data] == ["made with sk"]


def test_write_permission_implies_read(v1_server: Server, account: Account) -> None:
    writer = sdk(v1_server, _restricted(v1_server, account, customers="write"))
    created = writer.v1.customers.create(params={"name": "by rk"})
    assert writer.v1.customers.retrieve(created.id).name == "by rk"
    assert [c.id for c in writer.v1.customers.list().data] == [created.id]
    assert writer.v1.customers.delete(created.id).deleted is True


def test_other_resources_are_denied(v1_server: Server, account: Account) -> None:
    secret = _restricted(v1_server, account, customers="write")
    client = sdk(v1_server, secret)
    customer = account.test.v1.customers.create()
    denied: list[Callable[[], object]] = [
        client.v1.payment_intents.list,
        client.v1.charges.list,
        client.v1.balance.retrieve,
        client.v1.payment_methods.list,
        # A customer's payment methods are payment methods, not customers.
        lambda: client.v1.customers.payment_methods.list(customer.id),
        lambda: client.v1.accounts.create(params={"type": "custom"}),
        client.v1.accounts.retrieve_current,
    ]
    for call in denied:
        with pytest.raises(stripe.PermissionError) as raised:
            call()
        _assert_denied(raised, secret)
    both = sdk(v1_server, _restricted(v1_server, account, payment_methods="read"))
    assert both.v1.customers.payment_methods.list(customer.id).data == []


def test_expand_needs_read_permission_on_what_it_expands(
    v1_server: Server, account: Account
) -> None:
    """An expanded object is read as if retrieved: a key that may not retrieve a customer may not
    have one expanded into a payment intent either, nor a charge, nor a balance transaction."""
    customer = account.test.v1.customers.create(params={"email": "ada@example.com"})
    intent = account.test.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    intents_only = sdk(v1_server, _restricted(v1_server, account, payment_intents="read"))
    for expand in (
        ["customer"],
        ["payment_method"],
        ["latest_charge"],
        ["latest_charge.balance_transaction"],
    ):
        with pytest.raises(stripe.PermissionError) as raised:
            intents_only.v1.payment_intents.retrieve(intent.id, params={"expand": expand})
        body = cast("dict[str, Any]", raised.value.json_body)
        assert body["error"]["code"] == "insufficient_permissions"
        assert "ada@example.com" not in str(raised.value.http_body)
    with pytest.raises(stripe.PermissionError):
        intents_only.v1.payment_intents.list(params={"expand": ["data.customer"]})
    assert intents_only.v1.payment_intents.retrieve(intent.id).customer == customer.id

    granted = _restricted(
        v1_server, account, payment_intents="read", customers="read", charges="read"
    )
    reader = sdk(v1_server, granted)
    expanded = reader.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["customer", "latest_charge"]}
    )
    assert cast("stripe.Customer", expanded.customer).email == "ada@example.com"
    # One level further needs one permission more.
    with pytest.raises(stripe.PermissionError) as deeper:
        reader.v1.payment_intents.retrieve(
            intent.id, params={"expand": ["latest_charge.balance_transaction"]}
        )
    assert "'balance_transactions' read permission" in str(deeper.value.user_message)
    charge_id = cast("stripe.Charge", expanded.latest_charge).id
    with pytest.raises(stripe.PermissionError):
        reader.v1.charges.retrieve(charge_id, params={"expand": ["balance_transaction"]})


def test_an_idempotent_replay_is_checked_against_the_replaying_key(
    v1_server: Server, account: Account
) -> None:
    """A stored answer holds what its first key could read: another key replaying it must hold
    the same permissions for what was expanded, and a refusal is never stored for the next."""
    customer = account.test.v1.customers.create(params={"email": "ada@example.com"})
    options: stripe.RequestOptions = {"idempotency_key": "order-42"}
    writer = sdk(v1_server, _restricted(v1_server, account, payment_intents="write"))

    def create(client: stripe.StripeClient) -> stripe.PaymentIntent:
        params = {"amount": 1000, "currency": "usd", "customer": customer.id}
        return client.v1.payment_intents.create(
            params={**params, "expand": ["customer"]},  # type: ignore[typeddict-item]
            options=options,
        )

    with pytest.raises(stripe.PermissionError):
        create(writer)
    # The refusal was not the key's result: the secret key's request runs.
    assert cast("stripe.Customer", create(account.test).customer).email == "ada@example.com"
    with pytest.raises(stripe.PermissionError) as raised:
        create(writer)
    assert "ada@example.com" not in str(raised.value.http_body)


def test_accounts_need_accounts_write(v1_server: Server, account: Account) -> None:
    reader = sdk(v1_server, _restricted(v1_server, account, accounts="read"))
    with pytest.raises(stripe.PermissionError):
        reader.v1.accounts.create(params={"type": "custom"})
    assert reader.v1.accounts.list().data == []
    assert reader.v1.accounts.retrieve_current().id == account.id
    writer = sdk(v1_server, _restricted(v1_server, account, accounts="write"))
    connected = writer.v1.accounts.create(params={"type": "custom"})
    assert [a.id for a in reader.v1.accounts.list().data] == [connected.id]


def test_stripe_account_with_a_restricted_key(v1_server: Server, account: Account) -> None:
    seller = account.test.v1.accounts.create(params={"type": "custom"})
    theirs = account.test.v1.customers.create(options={"stripe_account": seller.id})
    reader = sdk(v1_server, _restricted(v1_server, account, customers="read"))
    listed = reader.v1.customers.list(options={"stripe_account": seller.id})
    assert [c.id for c in listed.data] == [theirs.id]
    with pytest.raises(stripe.PermissionError):
        reader.v1.customers.create(options={"stripe_account": seller.id})


def test_ledger_api_refuses_restricted_keys(v1_server: Server, account: Account) -> None:
    secret = _restricted(
        v1_server, account, **dict.fromkeys(("customers", "accounts", "balance"), "write")
    )
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=v1_server.base_url, headers=headers) as client:
        for response in (
            client.get("/ledger/v1/accounts/a"),
            client.post("/ledger/v1/accounts", json={"accounts": [{"id": "a", "currency": "USD"}]}),
        ):
            error = assert_error(
                response, 403, type_="invalid_request_error", code="secret_key_required"
            )
            assert secret not in response.text
            assert secret[-4:] in error["message"]
    # The account's secret key still works there (and nothing was created by the refused call).
    with httpx.Client(
        base_url=v1_server.base_url, headers={"Authorization": f"Bearer {account.test_secret}"}
    ) as client:
        assert client.get("/ledger/v1/accounts/a").status_code == 404
