"""/v1/payment_methods end to end with the official stripe SDK against a real server."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, cast
from unittest import mock

import httpx
import pytest
import sqlalchemy as sa
import stripe

from farthing.stripe_api.test_cards import PRESETS
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, assert_error, new_tenant, serving
from tests.stripe_api.conftest import Account, new_account, server_env_with

VISA = "4242424242424242"
# Numbers and CVCs that occur nowhere else, so that finding them in storage means a leak.
SECRET_CARDS = (
    ("4000056655665556", "731"),
    ("5105105105105100", "864"),
    ("371449635398431", "2958"),
)


def _card(number: str = VISA, cvc: str = "123", **extra: Any) -> dict[str, Any]:
    return {
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": cvc},
    } | extra


def test_create_retrieve_update(account: Account) -> None:
    created = account.test.v1.payment_methods.create(
        params=cast(
            "Any",
            _card(billing_details={"name": "Ada", "email": "ada@example.com"}, metadata={"k": "v"}),
        )
    )
    assert isinstance(created, stripe.PaymentMethod)
    assert created.id.startswith("pm_")
    assert created.type == "card"
    assert created.customer is None
    assert created.livemode is False
    card = created.card
    assert card is not None
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2034)
    assert card.funding == "credit"
    assert card.country == "US"
    assert card.fingerprint is not None
    assert created.billing_details.name == "Ada"
    assert VISA not in str(created.to_dict())

    fetched = account.test.v1.payment_methods.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()
    updated = account.test.v1.payment_methods.update(
        created.id, params={"metadata": {"k": "", "n": "1"}, "billing_details": {"name": ""}}
    )
    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"n": "1"}
    assert updated.billing_details.name is None
    assert updated.billing_details.email == "ada@example.com"

    again = account.test.v1.payment_methods.create(params=cast("Any", _card(cvc="999")))
    assert again.card is not None
    assert again.card.fingerprint == card.fingerprint  # Same card, same tenant.


@pytest.mark.parametrize(
    ("card", "code", "param"),
    [
        ({"number": "4242424242424241"}, "incorrect_number", "number"),
        ({"number": "42424242"}, "incorrect_number", "number"),
        ({"exp_month": "13"}, "invalid_expiry_month", "exp_month"),
        ({"exp_year": "2001"}, "invalid_expiry_year", "exp_year"),
        ({"cvc": "12"}, "invalid_cvc", "cvc"),
        ({"number": "378282246310005", "cvc": "123"}, "invalid_cvc", "cvc"),
    ],
)
def test_invalid_card_data_is_a_card_error(
    account: Account, card: dict[str, str], code: str, param: str
) -> None:
    params = _card()
    params["card"] = params["card"] | card
    with pytest.raises(stripe.CardError) as raised:
        account.test.v1.payment_methods.create(params=cast("Any", params))
    assert raised.value.http_status == 402
    assert raised.value.code == code
    assert raised.value.param == param
    assert "4242424242424241" not in str(raised.value.json_body)


def test_missing_or_unknown_parameters_are_400(account: Account) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.payment_methods.create(
            params=cast("Any", {"type": "card", "card": {"exp_month": 1, "exp_year": 2040}})
        )
    assert (raised.value.code, raised.value.param) == ("parameter_missing", "card[number]")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.test.v1.payment_methods.create(params=cast("Any", _card(color="red")))
    assert (raised.value.code, raised.value.param) == ("parameter_unknown", "color")


def test_presets_materialise_new_objects(account: Account) -> None:
    customer = account.test.v1.customers.create()
    seen: set[str] = set()
    for preset, test_card in PRESETS.items():
        attached = account.test.v1.payment_methods.attach(preset, params={"customer": customer.id})
        assert attached.id.startswith("pm_")
        assert attached.id != preset
        assert attached.customer == customer.id
        assert attached.card is not None
        assert attached.card.last4 == test_card.number[-4:]
        assert attached.card.brand == test_card.brand
        seen.add(attached.id)
    retrieved = account.test.v1.payment_methods.retrieve("pm_card_amex")
    assert retrieved.card is not None
    assert (retrieved.card.brand, retrieved.card.last4) == ("amex", "0005")
    assert retrieved.customer is None
    assert retrieved.id not in seen
    listed = account.test.v1.customers.payment_methods.list(customer.id, params={"limit": 100})
    assert {method.id for method in listed.data} == seen

    with pytest.raises(stripe.InvalidRequestError) as raised:
        account.live.v1.payment_methods.retrieve("pm_card_visa")
    assert raised.value.http_status == 404
    assert "test mode" in str(raised.value.user_message)
    live_customer = account.live.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError):
        account.live.v1.payment_methods.attach(
            "pm_card_visa", params={"customer": live_customer.id}
        )
    with pytest.raises(stripe.CardError) as declined:
        account.live.v1.payment_methods.create(params=cast("Any", _card()))
    assert declined.value.code == "card_declined"


def test_attach_detach_list(account: Account) -> None:
    client = account.test.v1
    first, second = (client.customers.create() for _ in range(2))
    methods = [client.payment_methods.create(params=cast("Any", _card())) for _ in range(3)]
    for method in methods[:2]:
        assert (
            client.payment_methods.attach(method.id, params={"customer": first.id}).customer
            == first.id
        )
    client.payment_methods.attach(methods[2].id, params={"customer": second.id})

    listed = client.customers.payment_methods.list(first.id, params={"type": "card"})
    assert [method.id for method in listed.data] == [methods[1].id, methods[0].id]
    assert listed.url == f"/v1/customers/{first.id}/payment_methods"
    page = client.payment_methods.list(params={"customer": first.id, "limit": 1})
    assert page.has_more is True
    assert [m.id for m in page.auto_paging_iter()] == [methods[1].id, methods[0].id]
    assert (
        client.payment_methods.list(params={"customer": first.id, "type": "sepa_debit"}).data == []
    )

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.payment_methods.attach(methods[0].id, params={"customer": second.id})
    assert raised.value.code == "payment_method_unexpected_state"
    detached = client.payment_methods.detach(methods[0].id)
    assert detached.customer is None
    with pytest.raises(stripe.InvalidRequestError):
        client.payment_methods.detach(methods[0].id)
    assert [m.id for m in client.customers.payment_methods.list(first.id).data] == [methods[1].id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.payment_methods.attach(methods[0].id, params={"customer": "cus_missing"})
    assert (raised.value.http_status, raised.value.param) == (404, "customer")
    with pytest.raises(stripe.InvalidRequestError):
        client.customers.payment_methods.list("cus_missing")


def test_other_tenants_and_modes_see_nothing(v1_server: Server, account: Account) -> None:
    method = account.test.v1.payment_methods.create(params=cast("Any", _card()))
    customer = account.test.v1.customers.create()
    other = new_account(v1_server)
    for client in (other.test, other.live, account.live):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.payment_methods.retrieve(method.id)
        assert raised.value.http_status == 404
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.payment_methods.detach(method.id)
        assert client.v1.payment_methods.list().data == []
    # Another tenant's customer does not exist for this tenant.
    other_customer = other.test.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payment_methods.attach(method.id, params={"customer": other_customer.id})
    with pytest.raises(stripe.InvalidRequestError):
        other.test.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    other_method = other.test.v1.payment_methods.create(params=cast("Any", _card()))
    assert other_method.card is not None
    assert method.card is not None
    assert other_method.card.fingerprint != method.card.fingerprint


def test_idempotent_create_replays_without_a_new_card(account: Account) -> None:
    options: Any = {"idempotency_key": "pm-create-1"}
    first = account.test.v1.payment_methods.create(params=cast("Any", _card()), options=options)
    second = account.test.v1.payment_methods.create(params=cast("Any", _card()), options=options)
    assert second.to_dict() == first.to_dict()
    with pytest.raises(stripe.IdempotencyError):
        account.test.v1.payment_methods.create(
            params=cast("Any", _card(cvc="321")), options=options
        )


def _stored_values(server: Server) -> bytes:
    """Every byte the database holds: the SQLite files, or every text and bytea column."""
    if server.kind == "sqlite":
        path = Path(sa.make_url(server.database_url).database or "")
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(file.read_bytes() for file in files if file.exists())
    chunks: list[bytes] = []
    with server.engine.connect() as connection:
        columns = connection.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type IN "
                "('text', 'character varying', 'character', 'bytea', 'json', 'jsonb')"
            )
        ).all()
        assert len(columns) > 20
        for table, column in columns:
            for (value,) in connection.exec_driver_sql(f'SELECT "{column}" FROM "{table}"'):
                if value is not None:
                    chunks.append(
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
    return b"\n".join(chunks)


def test_card_numbers_and_cvcs_are_never_stored(v1_server: Server, account: Account) -> None:
    marker = "stored-marker-" + account.id
    customer = account.test.v1.customers.create()
    for index, (number, cvc) in enumerate(SECRET_CARDS):
        created = account.test.v1.payment_methods.create(
            params=cast("Any", _card(number, cvc, metadata={"marker": marker})),
            options=cast("Any", {"idempotency_key": f"{marker}-{index}"}),
        )
        assert created.card is not None
        assert created.card.last4 == number[-4:]
        account.test.v1.payment_methods.attach(created.id, params={"customer": customer.id})
    stored = _stored_values(v1_server)
    assert marker.encode() in stored  # The scan does see the new rows.
    for number, cvc in SECRET_CARDS:
        assert number.encode() not in stored
        assert f'"{cvc}"'.encode() not in stored
        assert f"cvc={cvc}".encode() not in stored
        assert number[:6].encode() + number[-4:].encode() not in stored
    if v1_server.kind == "sqlite":
        log = Path(sa.make_url(v1_server.database_url).database or "").with_name("server.log")
        text = log.read_text()
        for number, cvc in SECRET_CARDS:
            # A bare 3-digit CVC could occur by chance (in the port number), so look for it
            # in the forms a request or a parameter dump would take.
            assert number not in text
            assert f"cvc={cvc}" not in text
            assert f"'{cvc}'" not in text
            assert f'"{cvc}"' not in text


def test_without_a_vault_key_card_endpoints_refuse(tmp_path: Path) -> None:
    env = server_env_with(FARTHING_VAULT_KEY_FILE=str(tmp_path / "absent.key"))
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving("sqlite", tmp_path))
        tenant = new_tenant(server)
        with tenant.client as client:
            response = client.post(
                "/v1/payment_methods",
                data={
                    "type": "card",
                    "card[number]": VISA,
                    "card[exp_month]": "1",
                    "card[exp_year]": "2040",
                },
            )
            error = assert_error(response, 503, type_="api_error", code="vault_not_configured")
            assert "FARTHING_VAULT_KEY" in error["message"]
            attach = client.post(
                "/v1/payment_methods/pm_card_visa/attach", data={"customer": "cus_x"}
            )
            assert_error(attach, 503, type_="api_error", code="vault_not_configured")
            assert client.get("/v1/customers").status_code == 200  # The rest still serves.
            assert isinstance(client, httpx.Client)
