"""Tenant isolation, proven route by route against the real server.

A victim account (B) owns one object of every type in each mode, made through the API with its
own keys; an attacker account (A) owns the same estate. Every operation of /openapi.json is in
ROUTES (a documented operation missing from it, or a route in it that is no longer documented,
fails), with probes that name B's objects in the path, in filters, in references and through B's
Idempotency-Keys. Every probe is sent, for B's objects of each mode, with A's secret key and B's
own key of the other mode (judged by the probe: 404/403, or an error naming the reference, or a
list without B's data). On every route, the keys that are refused before the route looks at
anything send one probe each: B's restricted key without the route's permission (403), B's key
with `Stripe-Account` of A's connected account and A's key with `Stripe-Account` of B's (403),
B's revoked key (401) and malformed keys (none, empty, garbage, wrong prefix, overlong,
non-ASCII: 401); B's expired key, `Stripe-Account` of the other mode's account and further
mangled keys take turns over the routes. No response may carry B's data: no id of B's (an error
may echo the id the request itself named, as Stripe's "No such customer: 'cus_...'" does), no
marker planted in B's metadata, descriptions and emails, no amount, card fingerprint or webhook
secret of B's. Afterwards B's objects read back exactly as before (through the API and in the
database), and B's own key passes the same probes, so the refusals come from isolation and not
from a malformed request.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts

from farthing.auth import RESOURCES, Mode, create_key, revoke_key
from farthing.config import Settings
from farthing.db.schema import metadata
from farthing.http import create_app
from farthing.stripe_api._request import resource_of
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import REQUEST_TIMEOUT_S, Server, Tenant, key_id_of, new_tenant

TEST, LIVE = "test", "live"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# A public address, so no DNS lookup; nothing is ever delivered there (no worker runs).
WEBHOOK_ORIGIN = "https://93.184.215.14"
CARD_AVAILABLE_AT_ONCE = "4000000000000077"  # test mode: funds for transfers and payouts
CARD_NOT_A_TEST_CARD = "4111111111111111"  # accepted in live mode (test cards are not)
# The probes' card: another number, or its fingerprint would match the owner's other-mode card
# (fingerprints are per account, not per mode).
CARD_OF_PROBES = "4012888888881881"
BANK_PAID = "000123456789"
FAR_FUTURE_NS = str(2**62)
NO_ANSWER = 599  # The status recorded for an attempt the server never answered.
# Requests in flight at once: the attempts are independent, and each waits for its audit record.
WORKERS = 8
LEDGER_NOT_FOUND = frozenset(
    {"debit_account_not_found", "credit_account_not_found", "pending_transfer_not_found"}
)
# B's amounts, distinct per mode and from A's and from every amount a probe sends (100).
VICTIM_AMOUNTS = {
    TEST: {"payment": 71_357, "capture": 63_179, "confirm": 58_931, "cancel": 54_773,
           "refund": 7_193, "transfer": 5_171, "reversal": 1_319, "payout": 2_713,
           "ledger": 9_157, "challenge": 6_337},
    LIVE: {"payment": 81_359, "confirm": 78_941, "cancel": 74_771, "ledger": 8_363},
}  # fmt: skip
ATTACKER_AMOUNTS = {
    "payment": 31_000, "capture": 32_000, "confirm": 33_000, "cancel": 34_000, "refund": 3_000,
    "transfer": 2_000, "reversal": 500, "payout": 1_000, "ledger": 4_000, "challenge": 5_000,
}  # fmt: skip

Route = tuple[str, str]  # (METHOD, path template)
Ids = Mapping[str, str]  # kind of object -> id
Form = dict[str, str]


# -- the estates -------------------------------------------------------------------------------


@dataclass(slots=True)
class Estate:
    """One account's objects in one mode, made through the API with the account's own key."""

    mode: str
    account: str
    secret: str
    marker: str
    amounts: Mapping[str, int]
    ids: dict[str, str] = field(default_factory=dict)
    # Kind -> the Idempotency-Key its creation used.
    idempotency: dict[str, str] = field(default_factory=dict)
    # Values only the owner may ever see: card fingerprints, webhook signing secrets.
    private: set[str] = field(default_factory=set)
    challenge: str = ""  # the token of the 3-D Secure page of its intent requiring action

    @property
    def email(self) -> str:
        return f"{self.marker}@example.com"

    def victim_ids(self) -> set[str]:
        """The estate's object ids (the account's own id is not per mode: see Attacker)."""
        return {object_id for kind, object_id in self.ids.items() if kind != "account"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass(slots=True)
class Owner:
    """Makes an estate: every call must succeed."""

    http: httpx.Client
    estate: Estate

    def call(
        self, method: str, path: str, form: Form | None = None, **options: Any
    ) -> dict[str, Any]:
        headers = bearer(self.estate.secret) | options.pop("headers", {})
        if method == "GET":
            options["params"] = form
        elif form is not None:
            options["data"] = form
        response = self.http.request(method, path, headers=headers, **options)
        assert response.status_code == 200, f"{method} {path}: {response.text}"
        body: dict[str, Any] = response.json()
        return body

    def create(self, kind: str, path: str, form: Form) -> dict[str, Any]:
        key = f"{kind}-{secrets.token_hex(8)}"
        self.estate.idempotency[kind] = key
        created = self.call("POST", path, self.tagged(form), headers={"Idempotency-Key": key})
        self.estate.ids[kind] = created["id"]
        return created

    def tagged(self, form: Form) -> Form:
        return form | {"metadata[tag]": self.estate.marker}

    def intent(self, kind: str, amount: str, **extra: str) -> dict[str, Any]:
        ids = self.estate.ids
        form = {"amount": str(self.estate.amounts[amount]), "currency": "usd"}
        form |= {"customer": ids["customer"], "payment_method": ids["payment_method"]}
        return self.create(
            kind, "/v1/payment_intents", form | {"description": self.estate.marker} | extra
        )


def _customer_and_card(owner: Owner) -> None:
    estate = owner.estate
    owner.create(
        "customer",
        "/v1/customers",
        {"email": estate.email, "name": estate.marker, "description": estate.marker},
    )
    number = CARD_AVAILABLE_AT_ONCE if estate.mode == TEST else CARD_NOT_A_TEST_CARD
    card = owner.create(
        "payment_method",
        "/v1/payment_methods",
        {
            "type": "card", "card[number]": number, "card[exp_month]": "12",
            "card[exp_year]": str(time.gmtime().tm_year + 3), "card[cvc]": "123",
            "billing_details[email]": estate.email, "billing_details[name]": estate.marker,
        },
    )  # fmt: skip
    estate.private.add(card["card"]["fingerprint"])
    owner.call(
        "POST",
        f"/v1/payment_methods/{card['id']}/attach",
        {"customer": estate.ids["customer"]},
    )


def _payments(owner: Owner) -> None:
    ids = owner.estate.ids
    if owner.estate.mode == LIVE:  # No processor in live mode: intents stay unconfirmed.
        owner.intent("payment_intent", "payment")
        owner.intent("payment_intent_confirm", "confirm")
        owner.intent("payment_intent_cancel", "cancel")
        return
    paid = owner.intent("payment_intent", "payment", confirm="true")
    assert paid["status"] == "succeeded", paid
    ids["charge"] = paid["latest_charge"]
    charge = owner.call("GET", f"/v1/charges/{ids['charge']}")
    ids["balance_transaction"] = charge["balance_transaction"]
    held = owner.intent(
        "payment_intent_capture", "capture", confirm="true", capture_method="manual"
    )
    assert held["status"] == "requires_capture", held
    owner.intent("payment_intent_confirm", "confirm")
    owner.intent("payment_intent_cancel", "cancel")
    amount = str(owner.estate.amounts["refund"])
    owner.create("refund", "/v1/refunds", {"charge": ids["charge"], "amount": amount})
    _challenge(owner)


def _challenge(owner: Owner) -> None:
    """An intent waiting for 3-D Secure: its page is reached by a token, not an API key."""
    estate = owner.estate
    challenged = owner.create(
        "payment_intent_3ds",
        "/v1/payment_intents",
        {"amount": str(estate.amounts["challenge"]), "currency": "usd", "confirm": "true",
         "payment_method": "pm_card_authenticationRequired", "description": estate.marker,
         "return_url": "https://example.com/done"},
    )  # fmt: skip
    assert challenged["status"] == "requires_action", challenged
    page = urlsplit(challenged["next_action"]["redirect_to_url"]["url"])
    assert page.path == f"/3ds/{challenged['id']}", page
    estate.challenge = parse_qs(page.query)["token"][0]
    estate.private.add(estate.challenge)


def _connect_and_payouts(owner: Owner) -> None:
    estate, ids = owner.estate, owner.estate.ids
    owner.create("connected_account", "/v1/accounts", {"type": "custom", "email": estate.email})
    owner.create(
        "bank_account",
        f"/v1/accounts/{estate.account}/external_accounts",
        {
            "external_account[object]": "bank_account", "external_account[country]": "US",
            "external_account[currency]": "usd", "external_account[account_number]": BANK_PAID,
            "external_account[routing_number]": "110000000",
            "external_account[account_holder_name]": estate.marker,
        },
    )  # fmt: skip
    if estate.mode == LIVE:  # No money in live mode: nothing to transfer or pay out.
        return
    amounts = {name: str(amount) for name, amount in estate.amounts.items()}
    owner.create(
        "transfer",
        "/v1/transfers",
        {"amount": amounts["transfer"], "currency": "usd", "description": estate.marker,
         "destination": ids["connected_account"]},
    )  # fmt: skip
    owner.create(
        "transfer_reversal",
        f"/v1/transfers/{ids['transfer']}/reversals",
        {"amount": amounts["reversal"]},
    )
    owner.create(
        "payout",
        "/v1/payouts",
        {"amount": amounts["payout"], "currency": "usd", "description": estate.marker},
    )
    # The simulated bank rail pays it as it is read; from now on it stays paid.
    assert owner.call("GET", f"/v1/payouts/{ids['payout']}")["status"] == "paid"


def _webhook_and_event(owner: Owner) -> None:
    estate = owner.estate
    endpoint = owner.create(
        "webhook_endpoint",
        "/v1/webhook_endpoints",
        {"url": f"{WEBHOOK_ORIGIN}/{estate.marker}", "enabled_events[]": "*",
         "description": estate.marker},
    )  # fmt: skip
    estate.private.add(endpoint["secret"])
    events = owner.call("GET", "/v1/events", {"type": "customer.created"})["data"]
    assert [e["data"]["object"]["id"] for e in events] == [estate.ids["customer"]], events
    estate.ids["event"] = events[0]["id"]


def _ledger(owner: Owner) -> None:
    estate, ids = owner.estate, owner.estate.ids
    for kind in (
        "ledger_credit",
        "ledger_debit",
        "ledger_spare",
        "ledger_transfer",
        "ledger_pending",
    ):
        ids[kind] = f"{kind}-{secrets.token_hex(8)}"
    tag = {"tag": estate.marker}
    accounts = [
        {"id": ids["ledger_credit"], "currency": "USD", "metadata": tag,
         "flags": ["debits_must_not_exceed_credits"]},
        {"id": ids["ledger_debit"], "currency": "USD", "metadata": tag},
        {"id": ids["ledger_spare"], "currency": "USD", "metadata": tag},
    ]  # fmt: skip
    made = owner.call("POST", "/ledger/v1/accounts", json={"accounts": accounts})
    assert {r["result"] for r in made["results"]} == {"ok"}, made
    amount = estate.amounts["ledger"]
    pair = {"debit_account_id": ids["ledger_debit"], "credit_account_id": ids["ledger_credit"]}
    transfers = [
        {"id": ids["ledger_transfer"], "amount": amount, "metadata": tag} | pair,
        {"id": ids["ledger_pending"], "amount": amount, "flags": ["pending"], "metadata": tag}
        | pair,
    ]
    made = owner.call("POST", "/ledger/v1/transfers", json={"transfers": transfers})
    assert {r["result"] for r in made["results"]} == {"ok"}, made


def build_estate(
    http: httpx.Client, account: str, secret: str, mode: str, amounts: Mapping[str, int]
) -> Estate:
    estate = Estate(mode, account, secret, f"mk{secrets.token_hex(8)}", amounts)
    estate.ids["account"] = account
    owner = Owner(http, estate)
    for step in (_customer_and_card, _payments, _connect_and_payouts, _webhook_and_event, _ledger):
        step(owner)
    return estate


# -- the routes --------------------------------------------------------------------------------

DENIED = "denied"  # names B's object in the path: 403 or 404
REFUSED = "refused"  # names B's object in a parameter: an error naming that parameter
LISTED = "listed"  # a list or the caller's own singleton: 200 without B's data, or "no such"
CREATED = "created"  # creates the caller's own object with B's Idempotency-Key: 200, no replay
BATCH = "batch"  # /ledger/v1 batches: 200 with a result per event, checked by `check`

FormOf = Callable[[Ids, Ids], Form]  # (victim's ids, attacker's own ids) -> parameters
JsonOf = Callable[[Ids, Ids], dict[str, Any]]


def fixed(**values: str) -> FormOf:
    return lambda _victim, _own: dict(values)


def victim(**kinds: str) -> FormOf:
    """Parameters naming the victim's objects: name -> kind."""
    return lambda ids, _own: {name: ids[kind] for name, kind in kinds.items()}


