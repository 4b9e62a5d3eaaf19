"""/v1/accounts and Stripe-Account end to end with the official stripe SDK against a real server:
a platform creates connected accounts and acts for them; nobody else can."""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest
import stripe

from farthing.stripe_api._request import STRIPE_ACCOUNT_LENGTH_MAX
from tests.http.conftest import Server, assert_error
from tests.stripe_api.conftest import Account, new_account

ACCOUNT_FIELDS = {
    "id",
    "object",
    "type",
    "country",
    "email",
    "default_currency",
    "business_type",
    "charges_enabled",
    "payouts_enabled",
    "details_submitted",
    "capabilities",
    "metadata",
    "created",
}


def _as(account_id: str) -> stripe.RequestOptions:
    return {"stripe_account": account_id}


def _connected(platform: Account, **params: Any) -> stripe.Account:
    return platform.test.v1.accounts.create(params=cast("Any", {"type": "custom", **params}))


def test_create_retrieve_update_list_delete(account: Account) -> None:
    created = _connected(
        account,
        country="GB",
        email="seller@example.com",
        business_type="individual",
        metadata={"shop": "7"},
        capabilities={"card_payments": {"requested": True}, "transfers": {"requested": True}},
    )
    assert created.id.startswith("acct_")
    assert set(created.to_dict()) == ACCOUNT_FIELDS
    assert (created.object, created.type, created.country) == ("account", "custom", "GB")
    assert (created.email, created.business_type) == ("seller@example.com", "individual")
    assert created.default_currency == "gbp"  # by country
    enabled = (created.charges_enabled, created.payouts_enabled, created.details_submitted)
    assert enabled == (True, True, True)
    assert created.to_dict()["capabilities"] == {"card_payments": "active", "transfers": "active"}
    assert created.to_dict()["metadata"] == {"shop": "7"}
    assert account.test.v1.accounts.retrieve(created.id).to_dict() == created.to_dict()

    updated = account.test.v1.accounts.update(
        created.id,
        params={"email": "new@example.com", "business_type": "company", "metadata": {"x": "1"}},
    )
    assert (updated.email, updated.business_type) == ("new@example.com", "company")
    assert updated.to_dict()["metadata"] == {"shop": "7", "x": "1"}
    assert account.test.v1.accounts.retrieve(created.id).to_dict() == updated.to_dict()

    plain = _connected(account)
    assert (plain.country, plain.default_currency, plain.email) == ("US", "usd", None)
    listed = account.test.v1.accounts.list()
    assert [a.id for a in listed.data] == [plain.id, created.id]
    paged = account.test.v1.accounts.list(params={"limit": 1})
    assert paged.has_more
    assert [a.id for a in paged.auto_paging_iter()] == [plain.id, created.id]

    deleted = account.test.v1.accounts.delete(created.id)
    assert deleted.to_dict() == {"id": created.id, "object": "account", "deleted": True}
    assert [a.id for a in account.test.v1.accounts.list().data] == [plain.id]
    with pytest.raises(stripe.PermissionError):
        account.test.v1.accounts.retrieve(created.id)
    with pytest.raises(stripe.PermissionError):
        account.test.v1.customers.list(options=_as(created.id))
    # Live mode sees none of the test-mode accounts.
    assert account.live.v1.accounts.list().data == []


def test_retrieve_current_account(account: Account) -> None:
    own = account.test.v1.accounts.retrieve_current()
    assert own.id == account.id
    assert own.type == "standard"
    assert account.test.v1.accounts.retrieve(account.id).to_dict() == own.to_dict()
    connected = _connected(account, email="c@example.com")
    assert account.test.v1.accounts.retrieve_current(options=_as(connected.id)).to_dict() == (
        connected.to_dict()
    )
    # Stripe-Account naming the caller itself acts as the caller.
    assert account.test.v1.accounts.retrieve_current(options=_as(account.id)).id == account.id


