"""The native ledger API over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.http.conftest import Server, Tenant, assert_error, poll_until

V1 = "/ledger/v1"
ZERO = {"debits_pending": 0, "debits_posted": 0, "credits_pending": 0, "credits_posted": 0}


def create_accounts(client: httpx.Client, accounts: list[dict[str, Any]]) -> list[str]:
    response = client.post(f"{V1}/accounts", json={"accounts": accounts})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [a["id"] for a in accounts]
    return [r["result"] for r in results]


def create_transfers(client: httpx.Client, transfers: list[dict[str, Any]]) -> list[str]:
    response = client.post(f"{V1}/transfers", json={"transfers": transfers})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [t["id"] for t in transfers]
    return [r["result"] for r in results]


def usd_accounts(client: httpx.Client, *ids: str) -> None:
    assert create_accounts(client, [{"id": i, "currency": "USD"} for i in ids]) == ["ok"] * len(ids)


def transfer(
    transfer_id: str, debit: str, credit: str, amount: int, **extra: Any
) -> dict[str, Any]:
    return {
        "id": transfer_id,
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        **extra,
    }


def account(client: httpx.Client, account_id: str) -> dict[str, Any]:
    response = client.get(f"{V1}/accounts/{account_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def balances(client: httpx.Client, account_id: str) -> dict[str, int]:
    found: dict[str, int] = account(client, account_id)["balances"]
    return found


def get_transfer(client: httpx.Client, transfer_id: str) -> dict[str, Any]:
    response = client.get(f"{V1}/transfers/{transfer_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def balance_at(client: httpx.Client, account_id: str, at: int) -> dict[str, int]:
    response = client.get(f"{V1}/accounts/{account_id}/balance", params={"at": at})
    assert response.status_code == 200, response.text
    body: dict[str, int] = response.json()
    return body


def walk(client: httpx.Client, account_id: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page of an account's transfers, following next_cursor; (transfers, page count)."""
    seen: list[dict[str, Any]] = []
    pages = 0
    after: int | None = None
    while True:
        query = dict(params) | ({} if after is None else {"after": after})
        response = client.get(f"{V1}/accounts/{account_id}/transfers", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert pages <= 10_000, "pagination does not terminate"
        assert len(page["data"]) <= params.get("limit", 100)
        seen.extend(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None, page
            return seen, pages
        assert page["data"], "has_more with an empty page"
        assert page["next_cursor"] == page["data"][-1]["timestamp"], page
        after = page["next_cursor"]


# -------------------------------------------------------------------------------------------------
# Batches: one named result per event, in order


def test_batch_of_accounts_answers_one_result_per_event(tenant: Tenant) -> None:
    c = tenant.client
    results = create_accounts(
        c,
        [
            {"id": "cash", "currency": "USD", "code": 10, "metadata": {"k": "v"}},
            {"id": "bad id!", "currency": "USD"},
            {"id": "fx", "currency": "ZZZ"},
            {"id": "cash", "currency": "USD", "code": 10, "metadata": {"k": "v"}},
            {"id": "wallet", "currency": "USD", "limit": 5},
            {
                "id": "both",
                "currency": "USD",
                "flags": ["debits_must_not_exceed_credits", "credits_must_not_exceed_debits"],
            },
            {"id": "eur", "currency": "EUR", "flags": ["debits_must_not_exceed_credits"]},
        ],
    )
    assert results == [
        "ok",
        "id_invalid",
        "currency_invalid",
        "exists",
        "limit_requires_balance_flag",
        "flags_are_mutually_exclusive",
        "ok",
    ]
    cash = account(c, "cash")
    assert cash == {
        "id": "cash",
        "currency": "USD",
        "code": 10,
        "flags": [],
        "limit": 0,
        "metadata": {"k": "v"},
        "balances": ZERO,
        "timestamp": cash["timestamp"],
    }
    assert cash["timestamp"] > 0
    assert account(c, "eur")["flags"] == ["debits_must_not_exceed_credits"]
    assert account(c, "eur")["timestamp"] > cash["timestamp"]
    for missing in ("wallet", "both", "fx"):
        assert_error(c.get(f"{V1}/accounts/{missing}"), 404, type_="invalid_request_error")


def test_linked_accounts_fail_together(tenant: Tenant) -> None:
    c = tenant.client
    results = create_accounts(
        c,
        [
            {"id": "l1", "currency": "USD", "flags": ["linked"]},
            {"id": "l2", "currency": "NOPE"},
            {"id": "solo", "currency": "USD"},
            {"id": "open", "currency": "USD", "flags": ["linked"]},
        ],
    )
    assert results == ["linked_event_failed", "currency_invalid", "ok", "linked_event_chain_open"]
    found = c.post(f"{V1}/accounts/lookup", json={"ids": ["l1", "l2", "solo", "open"]}).json()
    assert [a["id"] for a in found] == ["solo"]


def test_batch_of_transfers_answers_one_result_per_event(tenant: Tenant) -> None:
    c = tenant.client
    usd_accounts(c, "a", "b", "c")
    assert create_accounts(
        c,
        [
            {"id": "guarded", "currency": "USD", "flags": ["debits_must_not_exceed_credits"]},
            {"id": "eur", "currency": "EUR"},
        ],
    ) == ["ok", "ok"]
    results = create_transfers(
        c,
        [
            transfer("t1", "a", "b", 100, code=7, metadata={"order": "42"}),
            transfer("t2", "a", "ghost", 1),
            transfer("t3", "a", "a", 1),
            transfer("t4", "a", "b", 0),
            transfer("t5", "guarded", "b", 1),
            transfer("t6", "a", "eur", 1),
            transfer("t7", "b", "c", 30, flags=["linked"]),
            transfer("t8", "c", "ghost", 30),
            transfer("t9", "b", "c", 25),
            transfer("t1", "a", "b", 100, code=7, metadata={"order": "42"}),
            {"id": "t10", "debit_account_id": "a", "credit_account_id": "b"},
            transfer("bad id", "a", "b", 1),
        ],
    )
    assert results == [
        "ok",
        "credit_account_not_found",
        "accounts_must_be_different",
        "amount_must_be_positive",
        "exceeds_credits",
        "accounts_must_have_the_same_currency",
        "linked_event_failed",
        "credit_account_not_found",
        "ok",
        "exists",
        "amount_required",
        "id_invalid",
    ]
    assert balances(c, "a") == ZERO | {"debits_posted": 100}
    assert balances(c, "b") == ZERO | {"credits_posted": 100, "debits_posted": 25}
    assert balances(c, "c") == ZERO | {"credits_posted": 25}
    assert balances(c, "guarded") == ZERO
    t1 = get_transfer(c, "t1")
    assert t1 == {
        "id": "t1",
        "debit_account_id": "a",
        "credit_account_id": "b",
        "amount": 100,
        "currency": "USD",
        "pending_id": None,
        "timeout": 0,
        "expires_at": None,
        "code": 7,
        "flags": [],
        "metadata": {"order": "42"},
        "timestamp": t1["timestamp"],
    }
    assert get_transfer(c, "t9")["timestamp"] > t1["timestamp"]
    for rolled_back in ("t2", "t5", "t7", "t8"):
        assert_error(c.get(f"{V1}/transfers/{rolled_back}"), 404, type_="invalid_request_error")


def test_two_phase_post_and_void(tenant: Tenant) -> None:
    c = tenant.client
    usd_accounts(c, "payer", "payee")
    assert create_transfers(
        c,
        [
            transfer("hold1", "payer", "payee", 100, flags=["pending"], timeout=3600),
            transfer("hold2", "payer", "payee", 40, flags=["pending"]),
        ],
    ) == ["ok", "ok"]
    assert balances(c, "payer") == ZERO | {"debits_pending": 140}
    assert balances(c, "payee") == ZERO | {"credits_pending": 140}
    hold1 = get_transfer(c, "hold1")
    assert hold1["flags"] == ["pending"]
    assert hold1["timeout"] == 3600
    # The hold expires an hour after its commit began (its timestamp is at or after that).
    assert hold1["timestamp"] < hold1["expires_at"] <= hold1["timestamp"] + 3600 * 10**9

    # Post part of hold1; void hold2 (accounts and amount may be omitted: taken from the hold).
    assert create_transfers(
        c,
        [
            {"id": "post1", "pending_id": "hold1", "amount": 60, "flags": ["post_pending"]},
            {"id": "void2", "pending_id": "hold2", "flags": ["void_pending"]},
        ],
    ) == ["ok", "ok"]
    assert balances(c, "payer") == ZERO | {"debits_posted": 60}
    assert balances(c, "payee") == ZERO | {"credits_posted": 60}
    post1 = get_transfer(c, "post1")
    assert post1["pending_id"] == "hold1"
    assert post1["flags"] == ["post_pending"]
    assert (post1["debit_account_id"], post1["credit_account_id"], post1["amount"]) == (
        "payer",
        "payee",
        60,
    )
    void2 = get_transfer(c, "void2")
    assert (void2["flags"], void2["amount"]) == (["void_pending"], 40)

    # A hold resolves once; replays of the resolutions are idempotent.
    assert create_transfers(
        c,
        [
            {"id": "post1b", "pending_id": "hold1", "flags": ["post_pending"]},
            {"id": "void1", "pending_id": "hold1", "flags": ["void_pending"]},
            {"id": "post2", "pending_id": "hold2", "flags": ["post_pending"]},
            {"id": "post1", "pending_id": "hold1", "amount": 60, "flags": ["post_pending"]},
            {"id": "postx", "pending_id": "nothing", "flags": ["post_pending"]},
            {"id": "posty", "pending_id": "post1", "flags": ["post_pending"]},
        ],
    ) == [
        "pending_transfer_already_posted",
        "pending_transfer_already_posted",
        "pending_transfer_already_voided",
        "exists",
        "pending_transfer_not_found",
        "pending_transfer_not_pending",
    ]
    assert balances(c, "payer") == ZERO | {"debits_posted": 60}


def test_pending_transfer_expires_on_the_running_server(tenant: Tenant) -> None:
    c = tenant.client
    usd_accounts(c, "from", "to")
    assert create_transfers(
        c, [transfer("brief", "from", "to", 9, flags=["pending"], timeout=1)]
    ) == ["ok"]
    assert balances(c, "from") == ZERO | {"debits_pending": 9}
    # Nobody writes to this ledger: the server's idle sweep must release the hold on its own.
    poll_until(lambda: balances(c, "from") == ZERO, deadline_s=15)
    assert balances(c, "to") == ZERO
    expiry = get_transfer(c, "expired:brief")
    assert expiry["flags"] == ["expire_pending"]
    assert (expiry["pending_id"], expiry["amount"]) == ("brief", 9)
    assert create_transfers(
        c, [{"id": "late", "pending_id": "brief", "flags": ["post_pending"]}]
    ) == ["pending_transfer_expired"]


# -------------------------------------------------------------------------------------------------
# Look-ups and 404s


def test_lookups_return_existing_ids_in_the_order_asked(tenant: Tenant) -> None:
    c = tenant.client
    usd_accounts(c, "a", "b", "c")
    assert create_transfers(c, [transfer("x", "a", "b", 1), transfer("y", "b", "c", 2)]) == [
        "ok",
        "ok",
    ]
    found = c.post(f"{V1}/accounts/lookup", json={"ids": ["c", "missing", "a", "c"]})
    assert found.status_code == 200, found.text
    assert [a["id"] for a in found.json()] == ["c", "a"]
    assert found.json()[0] == account(c, "c")
    found = c.post(f"{V1}/transfers/lookup", json={"ids": ["y", "nope", "x", "y", "a"]})
    assert found.status_code == 200, found.text
    assert [t["id"] for t in found.json()] == ["y", "x"]
    assert found.json()[1] == get_transfer(c, "x")
    assert c.post(f"{V1}/transfers/lookup", json={"ids": ["none"]}).json() == []
    assert_error(
        c.post(f"{V1}/accounts/lookup", json={"ids": []}), 400, type_="invalid_request_error"
    )
    too_many = {"ids": [f"i{n}" for n in range(1001)]}
    assert_error(
        c.post(f"{V1}/transfers/lookup", json=too_many), 400, type_="invalid_request_error"
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/accounts/nope", None),
        ("GET", "/transfers/nope", None),
        ("GET", "/accounts/nope/transfers", None),
        ("GET", "/accounts/nope/balance?at=1", None),
        ("POST", "/accounts/nope/limit", {"limit": 1}),
    ],
)
def test_unknown_ids_are_404_in_the_error_format(
    tenant: Tenant, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = tenant.client.request(method, V1 + path, json=body)
    error = assert_error(response, 404, type_="invalid_request_error", code="resource_missing")
    assert error["param"] == "id"
    assert "nope" in error["message"]


# -------------------------------------------------------------------------------------------------
# Listing an account's transfers


@pytest.fixture
def busy(tenant: Tenant) -> tuple[Tenant, list[dict[str, Any]]]:
    """Account `hub` with 45 transfers on both sides over 4 commits, among unrelated ones."""
    c = tenant.client
    usd_accounts(c, "hub", "x", "y")
    expected: list[str] = []
    for batch in range(4):
        events = []
        for n in range(15):
            name = f"b{batch}n{n}"
            if n % 3 == 0:
                events.append(transfer(name, "x", "y", 1))  # Not hub's.
                continue
            events.append(transfer(name, "hub", "x", n) if n % 2 else transfer(name, "y", "hub", n))
            expected.append(name)
        assert create_transfers(c, events) == ["ok"] * len(events)
    assert len(expected) == 40
    # Five more in one commit of their own, then the pending/post pair (two more rows).
    assert (
        create_transfers(c, [transfer(f"late{n}", "hub", "y", 1) for n in range(5)]) == ["ok"] * 5
    )
    assert create_transfers(c, [transfer("h", "x", "hub", 3, flags=["pending"])]) == ["ok"]
    assert create_transfers(c, [{"id": "p", "pending_id": "h", "flags": ["post_pending"]}]) == [
        "ok"
    ]
    ids = [*expected, *(f"late{n}" for n in range(5)), "h", "p"]
    found = c.post(f"{V1}/transfers/lookup", json={"ids": ids}).json()
    assert [t["id"] for t in found] == ids
    return tenant, sorted(found, key=lambda t: t["timestamp"])


@pytest.mark.parametrize("limit", [1, 7, 47])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_cursor_pagination_visits_every_transfer_exactly_once(
    busy: tuple[Tenant, list[dict[str, Any]]], limit: int, order: str
) -> None:
    tenant, expected = busy
    assert len(expected) == 47
    seen, pages = walk(tenant.client, "hub", limit=limit, order=order)
    ids = [t["id"] for t in seen]
    assert len(ids) == len(set(ids)), "a transfer appeared twice"
    wanted = expected if order == "asc" else expected[::-1]
    assert ids == [t["id"] for t in wanted]
    assert seen == wanted
    assert pages == max(1, -(-47 // limit))
    stamps = [t["timestamp"] for t in seen]
    assert stamps == sorted(stamps, reverse=order == "desc")


def test_cursor_pagination_of_an_account_without_transfers(tenant: Tenant) -> None:
    usd_accounts(tenant.client, "quiet")
    for order in ("asc", "desc"):
        assert walk(tenant.client, "quiet", limit=1, order=order) == ([], 1)


def test_time_range_filters(busy: tuple[Tenant, list[dict[str, Any]]]) -> None:
    tenant, expected = busy
    stamps = [t["timestamp"] for t in expected]
    ids = [t["id"] for t in expected]
    lo, hi = stamps[10], stamps[30]

    def listed(**params: Any) -> list[str]:
        seen, _ = walk(tenant.client, "hub", **params)
        return [t["id"] for t in seen]

    # since is inclusive, until exclusive, and both combine with the cursor.
    assert listed(since=lo) == ids[10:]
    assert listed(until=hi) == ids[:30]
    assert listed(since=lo, until=hi) == ids[10:30]
    assert listed(since=lo, until=hi, limit=3) == ids[10:30]
    assert listed(since=lo, until=hi, limit=3, order="desc") == ids[10:30][::-1]
    assert listed(since=lo + 1, until=hi + 1) == ids[11:31]
    assert listed(since=hi, until=lo) == []
    assert listed(since=stamps[-1] + 1) == []
    assert listed(until=stamps[0]) == []
    assert listed(since=stamps[5], until=stamps[5] + 1) == [ids[5]]
    assert listed(since=0, until=2**63 - 1) == ids


def test_list_query_parameters_are_validated(tenant: Tenant) -> None:
    usd_accounts(tenant.client, "acc")
    path = f"{V1}/accounts/acc/transfers"
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"order": "sideways"},
        {"since": -1},
        {"after": "soon"},
        {"until": 2**63},
    ):
        error = assert_error(
            tenant.client.get(path, params=params), 400, type_="invalid_request_error"
        )
        assert error["param"] == next(iter(params))


# -------------------------------------------------------------------------------------------------
# Balances at a past moment


def test_balance_at_past_moments(tenant: Tenant) -> None:
    c = tenant.client
    usd_accounts(c, "me", "other")
    created = account(c, "me")["timestamp"]
    assert create_transfers(c, [transfer("t1", "me", "other", 100)]) == ["ok"]
    assert create_transfers(
        c, [transfer("t2", "other", "me", 30), transfer("t3", "me", "other", 7, flags=["pending"])]
    ) == ["ok", "ok"]
    assert create_transfers(c, [{"id": "t4", "pending_id": "t3", "flags": ["void_pending"]}]) == [
        "ok"
    ]
    assert create_transfers(c, [transfer("t5", "other", "me", 1)]) == ["ok"]
    ts = {name: get_transfer(c, name)["timestamp"] for name in ("t1", "t2", "t3", "t4", "t5")}
    assert created < ts["t1"] < ts["t2"] < ts["t3"] < ts["t4"] < ts["t5"]

    after = {
        "t1": ZERO | {"debits_posted": 100},
        "t2": ZERO | {"debits_posted": 100, "credits_posted": 30},
        "t3": ZERO | {"debits_posted": 100, "credits_posted": 30, "debits_pending": 7},
        "t4": ZERO | {"debits_posted": 100, "credits_posted": 30},
        "t5": ZERO | {"debits_posted": 100, "credits_posted": 31},
    }
    assert balance_at(c, "me", 0) == ZERO
    assert balance_at(c, "me", created) == ZERO
    assert balance_at(c, "me", ts["t1"] - 1) == ZERO
    previous = ZERO
    for name, expected in after.items():
        assert balance_at(c, "me", ts[name] - 1) == previous, name
        assert balance_at(c, "me", ts[name]) == expected, name
        previous = expected
    assert balance_at(c, "me", 2**63 - 1) == balances(c, "me") == after["t5"]
    # The counterparty's history is its own: mirror image.
    assert balance_at(c, "other", ts["t3"]) == ZERO | {
        "credits_posted": 100,
        "debits_posted": 30,
        "credits_pending": 7,
    }
    assert_error(
        c.get(f"{V1}/accounts/me/balance"), 400, type_="invalid_request_error"
    )  # `at` is required.


# -------------------------------------------------------------------------------------------------
# Overdraft limit changes


def test_limit_change_endpoint(tenant: Tenant) -> None:
    c = tenant.client
    assert create_accounts(
        c,
        [
            {"id": "wallet", "currency": "USD", "flags": ["debits_must_not_exceed_credits"]},
            {"id": "plain", "currency": "USD"},
        ],
    ) == ["ok", "ok"]

    def set_limit(account_id: str, limit: Any) -> httpx.Response:
        return c.post(f"{V1}/accounts/{account_id}/limit", json={"limit": limit})

    assert create_transfers(c, [transfer("early", "wallet", "plain", 300)]) == ["exceeds_credits"]
    response = set_limit("wallet", 500)
    assert (response.status_code, response.json()) == (200, {"result": "ok"})
    assert account(c, "wallet")["limit"] == 500
    # The failed id stays failed (a retry never changes an outcome); a new id passes now.
    assert create_transfers(
        c, [transfer("early", "wallet", "plain", 300), transfer("now", "wallet", "plain", 300)]
    ) == ["id_already_failed", "ok"]
    assert create_transfers(c, [transfer("over", "wallet", "plain", 201)]) == ["exceeds_credits"]
    assert set_limit("wallet", 299).json() == {"result": "limit_below_usage"}
    assert set_limit("plain", 10).json() == {"result": "limit_requires_balance_flag"}
    assert set_limit("wallet", -1).json() == {"result": "limit_invalid"}
    assert account(c, "wallet")["limit"] == 500
    assert set_limit("wallet", 300).json() == {"result": "ok"}
    assert account(c, "wallet")["limit"] == 300
    assert create_transfers(c, [transfer("over2", "wallet", "plain", 1)]) == ["exceeds_credits"]
    # Same value again is accepted (idempotent).
    assert set_limit("wallet", 300).json() == {"result": "ok"}
    for bad in (1.0, "300", None, True):
        assert_error(set_limit("wallet", bad), 400, type_="invalid_request_error")
    assert account(c, "wallet")["limit"] == 300
    # The account's creation record keeps its initial limit: an identical replay is `exists`.
    assert create_accounts(
        c, [{"id": "wallet", "currency": "USD", "flags": ["debits_must_not_exceed_credits"]}]
    ) == ["exists"]


# -------------------------------------------------------------------------------------------------
# Idempotent replays


def test_replays_are_idempotent(tenant: Tenant) -> None:
    c = tenant.client
    accounts: list[dict[str, Any]] = [
        {"id": "a", "currency": "USD", "metadata": {"n": "1"}},
        {"id": "b", "currency": "USD"},
    ]
    assert create_accounts(c, accounts) == ["ok", "ok"]
    assert create_accounts(c, accounts) == ["exists", "exists"]
    assert create_accounts(
        c,
        [
            {"id": "a", "currency": "EUR", "metadata": {"n": "1"}},
            {"id": "a", "currency": "USD", "metadata": {"n": "2"}},
            {"id": "a", "currency": "USD", "code": 1, "metadata": {"n": "1"}},
        ],
    ) == [
        "exists_with_different_currency",
        "exists_with_different_metadata",
        "exists_with_different_code",
    ]

    batch = [transfer("p1", "a", "b", 10), transfer("p2", "b", "a", 3, flags=["pending"])]
    assert create_transfers(c, batch) == ["ok", "ok"]
    snapshot = (balances(c, "a"), balances(c, "b"), get_transfer(c, "p1"), get_transfer(c, "p2"))
    for _ in range(3):
        assert create_transfers(c, batch) == ["exists", "exists"]
    assert (balances(c, "a"), balances(c, "b"), get_transfer(c, "p1"), get_transfer(c, "p2")) == (
        snapshot
    )
    assert create_transfers(
        c,
        [
            transfer("p1", "a", "b", 11),
            transfer("p1", "b", "a", 10),
            transfer("p1", "a", "b", 10, code=2),
            transfer("p1", "a", "b", 10, flags=["pending"]),
        ],
    ) == [
        "exists_with_different_amount",
        "exists_with_different_debit_account_id",
        "exists_with_different_code",
        "exists_with_different_flags",
    ]
    # A failed transfer replays as failed, even once it could succeed.
    assert create_transfers(c, [transfer("f1", "a", "later", 1)]) == ["credit_account_not_found"]
    usd_accounts(c, "later")
    assert create_transfers(c, [transfer("f1", "a", "later", 1)]) == ["id_already_failed"]
    assert balances(c, "later") == ZERO


def test_concurrent_replays_apply_once(server: Server, tenant: Tenant) -> None:
    """16 clients send the same transfer at once: exactly one `ok`, the others `exists`."""
    usd_accounts(tenant.client, "src", "dst")
    event = {"transfers": [transfer("same", "src", "dst", 5)]}
    clients = [server.client(tenant.test_secret) for _ in range(16)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            responses = list(pool.map(lambda cl: cl.post(f"{V1}/transfers", json=event), clients))
    finally:
        for client in clients:
            client.close()
    results = sorted(r.json()["results"][0]["result"] for r in responses)
    assert results == ["exists"] * 15 + ["ok"]
    assert balances(tenant.client, "src") == ZERO | {"debits_posted": 5}
    assert walk(tenant.client, "src")[0] == [get_transfer(tenant.client, "same")]