def combined(*parts: FormOf) -> FormOf:
    def form(ids: Ids, own: Ids) -> Form:
        merged: Form = {}
        for part in parts:
            merged |= part(ids, own)
        return merged

    return form


@dataclass(frozen=True, slots=True)
class Probe:
    """One way of reaching the victim's objects through a route."""

    outcome: str = DENIED
    path: Mapping[str, str] = field(default_factory=dict)  # path parameter -> victim's kind
    own: Mapping[str, str] = field(default_factory=dict)  # path parameter -> attacker's kind
    form: FormOf | None = None
    json: JsonOf | None = None
    ref: str | None = None  # REFUSED: the parameter the error must name
    idempotency: str | None = None  # CREATED: the kind whose Idempotency-Key is reused
    check: Callable[[Any], str | None] | None = None  # BATCH, CREATED: judges the 200's body
    same_account: bool = False  # names only the account itself, which both modes share
    shows: str | None = None  # the kind the owner's list must show (the filter is meaningful)
    owner: Mapping[str, str] = field(default_factory=dict)  # mode -> the owner's error code
    uses_own: bool = False  # the parameters name the attacker's own objects too
    # REFUSED: the code refusing the whole operation to a live key, before any lookup.
    live_code: str | None = None

    @property
    def cross(self) -> bool:
        """Mixes the attacker's own objects with the victim's: only for attackers with some."""
        return bool(self.own) or self.uses_own


