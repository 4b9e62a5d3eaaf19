"""/v1/payment_intents and /v1/charges end to end with the official stripe SDK: every outcome
of Stripe's test cards, both capture methods, 3-D Secure over HTTP; the ledger verifies and the
balance transactions reconcile with it after every scenario."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx
import pytest
import stripe

from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of


def _fee(amount: int) -> int:
    """Farthing's default pricing: 2.9% rounded half up, plus 30 minor units."""
    return (amount * 290 + 5_000) // 10_000 + 30


def _pay(account: Account, method: str, amount: int = 10_000, **extra: Any) -> stripe.PaymentIntent:
    params = {"amount": amount, "currency": "usd", "payment_method": method, "confirm": True}
    return account.test.v1.payment_intents.create(params=cast("Any", params | extra))


def _balance(account: Account) -> tuple[int, int]:
    balance = account.test.v1.balance.retrieve()
    available = sum(entry.amount for entry in balance.available if entry.currency == "usd")
    pending = sum(entry.amount for entry in balance.pending if entry.currency == "usd")
    return available, pending


def test_list_expand_names_fields_of_the_listed_objects(account: Account) -> None:
    """As Stripe: a list expands ``data.<field>``; anything else is a 400, even on an empty page,
    rather than a request that silently returns ids."""
    for expand in (["customer"], ["data.bogus"], ["data.customer.bogus"]):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            account.test.v1.charges.list(params={"expand": expand})
        assert raised.value.param == "expand"
    customer = account.test.v1.customers.create(params={"email": "ada@example.com"})
    _pay(account, "pm_card_visa", customer=customer.id)
    (charge,) = account.test.v1.charges.list(params={"expand": ["data.customer"]}).data
    assert cast("stripe.Customer", charge.customer).email == "ada@example.com"


def test_automatic_capture_charges_net_of_fee(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_visa", expand=["latest_charge.balance_transaction"])
    assert intent.status == "succeeded"
    assert (intent.amount_received, intent.amount_capturable) == (10_000, 0)
    charge = cast("stripe.Charge", intent.latest_charge)
    assert charge.status == "succeeded"
    assert charge.captured is True
    assert charge.paid is True
    assert charge.amount_captured == 10_000
    assert charge.payment_method_details is not None
    assert charge.payment_method_details.card is not None
    assert charge.payment_method_details.card.last4 == "4242"
    txn = cast("stripe.BalanceTransaction", charge.balance_transaction)
    assert (txn.amount, txn.fee, txn.net) == (10_000, _fee(10_000), 10_000 - _fee(10_000))
    assert txn.status == "pending"
    assert txn.type == "charge"
    assert txn.source == charge.id
    assert txn.fee_details[0].amount == _fee(10_000)
    assert _balance(account) == (0, 10_000 - _fee(10_000))
    assert account.test.v1.charges.retrieve(charge.id).payment_intent == intent.id
    assert_consistent(v1_server, scope_of(account))


def test_bypass_pending_card_makes_funds_available_at_once(
    v1_server: Server, account: Account
) -> None:
    intent = _pay(account, "pm_card_bypassPending", amount=5_000)
    assert intent.status == "succeeded"
    charge = account.test.v1.charges.retrieve(
        cast("str", intent.latest_charge), params={"expand": ["balance_transaction"]}
    )
    txn = cast("stripe.BalanceTransaction", charge.balance_transaction)
    assert txn.status == "available"
    assert _balance(account) == (5_000 - _fee(5_000), 0)
    assert_consistent(v1_server, scope_of(account))


def test_manual_capture_partial_releases_the_rest(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_visa", amount=1_000, capture_method="manual")
    assert intent.status == "requires_capture"
    assert intent.amount_capturable == 1_000
    charge = account.test.v1.charges.retrieve(cast("str", intent.latest_charge))
    assert (charge.captured, charge.balance_transaction) == (False, None)
    # An authorisation is a hold: nothing is in the merchant's balance yet.
    assert _balance(account) == (0, 0)
    assert_consistent(v1_server, scope_of(account))

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        account.test.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 1_001})
    assert too_much.value.code == "amount_too_large"
    captured = account.test.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 600})
    assert captured.status == "succeeded"
    assert (captured.amount_received, captured.amount_capturable) == (600, 0)
    charge = account.test.v1.charges.retrieve(charge.id)
    assert (charge.amount_captured, charge.amount_refunded, charge.captured) == (600, 400, True)
    assert _balance(account) == (0, 600 - _fee(600))
    with pytest.raises(stripe.InvalidRequestError) as again:
        account.test.v1.payment_intents.capture(intent.id)
    assert again.value.code == "payment_intent_unexpected_state"
    assert_consistent(v1_server, scope_of(account))


