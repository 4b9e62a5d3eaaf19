"""Every request to the real server lands in the audit trail with the PCI DSS 10.2 fields, and
the trail verifies; secrets and card numbers never reach it."""

from __future__ import annotations

from typing import Any, cast

import httpx
import sqlalchemy as sa
import stripe

from farthing.audit import AuditQuery, StoredRecord, audit_key_from, query, verify
from farthing.auth import Mode, create_key
from farthing.db.schema import audit_log
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import Server, key_id_of
from tests.stripe_api.conftest import Account

CARD = "4000056655665556"
CVC = "731"


def _by_request(server: Server, key_id: str) -> dict[str | None, StoredRecord]:
    return {
        stored.record.request_id: stored
        for stored in query(server.engine, AuditQuery(key_id=key_id))
    }


def _request_id(answer: stripe.StripeObject) -> str:
    assert answer.last_response is not None
    request_id = answer.last_response.request_id
    assert request_id is not None
    return request_id


def test_requests_are_recorded_with_who_what_when_where_outcome(
    v1_server: Server, account: Account
) -> None:
    key_id = key_id_of(v1_server.engine, account.test_secret)
    customer = account.test.v1.customers.create(params={"email": "audit@example.com"})
    card = cast("Any", {"number": CARD, "exp_month": 12, "exp_year": 2034, "cvc": CVC})
    method = account.test.v1.payment_methods.create(params={"type": "card", "card": card})
    fetched = account.test.v1.customers.retrieve(customer.id)
    try:
        account.test.v1.payment_intents.create(
            params={"amount": 500, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
                    "confirm": True}
        )  # fmt: skip
    except stripe.CardError as declined:
        decline_request = declined.request_id
    records = _by_request(v1_server, key_id)
    created = records[_request_id(customer)].record
    assert created.action == "POST /v1/customers"
    assert created.object_ids == (customer.id,)
    assert (created.tenant_id, created.mode, created.origin) == (account.id, "test", "127.0.0.1")
    assert (created.outcome, created.status, created.actor_kind) == ("success", 200, "api_key")
    read = records[_request_id(fetched)].record
    assert read.action == "GET /v1/customers/{customer_id}"
    assert read.object_ids == (customer.id,)
    assert records[_request_id(method)].record.object_ids == (method.id,)
    declined_record = records[decline_request].record
    assert (declined_record.outcome, declined_record.status) == ("failure", 402)
    verify(v1_server.engine, audit_key_from(JOURNAL_KEY))


def test_the_origin_is_the_peer_not_a_header(v1_server: Server, account: Account) -> None:
    """A client on loopback (where a proxy would be) cannot choose the recorded origin."""
    key_id = key_id_of(v1_server.engine, account.test_secret)
    headers = {
        "Authorization": f"Bearer {account.test_secret}",
        "X-Forwarded-For": "203.0.113.66",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=203.0.113.66",
    }
    with httpx.Client(base_url=v1_server.base_url) as client:
        answer = client.post("/v1/customers", headers=headers, data={"name": "x"})
    assert answer.status_code == 200
    record = _by_request(v1_server, key_id)[answer.headers["Request-Id"]].record
    assert record.origin == "127.0.0.1"


def test_refusals_are_recorded(v1_server: Server, account: Account) -> None:
    """Invalid logical access attempts (PCI 10.2.1.4): bad keys, denied permissions, no route."""
    with v1_server.engine.begin() as connection:
        restricted = create_key(
            connection, tenant_id=account.id, mode=Mode.test, permissions={"customers": "read"}
        )
    with httpx.Client(base_url=v1_server.base_url) as client:
        bad = client.get("/v1/customers", headers={"Authorization": "Bearer sk_test_nope"})
        denied = client.get("/v1/charges", headers={"Authorization": f"Bearer {restricted}"})
        probe = client.get(
            f"/v1/customers/{CARD}", headers={"Authorization": f"Bearer {account.test_secret}"}
        )
    assert (bad.status_code, denied.status_code, probe.status_code) == (401, 403, 404)
    records = {s.record.request_id: s.record for s in query(v1_server.engine, AuditQuery())}
    anonymous = records[bad.headers["request-id"]]
    assert (anonymous.actor_kind, anonymous.actor, anonymous.outcome) == (
        "anonymous",
        "-",
        "failure",
    )
    assert anonymous.tenant_id is None
    refused = records[denied.headers["request-id"]]
    assert refused.actor == key_id_of(v1_server.engine, restricted)
    assert (refused.action, refused.status) == ("GET /v1/charges", 403)
    masked = records[probe.headers["request-id"]]
    assert masked.object_ids == ("[digits]",)  # A card number in a path is never recorded.


def test_a_card_number_as_a_ledger_id_is_masked_in_the_answer_too(
    v1_server: Server, account: Account
) -> None:
    """Ledger ids are the client's: one that is a card number comes back as the answered
    object's id, and the trail, which nobody can edit, must not keep it from there either."""
    headers = {"Authorization": f"Bearer {account.test_secret}"}
    with httpx.Client(base_url=v1_server.base_url, headers=headers) as client:
        created = client.post(
            "/ledger/v1/accounts", json={"accounts": [{"id": CARD, "currency": "USD"}]}
        )
        assert created.json()["results"][0]["result"] == "ok"
        read = client.get(f"/ledger/v1/accounts/{CARD}")
    assert read.status_code == 200
    assert read.json()["id"] == CARD
    reads = [
        stored.record
        for stored in query(v1_server.engine, AuditQuery(account=account.id))
        if stored.record.action == "GET /ledger/v1/accounts/{account_id}"
    ]
    assert [record.object_ids for record in reads] == [("[digits]",)]
    with v1_server.engine.connect() as connection:
        texts = connection.execute(sa.select(audit_log.c.object_ids)).scalars()
        assert not [text for text in texts if text and CARD in text]


def test_no_secret_or_card_number_in_the_trail(v1_server: Server, account: Account) -> None:
    account.test.v1.payment_methods.create(
        params={"type": "card", "card": cast("Any", {"number": CARD, "exp_month": 1,
                "exp_year": 2033, "cvc": CVC})}
    )  # fmt: skip
    with httpx.Client(base_url=v1_server.base_url) as client:
        client.get("/v1/balance", headers={"Authorization": f"Bearer {account.test_secret}x"})
        client.get("/v1/balance", headers={"Stripe-Account": CARD})
    with v1_server.engine.connect() as connection:
        rows = connection.execute(sa.select(audit_log)).all()
    text = "\n".join(str(tuple(row)) for row in rows)
    assert account.test_secret[8:] not in text
    assert CARD not in text
    assert f"'{CVC}'" not in text