TAG = fixed(**{"metadata[probe]": "attack"})
META = fixed(**{"metadata[probe]": "attack", "description": "attack"})
AMOUNT = fixed(amount="100", currency="usd")
CARD = fixed(
    **{"type": "card", "card[number]": CARD_OF_PROBES, "card[exp_month]": "12",
       "card[exp_year]": "2040", "card[cvc]": "123"}
)  # fmt: skip
BANK = fixed(
    **{"external_account[object]": "bank_account", "external_account[country]": "US",
       "external_account[currency]": "usd", "external_account[account_number]": BANK_PAID,
       "external_account[routing_number]": "110000000"}
)  # fmt: skip
IDEMPOTENCY_ERROR = {TEST: "idempotency_error", LIVE: "idempotency_error"}
ATTACHED = {TEST: "payment_method_unexpected_state", LIVE: "payment_method_unexpected_state"}
# A top-level account is not one of its own connected accounts: only GET reads it by id.
TOP_LEVEL = {TEST: "account_invalid", LIVE: "account_invalid"}


def _results(allowed: frozenset[str]) -> Callable[[Any], str | None]:
    def check(body: Any) -> str | None:
        found = {r["result"] for r in body["results"]}
        return None if found <= allowed else f"ledger results {sorted(found)}"

    return check


def _fresh(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _ledger_transfer(ids: Ids, _own: Ids) -> dict[str, Any]:
    pair = {"debit_account_id": ids["ledger_debit"], "credit_account_id": ids["ledger_credit"]}
    return {"transfers": [{"id": _fresh("probe"), "amount": 100} | pair]}


def _ledger_replay(ids: Ids, _own: Ids) -> dict[str, Any]:
    """The victim's own transfer again: if ids were global it would be `exists`."""
    pair = {"debit_account_id": ids["ledger_debit"], "credit_account_id": ids["ledger_credit"]}
    return {"transfers": [{"id": ids["ledger_transfer"], "amount": 100} | pair]}


def _ledger_pending(flag: str) -> JsonOf:
    return lambda ids, _own: {
        "transfers": [{"id": _fresh("probe"), "pending_id": ids["ledger_pending"], "flags": [flag]}]
    }


LEDGER_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("POST", "/ledger/v1/accounts"): (
        # Ids are unique per ledger only: A may create the victim's id in its own ledger.
        Probe(
            CREATED,
            check=_results(frozenset({"ok"})),
            json=lambda ids, _own: {"accounts": [{"id": ids["ledger_spare"], "currency": "USD"}]},
        ),
    ),
    ("POST", "/ledger/v1/transfers"): (
        Probe(BATCH, json=_ledger_transfer, check=_results(LEDGER_NOT_FOUND)),
        Probe(BATCH, json=_ledger_replay, check=_results(LEDGER_NOT_FOUND)),
        Probe(BATCH, json=_ledger_pending("post_pending"), check=_results(LEDGER_NOT_FOUND)),
        Probe(BATCH, json=_ledger_pending("void_pending"), check=_results(LEDGER_NOT_FOUND)),
    ),
    ("POST", "/ledger/v1/accounts/lookup"): (
        Probe(
            LISTED,
            shows="ledger_credit",
            json=lambda ids, _own: {"ids": [ids["ledger_credit"], ids["ledger_debit"]]},
        ),
    ),
    ("POST", "/ledger/v1/transfers/lookup"): (
        Probe(
            LISTED,
            shows="ledger_transfer",
            json=lambda ids, _own: {"ids": [ids["ledger_transfer"], ids["ledger_pending"]]},
        ),
    ),
    ("GET", "/ledger/v1/accounts/{account_id}"): (Probe(path={"account_id": "ledger_credit"}),),
    ("GET", "/ledger/v1/transfers/{transfer_id}"): (
        Probe(path={"transfer_id": "ledger_transfer"}),
        Probe(path={"transfer_id": "ledger_pending"}),
    ),
    ("POST", "/ledger/v1/accounts/{account_id}/limit"): (
        Probe(path={"account_id": "ledger_credit"}, json=lambda _ids, _own: {"limit": 100}),
    ),
    ("GET", "/ledger/v1/accounts/{account_id}/transfers"): (
        Probe(path={"account_id": "ledger_credit"}),
    ),
    ("GET", "/ledger/v1/accounts/{account_id}/balance"): (
        Probe(path={"account_id": "ledger_credit"}, form=fixed(at=FAR_FUTURE_NS)),
    ),
}

CUSTOMER = {"customer_id": "customer"}
METHOD = {"method_id": "payment_method"}
CUSTOMER_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/customers"): (
        Probe(LISTED, shows="customer"),
        Probe(LISTED, form=victim(starting_after="customer")),
    ),
    ("POST", "/v1/customers"): (
        Probe(CREATED, form=META, idempotency="customer", owner=IDEMPOTENCY_ERROR),
    ),
    ("POST", "/v1/customers/{customer_id}"): (Probe(path=CUSTOMER, form=META),),
    ("GET", "/v1/customers/{customer_id}"): (Probe(path=CUSTOMER),),
    ("DELETE", "/v1/customers/{customer_id}"): (Probe(path=CUSTOMER),),
    ("GET", "/v1/customers/{customer_id}/payment_methods"): (Probe(path=CUSTOMER),),
    ("GET", "/v1/payment_methods"): (
        Probe(LISTED, form=victim(customer="customer"), shows="payment_method"),
        Probe(LISTED, form=victim(starting_after="payment_method")),
    ),
    ("POST", "/v1/payment_methods"): (
        Probe(CREATED, form=CARD, idempotency="payment_method", owner=IDEMPOTENCY_ERROR),
    ),
    ("GET", "/v1/payment_methods/{method_id}"): (Probe(path=METHOD),),
    ("POST", "/v1/payment_methods/{method_id}"): (Probe(path=METHOD, form=TAG),),
    ("POST", "/v1/payment_methods/{method_id}/attach"): (
        # The owner finds its card, attached already.
        Probe(path=METHOD, form=victim(customer="customer"), owner=ATTACHED),
        # The attacker's own card, attached to the victim's customer.
        Probe(REFUSED, own=METHOD, form=victim(customer="customer"), ref="customer"),
    ),
    ("POST", "/v1/payment_methods/{method_id}/detach"): (Probe(path=METHOD),),
}