def test_manual_capture_in_full_and_cancel(v1_server: Server, account: Account) -> None:
    full = _pay(account, "pm_card_mastercard", amount=2_000, capture_method="manual")
    captured = account.test.v1.payment_intents.capture(full.id)
    assert captured.amount_received == 2_000
    held = _pay(account, "pm_card_visa", amount=3_000, capture_method="manual")
    canceled = account.test.v1.payment_intents.cancel(
        held.id, params={"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "requested_by_customer"
    assert canceled.amount_capturable == 0
    assert _balance(account) == (0, 2_000 - _fee(2_000))
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payment_intents.capture(held.id)
    assert_consistent(v1_server, scope_of(account))


DECLINES = [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
]


@pytest.mark.parametrize(("preset", "code", "decline_code"), DECLINES)
def test_declined_cards_raise_card_errors(
    v1_server: Server, account: Account, preset: str, code: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as declined:
        _pay(account, preset)
    error = declined.value
    assert error.http_status == 402
    assert error.code == code
    assert getattr(error.error, "decline_code", None) == decline_code
    intent = error.error.payment_intent if error.error is not None else None
    assert intent is not None
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.code == code
    charge = account.test.v1.charges.retrieve(cast("str", intent.latest_charge))
    assert (charge.status, charge.failure_code, charge.paid) == ("failed", code, False)
    # A declined intent can be paid with another card.
    retried = account.test.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_card_visa"}
    )
    assert retried.status == "succeeded"
    assert _balance(account) == (0, 10_000 - _fee(10_000))
    assert_consistent(v1_server, scope_of(account))


def _challenge(intent: stripe.PaymentIntent) -> str:
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"
    redirect = intent.next_action.redirect_to_url
    assert redirect is not None
    assert redirect.url is not None
    return redirect.url


@pytest.mark.parametrize(
    "preset", ["pm_card_threeDSecure2Required", "pm_card_authenticationRequired"]
)
def test_three_d_secure_completed_over_http(
    v1_server: Server, account: Account, preset: str
) -> None:
    intent = _pay(account, preset, return_url="https://shop.example/done")
    url = _challenge(intent)
    with httpx.Client(timeout=30) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        assert "Complete authentication" in page.text
        token = httpx.URL(url).params["token"]
        wrong = browser.post(url.split("?")[0], data={"token": token + "x", "result": "approve"})
        assert wrong.status_code == 404
        answer = browser.post(url.split("?")[0], data={"token": token, "result": "approve"})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"https://shop.example/done?payment_intent={intent.id}"
        # The challenge is single-use.
        assert browser.get(url).status_code == 404
    done = account.test.v1.payment_intents.retrieve(intent.id)
    assert done.status == "succeeded"
    assert done.next_action is None
    assert_consistent(v1_server, scope_of(account))


@pytest.mark.parametrize(
    "return_url",
    ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "no scheme", ":x"],
)
def test_a_return_url_the_browser_would_run_is_refused(
    v1_server: Server, account: Account, return_url: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _pay(account, "pm_card_threeDSecure2Required", return_url=return_url)
    assert refused.value.param == "return_url"
    assert account.test.v1.payment_intents.list().data == []


def test_an_apps_own_scheme_is_a_return_url(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_threeDSecure2Required", return_url="shopapp://paid")
    url = _challenge(intent)
    token = httpx.URL(url).params["token"]
    answer = httpx.post(url.split("?")[0], data={"token": token, "result": "approve"}, timeout=30)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"shopapp://paid?payment_intent={intent.id}"
    assert_consistent(v1_server, scope_of(account))


def test_three_d_secure_failed(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_threeDSecure2Required")
    url = _challenge(intent)
    token = httpx.URL(url).params["token"]
    answer = httpx.post(url.split("?")[0], data={"token": token, "result": "fail"}, timeout=30)
    assert answer.status_code == 200
    failed = account.test.v1.payment_intents.retrieve(intent.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error is not None
    assert failed.last_payment_error.code == "payment_intent_authentication_failure"
    assert _balance(account) == (0, 0)
    assert_consistent(v1_server, scope_of(account))


@pytest.mark.parametrize(
    "change",
    [{"amount": 99_999_999}, {"currency": "jpy"}, {"capture_method": "manual"}],
)
def test_changing_the_terms_voids_the_challenge(
    v1_server: Server, account: Account, change: dict[str, Any]
) -> None:
    """A challenge approves the payment the cardholder was shown, not one changed since."""
    intent = _pay(account, "pm_card_threeDSecure2Required", amount=1_000)
    url = _challenge(intent)
    changed = account.test.v1.payment_intents.update(intent.id, params=cast("Any", change))
    assert changed.status == "requires_confirmation"
    assert changed.next_action is None
    token = httpx.URL(url).params["token"]
    answer = httpx.post(url.split("?")[0], data={"token": token, "result": "approve"}, timeout=30)
    assert answer.status_code == 404
    assert account.test.v1.payment_intents.retrieve(intent.id).status == "requires_confirmation"
    assert account.test.v1.charges.list(params={"payment_intent": intent.id}).data == []
    assert _balance(account) == (0, 0)
    # Unchanged terms keep the challenge.
    again = _pay(account, "pm_card_threeDSecure2Required", amount=1_000)
    kept = account.test.v1.payment_intents.update(
        again.id, params={"amount": 1_000, "metadata": {"order": "7"}}
    )
    assert kept.status == "requires_action"
    assert_consistent(v1_server, scope_of(account))


def test_concurrent_challenge_answers_count_once(v1_server: Server, account: Account) -> None:
    """A double click, or approve and fail sent together: one answer counts, the others find
    the challenge gone (404), and none is a 500."""
    intent = _pay(account, "pm_card_threeDSecure2Required")
    url = _challenge(intent)
    token = httpx.URL(url).params["token"]

    def answer(result: str) -> int:
        with httpx.Client(timeout=30) as browser:  # A connection of its own each.
            sent = browser.post(url.split("?")[0], data={"token": token, "result": result})
            return sent.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(answer, ["approve", "approve", "fail", "approve"]))
    assert sorted(statuses).count(404) == 3, statuses
    assert 500 not in statuses
    done = account.test.v1.payment_intents.retrieve(intent.id)
    assert done.status in {"succeeded", "requires_payment_method"}
    assert len(account.test.v1.charges.list(params={"payment_intent": intent.id}).data) <= 1
    assert_consistent(v1_server, scope_of(account))


def test_status_machine_without_confirm(v1_server: Server, account: Account) -> None:
    customer = account.test.v1.customers.create(params={"email": "ada@example.com"})
    intent = account.test.v1.payment_intents.create(
        params={"amount": 700, "currency": "eur", "customer": customer.id}
    )
    assert intent.status == "requires_payment_method"
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payment_intents.confirm(intent.id)
    updated = account.test.v1.payment_intents.update(
        intent.id, params={"payment_method": "pm_card_visa", "metadata": {"order": "42"}}
    )
    assert updated.status == "requires_confirmation"
    assert updated.metadata.to_dict() == {"order": "42"}
    confirmed = account.test.v1.payment_intents.confirm(
        intent.id, params={"expand": ["customer", "payment_method"]}
    )
    assert confirmed.status == "succeeded"
    assert cast("stripe.Customer", confirmed.customer).email == "ada@example.com"
    assert cast("stripe.PaymentMethod", confirmed.payment_method).object == "payment_method"
    with pytest.raises(stripe.InvalidRequestError) as late:
        account.test.v1.payment_intents.update(intent.id, params={"amount": 1})
    assert late.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payment_intents.cancel(intent.id)
    assert_consistent(v1_server, scope_of(account))


@pytest.mark.parametrize(
    "params",
    [
        {"currency": "usd"},
        {"amount": 0, "currency": "usd"},
        {"amount": 10, "currency": "usd", "amount_decimal": "1.5"},
        {"amount": "1.50", "currency": "usd"},
        {"amount": 100, "currency": "xyz"},
        {"amount": 100, "currency": "usd", "capture_method": "later"},
        {"amount": 100, "currency": "usd", "payment_method_types": ["sepa_debit"]},
        {"amount": 100, "currency": "usd", "customer": "cus_missing"},
        {"amount": 100, "currency": "usd", "payment_method": "pm_missing"},
        {"amount": 100, "currency": "usd", "application_fee_amount": 5},
        {"amount": 100, "currency": "usd", "transfer_data": {"destination": "acct_nope"}},
    ],
)
def test_invalid_create_changes_nothing(
    v1_server: Server, account: Account, params: dict[str, Any]
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payment_intents.create(params=cast("Any", params))
    assert list(account.test.v1.payment_intents.list().data) == []
    assert_consistent(v1_server, scope_of(account))


def test_live_mode_never_fakes_a_payment(v1_server: Server, account: Account) -> None:
    method = account.live.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000056655665556", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        account.live.v1.payment_intents.create(
            params={"amount": 500, "currency": "usd", "payment_method": method.id, "confirm": True}
        )
    assert refused.value.code == "processor_not_configured"
    assert list(account.live.v1.payment_intents.list().data) == []
    # Test-mode objects are invisible to the live key and the other way round.
    test_intent = _pay(account, "pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError):
        account.live.v1.payment_intents.retrieve(test_intent.id)
    assert_consistent(v1_server, scope_of(account), scope_of(account, "live"))


def test_idempotent_confirm_charges_once(v1_server: Server, account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "order-7"}
    params: Any = {
        "amount": 900,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }
    first = account.test.v1.payment_intents.create(params=params, options=options)
    again = account.test.v1.payment_intents.create(params=params, options=options)
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers.get("idempotent-replayed") == "true"
    assert len(account.test.v1.charges.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        account.test.v1.payment_intents.create(params=params | {"amount": 901}, options=options)
    assert _balance(account) == (0, 900 - _fee(900))
    assert_consistent(v1_server, scope_of(account))


def test_lists_page_once_through_everything(v1_server: Server, account: Account) -> None:
    created = [
        account.test.v1.payment_intents.create(params={"amount": 100 + n, "currency": "usd"}).id
        for n in range(23)
    ]
    walked = [
        intent.id
        for intent in account.test.v1.payment_intents.list(params={"limit": 5}).auto_paging_iter()
    ]
    assert walked == list(reversed(created))
    first = account.test.v1.charges.list(params={"limit": 3})
    assert first.data == []
    assert_consistent(v1_server, scope_of(account))
