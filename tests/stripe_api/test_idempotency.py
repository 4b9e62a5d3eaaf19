"""Idempotency-Key on POST, as Stripe defines it, over real HTTP on both databases."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import sqlalchemy as sa
import stripe
from sqlalchemy import event

from farthing.auth import create_tenant
from farthing.db.engine import begin_write, create_engine
from farthing.db.schema import stripe_customers, stripe_idempotency_keys
from farthing.http._errors import ApiError
from farthing.stripe_api import IDEMPOTENCY_KEY_LENGTH_MAX, IDEMPOTENCY_TTL_NS, _idempotency
from farthing.stripe_api._idempotency import IDEMPOTENCY_CLAIM_TIMEOUT_NS, run_idempotent
from farthing.stripe_api._request import Partition
from tests.conftest import JOURNAL_KEY, waiting_on_a_lock
from tests.http.conftest import Server, assert_error, poll_until
from tests.stripe_api.conftest import Account, new_account

CONCURRENT_REQUESTS = 50


def _customers_of(server: Server, account: Account) -> list[str]:
    with server.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(stripe_customers.c.id).where(stripe_customers.c.tenant_id == account.id)
            ).scalars()
        )


def test_replay_returns_the_first_result(v1_server: Server, account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "create-ada"}
    first = account.test.v1.customers.create(params={"email": "ada@example.com"}, options=options)
    again = account.test.v1.customers.create(params={"email": "ada@example.com"}, options=options)
    assert again.id == first.id
    assert again.to_dict() == first.to_dict()
    assert first.last_response is not None
    assert again.last_response is not None
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.request_id != first.last_response.request_id
    assert _customers_of(v1_server, account) == [first.id]


def test_same_key_other_parameters_is_an_idempotency_error(account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "k-1"}
    account.test.v1.customers.create(params={"name": "one"}, options=options)
    with pytest.raises(stripe.IdempotencyError) as raised:
        account.test.v1.customers.create(params={"name": "two"}, options=options)
    assert raised.value.http_status == 400
    # The same key on another endpoint is other parameters too.
    customer = account.test.v1.customers.list().data[0]
    with pytest.raises(stripe.IdempotencyError):
        account.test.v1.customers.update(customer.id, params={"name": "one"}, options=options)


def test_keys_are_scoped_to_tenant_and_mode(v1_server: Server, account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "shared"}
    mine = account.test.v1.customers.create(params={"name": "a"}, options=options)
    live = account.live.v1.customers.create(params={"name": "a"}, options=options)
    theirs = new_account(v1_server).test.v1.customers.create(params={"name": "a"}, options=options)
    assert len({mine.id, live.id, theirs.id}) == 3


def test_validation_errors_are_not_stored(account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "fix-and-retry"}
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.customers.create(params={"metadata": {"k" * 41: "v"}}, options=options)
    created = account.test.v1.customers.create(params={"name": "fixed"}, options=options)
    assert created.name == "fixed"


def test_expand_errors_are_validation_and_not_stored(account: Account) -> None:
    """A path naming no expandable field is refused before the confirm runs; one naming a field
    the answer lacks after (nothing committed): neither is the key's result, so the fixed
    request then runs."""
    options: stripe.RequestOptions = {"idempotency_key": "expand-then-fix"}

    def confirm(expand: list[str]) -> stripe.PaymentIntent:
        return account.test.v1.payment_intents.create(
            params={"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa",
                    "confirm": True, "expand": expand},
            options=options,
        )  # fmt: skip

    for expand in (["latest_charge.bogus"], ["charge"]):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            confirm(expand)
        assert raised.value.param == "expand"
        assert raised.value.headers is not None
        assert "Idempotent-Replayed" not in raised.value.headers
    assert not account.test.v1.payment_intents.list().data  # Nothing ran or committed.
    intent = confirm(["latest_charge"])
    assert intent.status == "succeeded"
    assert isinstance(intent.latest_charge, stripe.Charge)


def test_errors_after_execution_began_are_replayed(account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "missing-customer"}
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            account.test.v1.customers.update("cus_missing", params={"name": "x"}, options=options)
        assert raised.value.http_status == 404
        assert raised.value.code == "resource_missing"
    assert raised.value.headers is not None
    assert raised.value.headers["Idempotent-Replayed"] == "true"


def _claim(server: Server, account: Account, key: str, *, age_ns: int, fingerprint: str) -> None:
    with server.engine.begin() as connection:
        connection.execute(
            stripe_idempotency_keys.insert().values(
                tenant_id=account.id,
                mode="test",
                key=key,
                claim="claimed-by-another-request",
                fingerprint=fingerprint,
                created_at_ns=time.time_ns() - age_ns,
            )
        )


def test_a_key_still_in_flight_is_a_409(v1_server: Server, account: Account) -> None:
    # A claim without a result is exactly what a request still executing leaves in the table.
    with v1_server.client(account.test_secret) as http:
        first = http.post("/v1/customers", data={"name": "x"}, headers={"Idempotency-Key": "k0"})
        assert first.status_code == 200
        with v1_server.engine.begin() as connection:
            fingerprint = connection.execute(
                sa.select(stripe_idempotency_keys.c.fingerprint).where(
                    stripe_idempotency_keys.c.key == "k0",
                    stripe_idempotency_keys.c.tenant_id == account.id,
                )
            ).scalar_one()
        _claim(v1_server, account, "in-flight", age_ns=0, fingerprint=fingerprint)
        response = http.post(
            "/v1/customers", data={"name": "x"}, headers={"Idempotency-Key": "in-flight"}
        )
        assert_error(response, 409, type_="idempotency_error")
        assert response.headers["request-id"].startswith("req_")


def test_an_abandoned_claim_is_taken_over(v1_server: Server, account: Account) -> None:
    # A request that died between claiming the key and committing leaves a claim without a
    # result; after the claim timeout a retry with the same parameters runs.
    with v1_server.client(account.test_secret) as http:
        first = http.post("/v1/customers", data={"name": "x"}, headers={"Idempotency-Key": "k1"})
        assert first.status_code == 200
        with v1_server.engine.begin() as connection:
            fingerprint = connection.execute(
                sa.select(stripe_idempotency_keys.c.fingerprint).where(
                    stripe_idempotency_keys.c.key == "k1",
                    stripe_idempotency_keys.c.tenant_id == account.id,
                )
            ).scalar_one()
        age_ns = IDEMPOTENCY_CLAIM_TIMEOUT_NS + 10**9
        _claim(v1_server, account, "died", age_ns=age_ns, fingerprint=fingerprint)
        retried = http.post(
            "/v1/customers", data={"name": "x"}, headers={"Idempotency-Key": "died"}
        )
        assert retried.status_code == 200
        assert "idempotent-replayed" not in retried.headers
        again = http.post("/v1/customers", data={"name": "x"}, headers={"Idempotency-Key": "died"})
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == retried.json()["id"]


def test_a_request_whose_claim_was_taken_over_commits_nothing(
    v1_server: Server, account: Account
) -> None:
    scope = Partition(tenant_id=account.id, mode="test", platform_id=account.id)

    def effect(connection: sa.Connection) -> tuple[int, dict[str, Any]]:
        connection.execute(
            stripe_customers.insert().values(
                id="cus_lost", tenant_id=account.id, mode="test", created=1, metadata="{}"
            )
        )
        # What a takeover by a retry looks like from here: the claim is no longer ours.
        connection.execute(
            stripe_idempotency_keys.update()
            .where(stripe_idempotency_keys.c.key == "lost")
            .values(claim="the-retry")
        )
        return 200, {"id": "cus_lost"}

    with pytest.raises(ApiError) as raised:
        run_idempotent(
            v1_server.engine, scope, "lost", method="POST", path="/v1/x", params={}, effect=effect
        )
    assert raised.value.status == 409
    with v1_server.engine.begin() as connection:
        count = connection.execute(
            sa.select(sa.func.count()).where(stripe_customers.c.id == "cus_lost")
        ).scalar_one()
    assert count == 0


def test_expired_keys_are_new_again(v1_server: Server, account: Account) -> None:
    _claim(v1_server, account, "old", age_ns=IDEMPOTENCY_TTL_NS + 10**9, fingerprint="0" * 64)
    created = account.test.v1.customers.create(
        params={"name": "new"}, options={"idempotency_key": "old"}
    )
    assert created.name == "new"


def test_key_length_is_bounded(account: Account) -> None:
    too_long: stripe.RequestOptions = {"idempotency_key": "k" * (IDEMPOTENCY_KEY_LENGTH_MAX + 1)}
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.customers.create(params={"name": "x"}, options=too_long)
    longest: stripe.RequestOptions = {"idempotency_key": "k" * IDEMPOTENCY_KEY_LENGTH_MAX}
    assert account.test.v1.customers.create(params={"name": "x"}, options=longest).name == "x"


def test_concurrent_identical_requests_create_one_customer(
    v1_server: Server, account: Account
) -> None:
    start = threading.Barrier(CONCURRENT_REQUESTS)
    options: stripe.RequestOptions = {"idempotency_key": "stampede"}

    def create() -> str | stripe.APIError:
        start.wait()
        try:
            return account.test.v1.customers.create(params={"name": "once"}, options=options).id
        except stripe.APIError as error:  # 409: the first request was still executing.
            return error

    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        results = list(pool.map(lambda _: create(), range(CONCURRENT_REQUESTS)))
    outcomes = []
    for result in results:
        if isinstance(result, str):
            outcomes.append(result)
            continue
        assert result.http_status == 409, result
        assert cast("dict[str, Any]", result.json_body)["error"]["type"] == "idempotency_error"
        outcomes.append("409")
    created = _customers_of(v1_server, account)
    assert len(created) == 1
    assert set(outcomes) <= {created[0], "409"}
    assert created[0] in outcomes
    replayed = account.test.v1.customers.create(params={"name": "once"}, options=options)
    assert replayed.id == created[0]


def test_a_takeover_never_deletes_a_result_that_is_committing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's claim looks abandoned to B (the timeout is made 0), but A has stored its result and
    is committing. B's DELETE waits for A's row; once A commits, B must replay A's result, not
    take the key over and run the effect a second time."""
    monkeypatch.setattr(_idempotency, "IDEMPOTENCY_CLAIM_TIMEOUT_NS", 0)
    engine = create_engine(postgres_url)
    committing, release = threading.Event(), threading.Event()

    def hold_a(connection: sa.Connection) -> None:
        if threading.current_thread().name == "A" and not committing.is_set():
            committing.set()
            assert release.wait(30)

    try:
        with begin_write(engine) as connection:
            tenant = create_tenant(connection, name="idem", journal_key=JOURNAL_KEY)
        scope = Partition(tenant_id=tenant, mode="test", platform_id=tenant)
        made: list[str] = []

        def effect(connection: sa.Connection) -> tuple[int, dict[str, Any]]:
            customer_id = f"cus_{threading.current_thread().name}"
            connection.execute(
                stripe_customers.insert().values(
                    id=customer_id, tenant_id=tenant, mode="test", created=1, metadata="{}"
                )
            )
            made.append(customer_id)
            if threading.current_thread().name == "A":
                # From here on, A's transaction holds its stored result until it commits.
                event.listen(connection, "commit", hold_a)
            return 200, {"id": customer_id}

        def run() -> Any:
            return run_idempotent(
                engine, scope, "k", method="POST", path="/v1/customers", params={}, effect=effect
            )

        answers: dict[str, Any] = {}

        def named(name: str) -> None:
            answers[name] = run()

        a = threading.Thread(target=named, args=("A",), name="A")
        a.start()
        assert committing.wait(30)
        b = threading.Thread(target=named, args=("B",), name="B")
        b.start()

        poll_until(lambda: waiting_on_a_lock(engine), deadline_s=30)
        release.set()
        a.join(30)
        b.join(30)
        assert made == ["cus_A"]  # The effect ran once.
        assert answers["B"].headers.get("idempotent-replayed") == "true"
        assert answers["B"].body == answers["A"].body
    finally:
        release.set()
        engine.dispose()