INTENT = {"intent_id": "payment_intent"}
INTENT_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/payment_intents"): (
        Probe(LISTED, form=victim(customer="customer"), shows="payment_intent"),
        Probe(LISTED, form=victim(starting_after="payment_intent")),
    ),
    ("POST", "/v1/payment_intents"): (
        Probe(CREATED, form=AMOUNT, idempotency="payment_intent", owner=IDEMPOTENCY_ERROR),
        Probe(
            REFUSED,
            ref="customer",
            form=combined(AMOUNT, victim(customer="customer", payment_method="payment_method")),
        ),
        # The attacker's own customer with the victim's card.
        Probe(
            REFUSED,
            ref="payment_method",
            uses_own=True,
            form=lambda ids, own: {
                "amount": "100",
                "currency": "usd",
                "customer": own["customer"],
                "payment_method": ids["payment_method"],
            },
        ),
        Probe(
            REFUSED,
            form=combined(
                AMOUNT,
                fixed(application_fee_amount="50"),  # Pays Farthing's fee on 100 (33).
                victim(**{"transfer_data[destination]": "connected_account"}),
            ),
            ref="transfer_data[destination]",
        ),
    ),
    ("GET", "/v1/payment_intents/{intent_id}"): (Probe(path=INTENT),),
    ("POST", "/v1/payment_intents/{intent_id}"): (
        Probe(path=INTENT, form=META),
        # The attacker's own intent, pointed at the victim's customer and card.
        Probe(
            REFUSED,
            own={"intent_id": "payment_intent_confirm"},
            form=victim(customer="customer"),
            ref="customer",
        ),
        Probe(
            REFUSED,
            own={"intent_id": "payment_intent_confirm"},
            form=victim(payment_method="payment_method"),
            ref="payment_method",
        ),
    ),
    ("POST", "/v1/payment_intents/{intent_id}/confirm"): (
        Probe(
            path={"intent_id": "payment_intent_confirm"},
            form=victim(payment_method="payment_method"),
            owner={LIVE: "processor_not_configured"},
        ),
        Probe(
            REFUSED,
            own={"intent_id": "payment_intent_confirm"},
            form=victim(payment_method="payment_method"),
            ref="payment_method",
        ),
    ),
    ("POST", "/v1/payment_intents/{intent_id}/capture"): (
        Probe(path={"intent_id": "payment_intent_capture"}, form=fixed(amount_to_capture="100")),
    ),
    ("POST", "/v1/payment_intents/{intent_id}/cancel"): (
        Probe(
            path={"intent_id": "payment_intent_cancel"},
            form=fixed(cancellation_reason="requested_by_customer"),
        ),
    ),
    ("GET", "/v1/charges/{charge_id}"): (Probe(path={"charge_id": "charge"}),),
    ("GET", "/v1/charges"): (
        Probe(
            LISTED,
            form=victim(customer="customer", payment_intent="payment_intent"),
            shows="charge",
        ),
        Probe(LISTED, form=victim(starting_after="charge")),
    ),
    ("GET", "/v1/refunds"): (
        Probe(LISTED, form=victim(charge="charge"), shows="refund"),
        Probe(LISTED, form=victim(payment_intent="payment_intent"), shows="refund"),
        Probe(LISTED, form=victim(starting_after="refund")),
    ),
    ("POST", "/v1/refunds"): (
        Probe(REFUSED, form=combined(fixed(amount="100"), victim(charge="charge")), ref="charge"),
        Probe(
            REFUSED,
            form=combined(fixed(amount="100"), victim(payment_intent="payment_intent")),
            ref="payment_intent",
            owner={LIVE: "parameter_invalid"},  # Live intents have no charge to refund.
        ),
    ),
    ("GET", "/v1/refunds/{refund_id}"): (Probe(path={"refund_id": "refund"}),),
    ("POST", "/v1/refunds/{refund_id}"): (Probe(path={"refund_id": "refund"}, form=TAG),),
}

BALANCE_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/balance"): (Probe(LISTED),),
    ("GET", "/v1/balance_transactions/{txn_id}"): (Probe(path={"txn_id": "balance_transaction"}),),
    ("GET", "/v1/balance_transactions"): (
        Probe(LISTED, form=victim(source="charge"), shows="balance_transaction"),
        Probe(LISTED, form=victim(payout="payout"), shows="payout"),
        Probe(LISTED, form=victim(starting_after="balance_transaction")),
    ),
    ("GET", "/v1/events/{event_id}"): (Probe(path={"event_id": "event"}),),
    ("GET", "/v1/events"): (
        Probe(LISTED),
        Probe(LISTED, form=fixed(type="customer.created"), shows="event"),
        Probe(LISTED, form=victim(starting_after="event")),
    ),
}

ENDPOINT = {"endpoint_id": "webhook_endpoint"}
WEBHOOK_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/webhook_endpoints"): (
        Probe(LISTED, shows="webhook_endpoint"),
        Probe(LISTED, form=victim(starting_after="webhook_endpoint")),
    ),
    ("POST", "/v1/webhook_endpoints"): (
        Probe(
            CREATED,
            idempotency="webhook_endpoint",
            owner=IDEMPOTENCY_ERROR,
            form=fixed(
                **{"url": f"{WEBHOOK_ORIGIN}/probe", "enabled_events[]": "charge.succeeded"}
            ),
        ),
    ),
    ("GET", "/v1/webhook_endpoints/{endpoint_id}"): (Probe(path=ENDPOINT),),
    ("POST", "/v1/webhook_endpoints/{endpoint_id}"): (
        # Redirecting the victim's events would be the prize.
        Probe(path=ENDPOINT, form=combined(META, fixed(url=f"{WEBHOOK_ORIGIN}/stolen"))),
    ),
    ("DELETE", "/v1/webhook_endpoints/{endpoint_id}"): (Probe(path=ENDPOINT),),
    ("GET", "/v1/webhook_endpoints/{endpoint_id}/attempts"): (Probe(path=ENDPOINT),),
    ("POST", "/v1/webhook_endpoints/{endpoint_id}/roll_secret"): (
        Probe(path=ENDPOINT, form=fixed(expires_in="0")),
    ),
}

TRANSFER = {"transfer_id": "transfer"}
REVERSAL = {"transfer_id": "transfer", "reversal_id": "transfer_reversal"}
TRANSFER_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/transfers"): (
        Probe(LISTED, form=victim(destination="connected_account"), shows="transfer"),
        Probe(LISTED, form=victim(starting_after="transfer")),
    ),
    ("POST", "/v1/transfers"): (
        Probe(
            REFUSED,
            form=combined(AMOUNT, victim(destination="connected_account")),
            ref="destination",
            owner={LIVE: "balance_insufficient"},  # No money in live mode.
        ),
        # To the attacker's own connected account, citing the victim's charge.
        Probe(
            REFUSED,
            uses_own=True,
            ref="source_transaction",
            form=lambda ids, own: {
                "amount": "100",
                "currency": "usd",
                "destination": own["connected_account"],
                "source_transaction": ids["charge"],
            },
        ),
    ),
    ("GET", "/v1/transfers/{transfer_id}"): (Probe(path=TRANSFER),),
    ("POST", "/v1/transfers/{transfer_id}"): (Probe(path=TRANSFER, form=META),),
    ("POST", "/v1/transfers/{transfer_id}/reversals"): (
        Probe(path=TRANSFER, form=fixed(amount="100")),
    ),
    ("GET", "/v1/transfers/{transfer_id}/reversals"): (Probe(path=TRANSFER),),
    ("GET", "/v1/transfers/{transfer_id}/reversals/{reversal_id}"): (
        Probe(path=REVERSAL),
        Probe(path={"reversal_id": "transfer_reversal"}, own=TRANSFER),
    ),
    ("POST", "/v1/transfers/{transfer_id}/reversals/{reversal_id}"): (
        Probe(path=REVERSAL, form=TAG),
        Probe(
            path={"reversal_id": "transfer_reversal"},
            own=TRANSFER,
            form=TAG,
        ),
    ),
}

