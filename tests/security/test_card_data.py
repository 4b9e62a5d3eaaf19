"""Card data never leaks: every card flow runs with many card numbers and CVCs against a real
server, then the SQLite file and its WAL (or every PostgreSQL text and bytea column), the
server's log and the audit trail are scanned; no full number and no CVC may be found, and no
response shows more of a number than its BIN and last 4."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest
import sqlalchemy as sa

from farthing.db.schema import audit_log
from farthing.stripe_api.test_cards import TEST_CARDS_BY_NUMBER
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, new_tenant, serving
from tests.stripe_api.conftest import VAULT_KEY, server_env_with
from tests.stripe_api.payment_methods.test_payment_methods import _stored_values

RANDOM_CARDS = 20  # besides every test card of the table
BIN_LENGTH = 6
WINDOW = 7  # Digits of a number in a row that would show more than BIN + last 4 allows.


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    cvc: str


def _luhn_completed(partial: str) -> str:
    digits = [int(d) for d in partial]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if index % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return partial + str((10 - total % 10) % 10)


def _cards() -> list[Card]:
    rng = random.Random(20261121)
    cards = []
    for number in TEST_CARDS_BY_NUMBER:
        cvc_length = 4 if number.startswith(("34", "37")) else 3
        cards.append(Card(number, "".join(rng.choice("123456789") for _ in range(cvc_length))))
    for index in range(RANDOM_CARDS):
        prefix, length = [("4", 16), ("51", 16), ("37", 15)][index % 3]
        body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
        cvc = "".join(rng.choice("123456789") for _ in range(4 if prefix == "37" else 3))
        cards.append(Card(_luhn_completed(body), cvc))
    return cards


CARDS = _cards()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scanned_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """A server of its own, so that its log and database hold only this module's traffic."""
    directory = tmp_path_factory.mktemp(f"card-scan-{request.param}")
    env = server_env_with(FARTHING_VAULT_KEY=VAULT_KEY.hex(), FARTHING_AVAILABLE_DELAY_S="0")
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving(request.param, directory))
        yield server, directory / "server.log"


def _strings(document: Any) -> Iterator[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from _strings(value)
    elif isinstance(document, list):
        for value in document:
            yield from _strings(value)


def _assert_masked(response: httpx.Response, card: Card) -> None:
    """No string in the answer holds more of the number than the BIN or the last 4."""
    assert card.number not in response.text
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    windows = {card.number[i : i + WINDOW] for i in range(len(card.number) - WINDOW + 1)}
    for text in _strings(orjson.loads(response.content)):
        leaked = [window for window in windows if window in text]
        assert not leaked, f"{text!r} shows digits {leaked} of a card number"


def _card_form(card: Card) -> dict[str, str]:
    return {
        "type": "card",
        "card[number]": card.number,
        "card[exp_month]": "12",
        "card[exp_year]": "2034",
        "card[cvc]": card.cvc,
    }


def _create_method(client: httpx.Client, card: Card, index: int) -> str | None:
    """A PaymentMethod from the raw number, sent twice with one Idempotency-Key (a replay)."""
    headers = {"Idempotency-Key": f"card-scan-{index}"}
    first = client.post("/v1/payment_methods", data=_card_form(card), headers=headers)
    replay = client.post("/v1/payment_methods", data=_card_form(card), headers=headers)
    for response in (first, replay):
        _assert_masked(response, card)
    assert replay.status_code == first.status_code
    if first.status_code == 402:
        assert first.json()["error"]["type"] == "card_error"
        return None
    assert first.status_code == 200, first.text
    card_object = first.json()["card"]
    assert card_object["last4"] == card.number[-4:]
    assert "number" not in card_object
    assert "cvc" not in card_object
    method_id: str = first.json()["id"]
    return method_id


def _pay(client: httpx.Client, method_id: str, index: int, customer: str) -> list[httpx.Response]:
    """Confirm a payment, then whatever its outcome allows: 3DS, capture, refund."""
    form = {
        "customer": customer,
        "amount": str(1_000 + index),
        "currency": "usd",
        "payment_method": method_id,
        "confirm": "true",
        "return_url": "https://shop.example/done",
        "capture_method": "manual" if index % 3 == 0 else "automatic",
    }
    intent = client.post("/v1/payment_intents", data=form)
    answers = [intent]
    if intent.status_code != 200:
        assert intent.status_code == 402, intent.text
        return answers
    body = intent.json()
    if body["status"] == "requires_action":
        url = body["next_action"]["redirect_to_url"]["url"]
        token = httpx.URL(url).params["token"]
        answers.append(client.get(url))
        answers.append(client.post(url.split("?")[0], data={"token": token, "result": "approve"}))
        body = client.get(f"/v1/payment_intents/{body['id']}").json()
    if body["status"] == "requires_capture":
        answers.append(client.post(f"/v1/payment_intents/{body['id']}/capture"))
        body = answers[-1].json()
    if body["status"] == "succeeded":
        refund = {"payment_intent": body["id"], "amount": "100"}
        answers.append(client.post("/v1/refunds", data=refund))
        assert answers[-1].status_code == 200, answers[-1].text
    return answers


def _every_flow(client: httpx.Client, card: Card, index: int, customer: str) -> None:
    method_id = _create_method(client, card, index)
    if method_id is None:
        return
    answers = [
        client.post(f"/v1/payment_methods/{method_id}/attach", data={"customer": customer}),
        client.post(f"/v1/payment_methods/{method_id}", data={"metadata[n]": str(index)}),
        client.get(f"/v1/payment_methods/{method_id}"),
        client.get(f"/v1/customers/{customer}/payment_methods", params={"type": "card"}),
        *_pay(client, method_id, index, customer),
        client.get("/v1/charges", params={"limit": "3"}),
        client.get("/v1/events", params={"limit": "5"}),
        client.post(f"/v1/payment_methods/{method_id}/detach"),
    ]
    for answer in answers:
        assert answer.status_code < 500, answer.text
        _assert_masked(answer, card)


def _audit_text(server: Server) -> str:
    with server.engine.connect() as connection:
        return "\n".join(str(tuple(row)) for row in connection.execute(sa.select(audit_log)))


def test_no_card_number_or_cvc_anywhere(scanned_server: tuple[Server, Path]) -> None:
    server, log = scanned_server
    tenant = new_tenant(server, name="card scan")
    with tenant.client as client:
        customer = client.post("/v1/customers", data={"email": "scan@example.com"}).json()["id"]
        for index, card in enumerate(CARDS):
            _every_flow(client, card, index, customer)
    stored, audit, logged = _stored_values(server), _audit_text(server), log.read_text()
    assert customer.encode() in stored  # The scan sees this test's rows...
    assert customer in audit  # ...and its audit records...
    assert "Application startup complete" in logged  # ...and its log (no access log: see serve).
    for card in CARDS:
        masked_forms = (card.number, card.number[:BIN_LENGTH] + card.number[-4:])
        for form in masked_forms:
            assert form.encode() not in stored
            assert form not in audit
            assert form not in logged
        for cvc_form in (f'"{card.cvc}"', f"cvc={card.cvc}", f"'{card.cvc}'"):
            assert cvc_form.encode() not in stored
            assert cvc_form not in audit
            assert cvc_form not in logged
