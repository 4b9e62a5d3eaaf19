"""/v1/customers end to end with the official stripe SDK against a real server."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pytest
import stripe

from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, new_account, sdk


def _metadata(customer: stripe.Customer) -> dict[str, Any]:
    assert customer.metadata is not None
    return customer.metadata.to_dict()


def test_create_retrieve_update_delete(account: Account) -> None:
    created = account.test.v1.customers.create(
        params={
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "description": "first",
            "phone": "+441234",
            "metadata": {"plan": "pro", "team": "math"},
        }
    )
    assert isinstance(created, stripe.Customer)
    assert created.id.startswith("cus_")
    assert created.object == "customer"
    assert created.livemode is False
    assert isinstance(created.created, int)
    assert created.email == "ada@example.com"
    assert _metadata(created) == {"plan": "pro", "team": "math"}
    assert created.last_response is not None
    assert created.last_response.request_id is not None
    assert created.last_response.request_id.startswith("req_")

    fetched = account.test.v1.customers.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()

    updated = account.test.v1.customers.update(
        created.id, params={"name": "Ada King", "metadata": {"team": "", "tier": "1"}}
    )
    assert updated.name == "Ada King"
    assert updated.email == "ada@example.com"  # untouched
    assert _metadata(updated) == {"plan": "pro", "tier": "1"}  # team removed
    assert account.test.v1.customers.retrieve(created.id).to_dict() == updated.to_dict()

    unset = account.test.v1.customers.update(created.id, params={"description": ""})
    assert unset.description is None

    deleted = account.test.v1.customers.delete(created.id)
    assert deleted.to_dict() == {"id": created.id, "object": "customer", "deleted": True}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.customers.retrieve(created.id)
    assert raised.value.http_status == 404
    assert raised.value.code == "resource_missing"
    assert raised.value.param == "id"
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.customers.delete(created.id)
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.customers.update(created.id, params={"name": "x"})
    assert account.test.v1.customers.list().data == []


def test_metadata_empty_value_clears_everything(account: Account) -> None:
    customer = account.test.v1.customers.create(params={"metadata": {"a": "1", "b": "2"}})
    cleared = account.test.v1.customers.update(customer.id, params={"metadata": ""})
    assert _metadata(cleared) == {}
    empty_create = account.test.v1.customers.create(params={"metadata": {"a": ""}})
    assert _metadata(empty_create) == {}


def test_metadata_is_bounded_per_object_not_per_request(account: Account) -> None:
    customer = account.test.v1.customers.create(
        params={"metadata": {f"first{n}": "v" for n in range(50)}}
    )
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.customers.update(customer.id, params={"metadata": {"one_more": "v"}})
    assert raised.value.param == "metadata"
    assert len(_metadata(account.test.v1.customers.retrieve(customer.id))) == 50
    # Replacing keys within the bound is fine: removals count before additions.
    swapped = account.test.v1.customers.update(
        customer.id, params={"metadata": {"first0": "", "one_more": "v"}}
    )
    assert len(_metadata(swapped)) == 50
    assert "one_more" in _metadata(swapped)


def test_invalid_parameters_are_400_with_param(account: Account) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.customers.create(params=cast("Any", {"nickname": "x"}))
    assert raised.value.http_status == 400
    assert raised.value.param == "nickname"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.customers.create(params={"metadata": {"k" * 41: "v"}})
    assert raised.value.param == "metadata[" + "k" * 41 + "]"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.customers.list(params={"limit": 101})
    assert raised.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.customers.list(params={"starting_after": "cus_nope"})
    assert raised.value.param == "starting_after"


def test_other_tenants_and_modes_see_nothing(v1_server: Server, account: Account) -> None:
    customer = account.test.v1.customers.create(params={"email": "mine@example.com"})
    other = new_account(v1_server)
    for client in (other.test, other.live, account.live):
        calls: list[Callable[[], object]] = [
            partial(client.v1.customers.retrieve, customer.id),
            partial(client.v1.customers.update, customer.id, params={"name": "x"}),
            partial(client.v1.customers.delete, customer.id),
        ]
        for call in calls:
            with pytest.raises(stripe.InvalidRequestError) as raised:
                call()
            assert raised.value.http_status == 404
            assert raised.value.code == "resource_missing"
        assert client.v1.customers.list().data == []
    live = account.live.v1.customers.create(params={"name": "live one"})
    assert live.livemode is True
    assert [c.id for c in account.live.v1.customers.list().data] == [live.id]
    assert [c.id for c in account.test.v1.customers.list().data] == [customer.id]
    assert account.test.v1.customers.retrieve(customer.id).email == "mine@example.com"


def test_bad_key_is_an_authentication_error(v1_server: Server) -> None:
    client = sdk(v1_server, "sk_test_" + "x" * 43)
    with pytest.raises(stripe.AuthenticationError) as raised:
        client.v1.customers.list()
    assert raised.value.http_status == 401
    assert raised.value.request_id is not None


def test_auto_paging_walks_every_customer_exactly_once(account: Account) -> None:
    ids = [account.test.v1.customers.create(params={"name": f"c{i}"}).id for i in range(25)]
    page = account.test.v1.customers.list(params={"limit": 3})
    assert page.url == "/v1/customers"
    assert len(page.data) == 3
    assert page.has_more is True
    walked = [customer.id for customer in page.auto_paging_iter()]
    assert walked == ids[::-1]  # newest first, each exactly once

    # Backward from the oldest: ending_before pages towards newer customers.
    backward = account.test.v1.customers.list(params={"limit": 4, "ending_before": ids[0]})
    assert [c.id for c in backward.data] == ids[4:0:-1]
    assert backward.has_more is True
    assert [c.id for c in backward.auto_paging_iter()] == ids[1:]

    after = account.test.v1.customers.list(params={"limit": 100, "starting_after": ids[5]})
    assert [c.id for c in after.data] == ids[4::-1]
    assert after.has_more is False
    newest = account.test.v1.customers.list(params={"limit": 5, "ending_before": ids[22]})
    assert [c.id for c in newest.data] == [ids[24], ids[23]]
    assert newest.has_more is False


def test_default_limit_is_ten(account: Account) -> None:
    for i in range(11):
        account.test.v1.customers.create(params={"name": f"c{i}"})
    page = account.test.v1.customers.list()
    assert len(page.data) == 10
    assert page.has_more is True


def test_created_filters(account: Account) -> None:
    customer = account.test.v1.customers.create(params={"name": "dated"})
    at = customer.created

    def listed(created: dict[str, int] | int) -> list[str]:
        params = cast("Any", {"created": created})
        return [c.id for c in account.test.v1.customers.list(params=params).data]

    assert listed({"gte": at}) == [customer.id]
    assert listed({"lte": at}) == [customer.id]
    assert listed({"gt": at - 1, "lt": at + 1}) == [customer.id]
    assert listed(at) == [customer.id]
    assert listed({"gt": at}) == []
    assert listed({"lt": at}) == []


def test_global_api_style(
    v1_server: Server, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module-level API (`stripe.api_base`, resource classes) works too; monkeypatch puts the
    globals back afterwards."""
    monkeypatch.setattr(stripe, "api_base", v1_server.base_url)
    monkeypatch.setattr(stripe, "api_key", account.test_secret)
    customer = stripe.Customer.create(email="global@example.com", metadata={"a": "1"})
    assert stripe.Customer.retrieve(customer.id).email == "global@example.com"
    modified = stripe.Customer.modify(customer.id, metadata={"a": "", "b": "2"})
    assert _metadata(modified) == {"b": "2"}
    assert [c.id for c in stripe.Customer.list(limit=1).auto_paging_iter()] == [customer.id]
    assert stripe.Customer.delete(customer.id).deleted is True