PAYOUT = {"payout_id": "payout"}
CONNECTED = {"account_id": "connected_account"}
ITSELF = {"account_id": "account"}
BANK_OF_ACCOUNT = {"account_id": "account", "bank_id": "bank_account"}
PAYOUT_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/payouts"): (
        Probe(LISTED, form=victim(destination="bank_account"), shows="payout"),
        Probe(LISTED, form=fixed(status="paid"), shows="payout"),
        Probe(LISTED, form=victim(starting_after="payout")),
    ),
    ("POST", "/v1/payouts"): (
        Probe(
            REFUSED,
            form=combined(AMOUNT, victim(destination="bank_account")),
            ref="destination",
            live_code="bank_rail_not_configured",
            owner={LIVE: "bank_rail_not_configured"},
        ),
    ),
    ("GET", "/v1/payouts/{payout_id}"): (Probe(path=PAYOUT),),
    ("POST", "/v1/payouts/{payout_id}"): (Probe(path=PAYOUT, form=TAG),),
    ("POST", "/v1/payouts/{payout_id}/cancel"): (
        Probe(path=PAYOUT, owner={TEST: "payout_not_cancelable"}),
    ),
    ("POST", "/v1/accounts/{account_id}/external_accounts"): (
        Probe(path=CONNECTED, form=BANK),
        Probe(path=ITSELF, form=BANK, same_account=True),
    ),
    ("GET", "/v1/accounts/{account_id}/external_accounts"): (
        Probe(path=CONNECTED),
        Probe(path=ITSELF, same_account=True, shows="bank_account"),
    ),
    ("GET", "/v1/accounts/{account_id}/external_accounts/{bank_id}"): (
        Probe(path=BANK_OF_ACCOUNT),
        Probe(path={"bank_id": "bank_account"}, own=ITSELF),
    ),
    ("POST", "/v1/accounts/{account_id}/external_accounts/{bank_id}"): (
        Probe(path=BANK_OF_ACCOUNT, form=TAG),
        Probe(
            path={"bank_id": "bank_account"},
            own=ITSELF,
            form=TAG,
        ),
    ),
    ("DELETE", "/v1/accounts/{account_id}/external_accounts/{bank_id}"): (
        Probe(path=BANK_OF_ACCOUNT),
        Probe(path={"bank_id": "bank_account"}, own=ITSELF),
    ),
}

ACCOUNT_ROUTES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/v1/accounts"): (
        Probe(LISTED, shows="connected_account"),
        Probe(LISTED, form=victim(starting_after="connected_account")),
    ),
    ("POST", "/v1/accounts"): (
        Probe(
            CREATED,
            form=fixed(type="custom"),
            idempotency="connected_account",
            owner=IDEMPOTENCY_ERROR,
        ),
    ),
    ("POST", "/v1/accounts/{account_id}"): (
        Probe(path=CONNECTED, form=TAG),
        Probe(path=ITSELF, form=TAG, same_account=True, owner=TOP_LEVEL),
    ),
    ("GET", "/v1/accounts/{account_id}"): (
        Probe(path=CONNECTED),
        Probe(path=ITSELF, same_account=True),
    ),
    ("DELETE", "/v1/accounts/{account_id}"): (
        Probe(path=CONNECTED),
        Probe(path=ITSELF, same_account=True, owner=TOP_LEVEL),
    ),
    ("GET", "/v1/account"): (Probe(LISTED),),
}

ROUTES: dict[Route, tuple[Probe, ...]] = (
    LEDGER_ROUTES
    | CUSTOMER_ROUTES
    | INTENT_ROUTES
    | BALANCE_ROUTES
    | WEBHOOK_ROUTES
    | TRANSFER_ROUTES
    | PAYOUT_ROUTES
    | ACCOUNT_ROUTES
)


# -- the attackers -----------------------------------------------------------------------------

FOREIGN = "foreign"  # another account: judged by the probe's outcome
OTHER_MODE = "other mode"  # the victim's own key of the other mode: judged by the probe too
FIXED = "fixed"  # refused whatever the probe: `status` and `code`
OWNER = "owner"  # the victim itself, in the mode of its objects (the controls)


@dataclass(frozen=True, slots=True)
class Attacker:
    name: str
    headers: Mapping[str, str | bytes]
    role: str
    _: KW_ONLY
    status: int = 0  # FIXED: the status expected
    code: str | None = "api_key_invalid"  # FIXED: the error code expected (None: any)
    own: Estate | None = None  # the attacker's own objects, for cross probes
    outsider: bool | None = None  # None: another account exactly when FOREIGN

    @property
    def foreign_account(self) -> bool:
        """Not the victim's account: the victim's account id is victim data too."""
        return self.role == FOREIGN if self.outsider is None else self.outsider


def _other(mode: str) -> str:
    return LIVE if mode == TEST else TEST


def _malformed(secret: str) -> tuple[list[Attacker], list[Attacker]]:
    """Keys that authenticate as nobody (B's test key, mangled): the kinds every route gets,
    and variants of the same parser checks that take turns over the routes."""
    body = secret.split("_", 2)[2]
    basic = base64.b64encode(f"{secret}:".encode()).decode()
    every: dict[str, str | bytes | None] = {
        "no Authorization header": None,
        "bearer without a key": "Bearer",
        "bearer garbage": "Bearer x9!~garbage",
        "publishable prefix": f"Bearer pk_test_{body}",
        "overlong key": "Bearer sk_test_" + "A" * 4096,
        "non-ASCII key": f"Bearer {secret[:-1]}é".encode(),
    }
    turns: dict[str, str | bytes | None] = {
        "other mode's prefix": f"Bearer sk_live_{body}",
        "restricted prefix": f"Bearer rk_test_{body}",
        "truncated key": f"Bearer {secret[:-1]}",
        "key and one more character": f"Bearer {secret}A",
        "key in other case": f"Bearer {secret.swapcase()}",
        "Basic scheme": f"Basic {basic}",
        "no scheme": secret,
    }

    def keys(values: dict[str, str | bytes | None]) -> list[Attacker]:
        return [
            Attacker(f"malformed key ({name})", {} if value is None else {"Authorization": value},
                     FIXED, status=401, code=None, outsider=True)
            for name, value in values.items()
        ]  # fmt: skip

    return keys(every), keys(turns)