def test_only_custom_accounts(account: Account) -> None:
    for kind in ("express", "standard"):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            account.test.v1.accounts.create(params={"type": cast("Any", kind)})
        assert refused.value.http_status == 400
        assert refused.value.param == "type"
        assert "custom" in str(refused.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as bad:
        account.test.v1.accounts.create(params={"type": "custom", "country": "usa"})
    assert bad.value.param == "country"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        account.test.v1.accounts.create(params=cast("Any", {"type": "custom", "nickname": "x"}))
    assert unknown.value.param == "nickname"
    assert account.test.v1.accounts.list().data == []


def test_objects_under_stripe_account_are_separate(account: Account) -> None:
    seller = _connected(account)
    mine = account.test.v1.customers.create(params={"name": "platform's"})
    theirs = account.test.v1.customers.create(params={"name": "seller's"}, options=_as(seller.id))
    assert [c.id for c in account.test.v1.customers.list().data] == [mine.id]
    assert [c.id for c in account.test.v1.customers.list(options=_as(seller.id)).data] == [
        theirs.id
    ]
    with pytest.raises(stripe.InvalidRequestError) as hidden:
        account.test.v1.customers.retrieve(theirs.id)
    assert hidden.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.customers.retrieve(mine.id, options=_as(seller.id))
    fetched = account.test.v1.customers.retrieve(theirs.id, options=_as(seller.id))
    assert fetched.name == "seller's"


def test_nobody_else_can_act_for_a_connected_account(v1_server: Server, account: Account) -> None:
    seller = _connected(account)
    stranger = new_account(v1_server)
    live_seller = account.live.v1.accounts.create(params={"type": "custom"})
    attempts = [
        (stranger.test, seller.id),  # another platform
        (account.live, seller.id),  # the other mode
        (account.test, live_seller.id),
        (account.test, "acct_" + "0" * 24),  # made up
        (account.test, stranger.id),  # another top-level account
    ]
    for client, account_id in attempts:
        with pytest.raises(stripe.PermissionError) as refused:
            client.v1.customers.list(options=_as(account_id))
        assert refused.value.http_status == 403
        body = refused.value.json_body
        assert isinstance(body, dict)
        assert body["error"]["code"] == "account_invalid"
        # Indistinguishable: the same words whatever the reason, and no secret in them.
        message = str(refused.value.user_message)
        assert message.endswith(
            f"does not have access to account '{account_id}' (or that account does not exist)."
        ), message
        with pytest.raises(stripe.PermissionError):
            client.v1.accounts.retrieve(account_id)
    assert stranger.test.v1.accounts.list().data == []


def test_connected_accounts_have_no_connected_accounts(account: Account) -> None:
    seller = _connected(account)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        account.test.v1.accounts.create(params={"type": "custom"}, options=_as(seller.id))
    assert refused.value.code == "platform_account_required"
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.accounts.delete(seller.id, options=_as(seller.id))
    assert account.test.v1.accounts.list(options=_as(seller.id)).data == []
    assert [a.id for a in account.test.v1.accounts.list().data] == [seller.id]


def test_idempotent_create(account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "acct-create-1"}
    first = account.test.v1.accounts.create(params={"type": "custom"}, options=options)
    again = account.test.v1.accounts.create(params={"type": "custom"}, options=options)
    assert again.to_dict() == first.to_dict()
    assert again.last_response is not None
    assert again.last_response.headers.get("idempotent-replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        account.test.v1.accounts.create(
            params={"type": "custom", "email": "x@y.z"}, options=options
        )
    assert [a.id for a in account.test.v1.accounts.list().data] == [first.id]


def test_stripe_account_header_is_bounded(v1_server: Server, account: Account) -> None:
    headers = {"Authorization": f"Bearer {account.test_secret}"}
    with httpx.Client(base_url=v1_server.base_url, headers=headers) as client:
        too_long = client.get(
            "/v1/customers", headers={"Stripe-Account": "a" * (STRIPE_ACCOUNT_LENGTH_MAX + 1)}
        )
        error = assert_error(too_long, 400, type_="invalid_request_error", code="account_invalid")
        assert "a" * 50 not in error["message"]
        assert_error(
            client.get("/v1/customers", headers={"Stripe-Account": ""}),
            400,
            type_="invalid_request_error",
        )