@dataclass(slots=True)
class World:
    """Both accounts' estates in both modes on one server, the keys that attack them, and
    what the attacks got."""

    server: Server
    http: httpx.Client
    victim: dict[str, Estate]
    attacker: dict[str, Estate]
    revoked: dict[str, str] = field(default_factory=dict)  # mode -> B's revoked secret key
    expired: dict[str, str] = field(default_factory=dict)  # mode -> B's expired secret key
    # Malformed keys: (sent on every route, taking turns).
    malformed: tuple[list[Attacker], list[Attacker]] = field(default_factory=lambda: ([], []))
    restricted: dict[tuple[str, str], str] = field(default_factory=dict)
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    after: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[Route, list[tuple[Attempt, httpx.Response]]] = field(default_factory=dict)

    def key(self, tenant: str, mode: str, **options: Any) -> str:
        with self.server.engine.begin() as connection:
            return create_key(connection, tenant_id=tenant, mode=Mode(mode), **options)

    def restricted_key(self, mode: str, route: Route) -> str:
        """B's restricted key with every permission but the route's: none of its resource for
        reads, read only for writes (and no grant reaches /ledger/v1)."""
        method, template = route
        grants = dict.fromkeys(RESOURCES, "write")
        resource = resource_of(template)
        if resource is not None:
            if method == "GET":
                del grants[resource]
            else:
                grants[resource] = "read"
        cache = (mode, json.dumps(grants, sort_keys=True))
        if cache not in self.restricted:
            account = self.victim[mode].account
            self.restricted[cache] = self.key(account, mode, permissions=grants)
        return self.restricted[cache]

    def probing(self, estate: Estate) -> list[Attacker]:
        """The attackers that send every probe: the other account, the other mode."""
        theirs, mine = self.attacker[estate.mode], self.victim[_other(estate.mode)]
        return [
            Attacker("another account's secret key", bearer(theirs.secret), FOREIGN, own=theirs),
            Attacker("own secret key of the other mode", bearer(mine.secret), OTHER_MODE, own=mine),
        ]  # fmt: skip

    def refused(self, route: Route, estate: Estate, turn: int) -> list[Attacker]:
        """The attackers refused before the route looks at anything: each sends one probe."""
        mode, ledger = estate.mode, route[1].startswith("/ledger/")
        theirs, mine = self.attacker[mode], self.victim[_other(mode)]
        code = "secret_key_required" if ledger else "insufficient_permissions"
        account = "Stripe-Account"
        result = [
            Attacker("restricted key without the permission",
                     bearer(self.restricted_key(mode, route)), FIXED, status=403, code=code),
            Attacker("revoked key", bearer(self.revoked[mode]), FIXED, status=401),
        ]  # fmt: skip
        turns = [Attacker("expired key", bearer(self.expired[mode]), FIXED, status=401)]
        if ledger:  # /ledger/v1 refuses Stripe-Account rather than act on the caller's ledger.
            result.append(
                Attacker("Stripe-Account on the native ledger API",
                         bearer(estate.secret) | {account: estate.ids["connected_account"]},
                         FIXED, status=400, code="stripe_account_not_supported")
            )  # fmt: skip
        else:
            result += [
                Attacker("Stripe-Account of another platform's connected account",
                         bearer(estate.secret) | {account: theirs.ids["connected_account"]},
                         FIXED, status=403, code="account_invalid"),
                Attacker("another account naming the victim's connected account",
                         bearer(theirs.secret) | {account: estate.ids["connected_account"]},
                         FIXED, status=403, code="account_invalid", outsider=True),
            ]  # fmt: skip
            turns.append(
                Attacker("Stripe-Account of the other mode's connected account",
                         bearer(estate.secret) | {account: mine.ids["connected_account"]},
                         FIXED, status=403, code="account_invalid")
            )  # fmt: skip
        every, variants = self.malformed
        turns += variants
        result.append(turns[turn % len(turns)])
        return result + (every if mode == TEST else [])  # Malformed keys have no mode.


# -- attempts ----------------------------------------------------------------------------------

EXPECTED = {
    DENIED: frozenset({403, 404}),
    REFUSED: frozenset({400, 404}),
    # 400, 404: a list cursor or filter naming the victim's object, as a missing one.
    LISTED: frozenset({200, 400, 404}),
    CREATED: frozenset({200}),
    BATCH: frozenset({200}),
}
DENIAL_CODES = {
    (DENIED, 403): "account_invalid",
    (DENIED, 404): "resource_missing",
    (LISTED, 400): "resource_missing",
    (LISTED, 404): "resource_missing",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    route: Route
    probe: Probe
    estate: Estate
    attacker: Attacker
    path: str
    form: Form | None
    body: dict[str, Any] | None

    @classmethod
    def of(cls, route: Route, probe: Probe, estate: Estate, attacker: Attacker) -> Attempt | None:
        """The attempt, or None when the estate has no such object (live mode) or the probe
        does not apply to the attacker."""
        if probe.cross and attacker.own is None:
            return None
        if probe.same_account and attacker.role == OTHER_MODE:
            return None  # The account itself is the caller's in both modes.
        own: Ids = {} if attacker.own is None else attacker.own.ids
        try:
            names = {name: estate.ids[kind] for name, kind in probe.path.items()}
            names |= {name: own[kind] for name, kind in probe.own.items()}
            form = None if probe.form is None else probe.form(estate.ids, own)
            body = None if probe.json is None else probe.json(estate.ids, own)
        except KeyError:
            return None
        path = route[1].format(**names)
        return cls(route, probe, estate, attacker, path, form, body)

    def send(self, http: httpx.Client) -> httpx.Response:
        method = self.route[0]
        headers = dict(self.attacker.headers)
        if self.probe.idempotency is not None:
            headers["Idempotency-Key"] = self.estate.idempotency[self.probe.idempotency]
        options: dict[str, Any] = {"headers": headers, "json": self.body}
        options["params" if method in {"GET", "DELETE"} else "data"] = self.form
        try:
            return http.request(method, self.path, **options)
        except httpx.TransportError as error:
            # No answer at all (the server dropped the connection): judged as a failure.
            return httpx.Response(NO_ANSWER, text=f"no answer: {error!r}")

    def request_text(self) -> str:
        header = self.attacker.headers.get("Stripe-Account", "")
        return " ".join((self.path, urlencode(self.form or {}), json.dumps(self.body), str(header)))

    def describe(self) -> str:
        method, template = self.route
        return (
            f"{method} {template} [{self.attacker.name}, B's {self.estate.mode} objects] "
            f"{method} {self.path} {self.form or self.body or ''}"
        )


# Headers whose numbers are no data (a Content-Length may equal one of B's amounts).
NUMERIC_HEADERS = frozenset({"content-length", "date"})


def _amounts_pattern(estate: Estate) -> re.Pattern[str]:
    numbers = "|".join(str(amount) for amount in estate.amounts.values())
    return re.compile(rf"(?<![\w.])(?:{numbers})(?![\w.])")


def victim_data(
    estate: Estate, response: httpx.Response, *, outsider: bool, named: str = ""
) -> list[str]:
    """The estate's data in the response: ids (but those in `named`, the request's own text
    an error may echo), and never its marker, secrets or amounts."""
    headers = (f"{k}: {v}" for k, v in response.headers.items() if k not in NUMERIC_HEADERS)
    text = " ".join((response.text, *headers))
    found = [secret for secret in (estate.marker, *estate.private) if secret in text]
    found += _amounts_pattern(estate).findall(text)
    ids = estate.victim_ids() | ({estate.account} if outsider else set())
    found += sorted(i for i in ids if i in text and i not in named)
    return [f"victim data in the response: {found}"] if found else []


def leaks(attempt: Attempt, response: httpx.Response) -> list[str]:
    echo_allowed = response.status_code >= 400 or attempt.probe.outcome in {BATCH, CREATED}
    named = attempt.request_text() if echo_allowed else ""
    return victim_data(
        attempt.estate, response, outsider=attempt.attacker.foreign_account, named=named
    )


def _error_problems(attempt: Attempt, response: httpx.Response) -> list[str]:
    try:
        error = response.json()["error"]
        kind, code = error["type"], error["code"]
        assert isinstance(error["message"], str)
    except (ValueError, KeyError, TypeError, AssertionError):
        return ["not the API's error format"]
    attacker, probe, status = attempt.attacker, attempt.probe, response.status_code
    if attacker.role == FIXED:
        expected_type = "authentication_error" if status == 401 else "invalid_request_error"
        if kind != expected_type or (attacker.code is not None and code != attacker.code):
            return [f"error {kind}/{code}, expected {expected_type}/{attacker.code}"]
        return []
    if probe.outcome == REFUSED and error.get("param") != probe.ref:
        live = attacker.own is not None and attacker.own.mode == LIVE
        if not (live and code == probe.live_code):
            return [f"the error names {error.get('param')!r}, not {probe.ref!r}"]
    if probe.outcome in {DENIED, LISTED} and code != DENIAL_CODES.get((probe.outcome, status)):
        return [f"error code {code!r}"]
    return []


def judge(attempt: Attempt, response: httpx.Response) -> list[str]:
    status, probe, attacker = response.status_code, attempt.probe, attempt.attacker
    expected = frozenset({attacker.status}) if attacker.role == FIXED else EXPECTED[probe.outcome]
    problems = [] if status in expected else [f"status {status}, expected {sorted(expected)}"]
    if status >= 400:
        problems += _error_problems(attempt, response)
    elif status == 200 and probe.check is not None:
        verdict = probe.check(response.json())
        problems += [] if verdict is None else [verdict]
    if status == 200 and response.headers.get("idempotent-replayed"):
        problems.append("replayed the victim's idempotent response")
    return problems + leaks(attempt, response)


def attempts_for(world: World, route: Route, index: int) -> list[Attempt]:
    """Every probe of the route with the attackers that depend on it; the first probe that
    applies with the attackers refused before the route looks at anything."""
    attempts = []
    for turn, estate in enumerate(world.victim.values(), start=2 * index):
        attempts += [
            Attempt.of(route, probe, estate, attacker)
            for probe in ROUTES[route]
            for attacker in world.probing(estate)
        ]
        refused = world.refused(route, estate, turn)
        for probe in ROUTES[route]:
            if Attempt.of(route, probe, estate, refused[0]) is not None:
                attempts += [Attempt.of(route, probe, estate, attacker) for attacker in refused]
                break
    return [attempt for attempt in attempts if attempt is not None]


def attack_everything(world: World) -> None:
    """Every attempt on every route, several at a time (they are independent)."""
    planned = [
        attempt
        for index, route in enumerate(sorted(ROUTES))
        for attempt in attempts_for(world, route, index)
    ]
    with ThreadPoolExecutor(WORKERS) as pool:
        responses = list(pool.map(lambda attempt: attempt.send(world.http), planned))
    for attempt, response in zip(planned, responses, strict=True):
        world.results.setdefault(attempt.route, []).append((attempt, response))


# -- the victim's state ------------------------------------------------------------------------

# Read with the owner's key before and after the attacks; lists only where no probe may
# legitimately add to them (money never moves in a probe the owner's other-mode key may pass).
SNAPSHOT = (
    "/v1/account", "/v1/balance",
    "/v1/customers/{customer}", "/v1/customers/{customer}/payment_methods",
    "/v1/payment_methods/{payment_method}",
    "/v1/payment_intents/{payment_intent}", "/v1/payment_intents/{payment_intent_capture}",
    "/v1/payment_intents/{payment_intent_confirm}", "/v1/payment_intents/{payment_intent_cancel}",
    "/v1/payment_intents/{payment_intent_3ds}",
    "/v1/charges/{charge}", "/v1/refunds/{refund}",
    "/v1/balance_transactions/{balance_transaction}",
    "/v1/accounts/{connected_account}", "/v1/accounts/{connected_account}/external_accounts",
    "/v1/accounts/{account}/external_accounts",
    "/v1/accounts/{account}/external_accounts/{bank_account}",
    "/v1/transfers/{transfer}", "/v1/transfers/{transfer}/reversals",
    "/v1/transfers/{transfer}/reversals/{transfer_reversal}",
    "/v1/payouts/{payout}", "/v1/events/{event}",
    "/v1/webhook_endpoints/{webhook_endpoint}", "/v1/webhook_endpoints/{webhook_endpoint}/attempts",
    "/v1/charges?limit=100", "/v1/refunds?limit=100", "/v1/balance_transactions?limit=100",
    "/v1/transfers?limit=100", "/v1/payouts?limit=100",
    "/ledger/v1/accounts/{ledger_credit}", "/ledger/v1/accounts/{ledger_debit}",
    "/ledger/v1/accounts/{ledger_spare}",
    "/ledger/v1/accounts/{ledger_credit}/transfers", "/ledger/v1/accounts/{ledger_debit}/transfers",
    "/ledger/v1/accounts/{ledger_credit}/balance?at=" + FAR_FUTURE_NS,
    "/ledger/v1/transfers/{ledger_transfer}", "/ledger/v1/transfers/{ledger_pending}",
)  # fmt: skip


def _rows(server: Server, estate: Estate) -> dict[str, Any]:
    """The database rows of the estate's /v1 objects, secrets and internals included (a rolled
    webhook secret shows only here)."""
    ids = sorted(estate.victim_ids())
    rows: dict[str, Any] = {}
    with server.engine.connect() as connection:
        for table in metadata.sorted_tables:
            key = table.c.get("id")
            if "tenant_id" not in table.c or key is None or not isinstance(key.type, sa.String):
                continue
            query = table.select().where(table.c.id.in_(ids)).order_by(table.c.id)
            found = [repr(tuple(row)) for row in connection.execute(query)]
            if found:
                rows[f"table {table.name}"] = found
    return rows


def snapshot(world: World, estate: Estate) -> dict[str, Any]:
    owner = Owner(world.http, estate)
    paths = []
    for template in SNAPSHOT:
        try:
            paths.append(template.format_map(estate.ids))
        except KeyError:
            continue  # No such object in this mode.
    with ThreadPoolExecutor(WORKERS) as pool:
        responses = pool.map(
            lambda path: world.http.get(path, headers=bearer(estate.secret)), paths
        )
        # A status besides the body: after a successful attack a read may fail.
        state: dict[str, Any] = {
            path: (response.status_code, response.json())
            for path, response in zip(paths, responses, strict=True)
        }
    # Events about the estate's objects (the owner's other-mode key may create new objects).
    events = owner.call("GET", "/v1/events", {"limit": "100"})
    assert events["has_more"] is False
    ids = estate.victim_ids()
    state["events"] = [e for e in events["data"] if e["data"]["object"].get("id") in ids]
    return state | _rows(world.server, estate)


# -- the tests ---------------------------------------------------------------------------------


def _estates(http: httpx.Client, victim: Tenant, attacker: Tenant) -> list[Estate]:
    """B's estates (test, live), then A's: built four at a time."""
    plans = [
        (victim, TEST, VICTIM_AMOUNTS[TEST]),
        (victim, LIVE, VICTIM_AMOUNTS[LIVE]),
        (attacker, TEST, ATTACKER_AMOUNTS),
        (attacker, LIVE, ATTACKER_AMOUNTS),
    ]

    def build(plan: tuple[Tenant, str, Mapping[str, int]]) -> Estate:
        tenant, mode, amounts = plan
        secret = tenant.test_secret if mode == TEST else tenant.live_secret
        return build_estate(http, tenant.id, secret, mode, amounts)

    with ThreadPoolExecutor(len(plans)) as pool:
        return list(pool.map(build, plans))


@pytest.fixture(scope="module")
def world(v1_server: Server) -> Iterator[World]:
    """The estates, every attack on them, and the victim's state before and after."""
    victim, attacker = _tenant(v1_server, "victim"), _tenant(v1_server, "attacker")
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    with httpx.Client(
        base_url=v1_server.base_url, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as http:
        b_test, b_live, a_test, a_live = _estates(http, victim, attacker)
        made = World(v1_server, http, {TEST: b_test, LIVE: b_live}, {TEST: a_test, LIVE: a_live})
        made.malformed = _malformed(victim.test_secret)
        for mode in (TEST, LIVE):
            made.revoked[mode] = made.key(victim.id, mode)
            with v1_server.engine.begin() as connection:
                revoke_key(connection, key_id_of(v1_server.engine, made.revoked[mode]))
            made.expired[mode] = made.key(victim.id, mode, expires_at_ns=time.time_ns() - 1)
        made.before = {mode: snapshot(made, estate) for mode, estate in made.victim.items()}
        for state in made.before.values():
            assert all(value[0] == 200 for value in state.values() if isinstance(value, tuple))
        attack_everything(made)
        made.after = {mode: snapshot(made, estate) for mode, estate in made.victim.items()}
        yield made


def _tenant(server: Server, name: str) -> Tenant:
    tenant = new_tenant(server, name)
    tenant.client.close()
    return tenant


def _documented(document: dict[str, Any]) -> set[Route]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_documented_route_is_enumerated(world: World) -> None:
    response = world.http.get("/openapi.json")
    assert response.status_code == 200, response.text
    documented = _documented(response.json())
    missing = sorted(documented - ROUTES.keys())
    assert missing == [], f"routes of /openapi.json without isolation probes: {missing}"
    stale = sorted(ROUTES.keys() - documented)
    assert stale == [], f"probed routes no longer in /openapi.json: {stale}"
    # Every probe applies to B's test objects (the test estate has every kind), so a typo in a
    # kind cannot silently skip a probe; and every route was attacked.
    foreign = world.probing(world.victim[TEST])[0]
    for route, probes in ROUTES.items():
        for probe in probes:
            assert Attempt.of(route, probe, world.victim[TEST], foreign) is not None, (route, probe)
    assert world.results.keys() == ROUTES.keys()


# Served, not documented, not reached with an API key: the document itself, and the 3-D Secure
# page the cardholder opens with its intent's token (test_challenge_page_needs_its_own_token).
UNDOCUMENTED = {("GET", "/openapi.json"), ("GET", "/3ds/{intent_id}"), ("POST", "/3ds/{intent_id}")}


def _served(server: Server) -> set[Route]:
    """(METHOD, path) of every route the app serves, documented or not."""
    app = create_app(Settings(database_url=server.database_url, journal_key=JOURNAL_KEY))
    try:
        served = {
            (method, context.path)
            for context in iter_route_contexts(app.routes)
            for method in context.methods or ()
            # Starlette answers HEAD for every GET route.
            if context.path is not None and method != "HEAD"
        }
    finally:
        app.state.engine.dispose()
    return served


def test_every_served_route_is_documented_or_known(world: World) -> None:
    """A route hidden from /openapi.json would escape the enumeration."""
    documented = _documented(world.http.get("/openapi.json").json())
    assert _served(world.server) - documented == UNDOCUMENTED


def test_challenge_page_needs_its_own_token(world: World) -> None:
    """B's 3-D Secure page, with A's token of its own challenge, or none: 404 and no data; the
    answer changes nothing. B's own token opens it."""
    victim, attacker = world.victim[TEST], world.attacker[TEST]
    intent = victim.ids["payment_intent_3ds"]
    page = f"/3ds/{intent}"
    responses = [
        world.http.get(page, params={"token": attacker.challenge}),
        world.http.get(page),
        world.http.post(page, data={"token": attacker.challenge, "result": "approve"}),
        world.http.post(page, data={"token": "x" * 43, "result": "approve"}),
    ]
    for response in responses:
        assert response.status_code == 404, response.text
        assert victim_data(victim, response, outsider=True, named=intent) == []
    read = Owner(world.http, victim).call("GET", f"/v1/payment_intents/{intent}")
    assert read["status"] == "requires_action"
    assert world.http.get(page, params={"token": victim.challenge}).status_code == 200


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_route_never_reaches_another_partition(world: World, route: Route) -> None:
    problems = [
        f"{attempt.describe()}\n    {problem}: {response.status_code} {response.text[:300]}"
        for attempt, response in world.results[route]
        for problem in judge(attempt, response)
    ]
    assert problems == [], "\n".join(problems)


def test_victims_objects_are_unchanged(world: World) -> None:
    """B's objects, as its own key reads them (and as the database holds them), are what they
    were before the attacks: no modification had any effect."""
    assert world.results.keys() == ROUTES.keys()
    changed = [
        f"B's {mode} {name}:\n    before {before.get(name)}\n    after  {after.get(name)}"
        for mode, before in world.before.items()
        for after in [world.after[mode]]
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]
    assert changed == [], "\n".join(changed)


def _owner_problems(probe: Probe, estate: Estate, response: httpx.Response) -> list[str]:
    code = probe.owner.get(estate.mode)
    if code is None:
        if response.status_code != 200:
            return [f"the owner got {response.status_code}"]
        shown = estate.ids.get(probe.shows or "")
        if shown is not None and shown not in response.text:
            return [f"the owner's list does not show its {probe.shows}"]
        return []
    try:
        found = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        found = None
    return [] if found == code else [f"the owner got {response.status_code} {found}, not {code}"]


def _owner_attempts(world: World, method: str) -> list[Attempt]:
    """Each probe of the method's routes that names only B's objects, sent by B's own key in
    the mode of its objects."""
    attempts = []
    for route in sorted(route for route in ROUTES if route[0] == method):
        for probe in ROUTES[route]:
            for estate in world.victim.values():
                owner = Attacker("the owner", bearer(estate.secret), OWNER)
                attempt = None if probe.cross else Attempt.of(route, probe, estate, owner)
                if attempt is not None:
                    attempts.append(attempt)
    return attempts


def test_owner_passes_the_same_probes(world: World) -> None:
    """B's own key sends the probes that named only B's objects: they succeed (or fail for the
    owner's reason, e.g. a paid payout cannot be canceled), so the attackers' refusals come
    from isolation, not from a malformed request. Runs on the fixture's objects after the
    attacks and both snapshots: reads (at once), then writes, then deletes (one by one)."""
    reads = _owner_attempts(world, "GET")
    with ThreadPoolExecutor(WORKERS) as pool:
        sent = list(
            zip(reads, pool.map(lambda attempt: attempt.send(world.http), reads), strict=True)
        )
    for method in ("POST", "DELETE"):
        sent += [(attempt, attempt.send(world.http)) for attempt in _owner_attempts(world, method)]
    problems = [
        f"{attempt.describe()}\n    {problem}: {response.text[:300]}"
        for attempt, response in sent
        for problem in _owner_problems(attempt.probe, attempt.estate, response)
    ]
    assert problems == [], "\n".join(problems)
    assert {attempt.route for attempt, _response in sent} == ROUTES.keys()
