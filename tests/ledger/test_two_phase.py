"""Two-phase transfers: pending holds, post (full or partial), void, timeouts and expiry.

Every scenario runs on a ``Harness``, which checks the ledger invariants after every operation.
"""

from __future__ import annotations

import pytest

from farthing.ledger import (
    EXPIRY_ID_PREFIX,
    TIMEOUT_S_MAX,
    Balances,
    CreateTransferResult,
    HoldState,
    TransferEvent,
    TransferFlags,
    create_transfers,
)
from tests.ledger.ledger_text import NS_PER_S, START_NS, Harness

_T = CreateTransferResult

BASE = """
account A USD
account B USD
account C USD
account L USD D<C limit=100
"""


def run(script: str) -> Harness:
    harness = Harness()
    harness.run(BASE + script)
    return harness


def test_a_pending_transfer_holds_without_posting() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending timeout=60 code=9 meta=order:1
        balances A 30 0 0 0
        balances B 0 0 30 0
        hold H1 pending
        """
    )
    stored = harness.ledger.transfers["H1"]
    assert stored.expires_at_ns == START_NS + 60 * NS_PER_S
    row = harness.ledger.new_transfers[-1]
    assert row.flags == TransferFlags.pending
    assert row.expires_at_ns == START_NS + 60 * NS_PER_S
    assert row.debit_balances == Balances(30, 0, 0, 0)
    assert row.credit_balances == Balances(0, 0, 30, 0)
    assert harness.ledger.new_holds == {"H1": HoldState.pending}


def test_post_in_full_fills_the_omitted_fields_from_the_hold() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending timeout=60 code=9
        post P1 H1
        balances A 0 30 0 0
        balances B 0 0 0 30
        hold H1 posted
        """
    )
    post = harness.ledger.transfers["P1"]
    assert (post.debit_account_id, post.credit_account_id, post.amount_minor) == ("A", "B", 30)
    assert post.pending_id == "H1"
    assert post.expires_at_ns is None
    assert post.code == 0  # a post carries its own code
    assert harness.ledger.new_transfers[-1].debit_balances == Balances(0, 30, 0, 0)


def test_post_with_every_field_given() -> None:
    run(
        """
        transfer H1 A B 30 pending
        post P1 H1 30 debit=A credit=B code=4 meta=k:v
        balances A 0 30 0 0
        """
    )


def test_a_partial_post_releases_the_remainder() -> None:
    harness = run(
        """
        transfer H1 L A 100 pending
        transfer T1 L A 1 -> exceeds_credits
        post P1 H1 40
        balances L 0 40 0 0
        balances A 0 0 0 40
        hold H1 posted
        transfer T2 L A 60                  # the released 60 is available again
        post P2 H1 1 -> pending_transfer_already_posted
        """
    )
    assert harness.ledger.transfers["P1"].amount_minor == 40


def test_void_releases_the_whole_hold() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending
        void V1 H1
        balances A 0 0 0 0
        balances B 0 0 0 0
        hold H1 voided
        void V1 H1 -> exists
        """
    )
    void = harness.ledger.transfers["V1"]
    assert void.amount_minor == 30
    assert void.flags == TransferFlags.void_pending
    harness.run("void V2 H1 30 debit=A credit=B -> pending_transfer_already_voided")


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        ("post", "post", _T.pending_transfer_already_posted),
        ("post", "void", _T.pending_transfer_already_posted),
        ("void", "post", _T.pending_transfer_already_voided),
        ("void", "void", _T.pending_transfer_already_voided),
    ],
)
def test_a_hold_resolves_once(first: str, second: str, code: CreateTransferResult) -> None:
    harness = run(
        f"""
        transfer H1 A B 30 pending
        {first} R1 H1
        {second} R2 H1 -> {code.value}
        """
    )
    # Not remembered: the outcome is permanent anyway.
    assert harness.ledger.failed == {}


def test_resolving_requires_a_pending_transfer() -> None:
    run(
        """
        transfer T1 A B 10
        transfer H1 A B 10 pending
        post P1 H1 5
        post P2 T1 -> pending_transfer_not_pending
        void V2 P1 -> pending_transfer_not_pending
        post P3 NOPE -> pending_transfer_not_found
        """
    )


def test_resolving_checks_the_hold_fields() -> None:
    run(
        """
        transfer H1 A B 30 pending
        post P1 H1 debit=B -> pending_transfer_has_different_debit_account_id
        post P1 H1 credit=A -> pending_transfer_has_different_credit_account_id
        post P1 H1 31 -> exceeds_pending_transfer_amount
        void P1 H1 29 -> pending_transfer_has_different_amount
        void P1 H1 31 -> pending_transfer_has_different_amount
        post P1 H1 debit=A credit=B
        hold H1 posted
        """
    )


def test_pending_and_resolution_in_one_batch() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending
        post P1 H1 10
        transfer H2 A C 5 pending
        void V2 H2
        """
    )
    assert [row.id for row in harness.ledger.new_transfers][-4:] == ["H1", "P1", "H2", "V2"]
    assert harness.balances("A") == Balances(0, 10, 0, 0)


# ---------------------------------------------------------------------------------------------
# Timeouts and expiry


def test_expiry_releases_the_hold_and_records_a_transfer() -> None:
    harness = run(
        """
        transfer H1 L A 80 pending timeout=10 code=7
        advance 9s
        expire -> 0
        advance 999999999ns
        expire -> 0
        advance 1ns
        expire -> 1
        expire -> 0
        hold H1 expired
        balances L 0 0 0 0
        balances A 0 0 0 0
        """
    )
    expiry = harness.ledger.transfers[EXPIRY_ID_PREFIX + "H1"]
    assert expiry.id == "expired:H1"
    assert expiry.flags == TransferFlags.expire_pending
    assert expiry.pending_id == "H1"
    assert (expiry.debit_account_id, expiry.credit_account_id) == ("L", "A")
    assert expiry.amount_minor == 80
    assert expiry.code == 7
    assert expiry.timeout_s == 0
    row = harness.ledger.new_transfers[-1]
    assert row.id == "expired:H1"
    assert row.ordinal == len(harness.ledger.new_transfers) - 1
    assert row.debit_balances == Balances(0, 0, 0, 0)
    assert harness.ledger.new_holds["H1"] == HoldState.expired
    assert {"L", "A"} <= harness.ledger.touched
    harness.run("transfer T1 L A 100")  # the allowance is free again


def test_resolving_an_expired_hold_fails_for_good() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending timeout=1
        advance 1s
        expire -> 1
        post P1 H1 -> pending_transfer_expired
        void V1 H1 -> pending_transfer_expired
        post P1 H1 -> id_already_failed
        transfer H1 A B 30 pending timeout=1 -> exists
        """
    )
    assert harness.ledger.failed == {
        "P1": _T.pending_transfer_expired,
        "V1": _T.pending_transfer_expired,
    }


def test_a_hold_without_timeout_never_expires() -> None:
    run(
        f"""
        transfer H1 A B 30 pending
        advance {TIMEOUT_S_MAX * 2}s
        expire -> 0
        post P1 H1
        """
    )


def test_a_resolved_hold_does_not_expire() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending timeout=5
        transfer H2 A B 30 pending timeout=5
        post P1 H1 10
        void V2 H2
        advance 10s
        expire -> 0
        """
    )
    assert "expired:H1" not in harness.ledger.transfers


def test_holds_expire_together_and_independently() -> None:
    harness = run(
        """
        transfer H1 A B 1 pending timeout=5
        transfer H2 A C 2 pending timeout=5
        transfer H3 C B 3 pending timeout=6
        transfer H4 A B 4 pending
        advance 5s
        expire -> 2
        balances A 4 0 0 0
        advance 1s
        expire -> 1
        hold H4 pending
        """
    )
    expired = [row.id for row in harness.ledger.new_transfers if row.id.startswith("expired:")]
    assert sorted(expired) == ["expired:H1", "expired:H2", "expired:H3"]


def test_timeout_bounds() -> None:
    harness = run(
        f"""
        transfer H1 A B 1 pending timeout={TIMEOUT_S_MAX}
        transfer H2 A B 1 pending timeout={TIMEOUT_S_MAX + 1} -> timeout_invalid
        transfer H3 A B 1 pending timeout=-1 -> timeout_invalid
        transfer T4 A B 1 timeout=1 -> timeout_reserved_for_pending_transfer
        post P5 H1 timeout=1 -> timeout_reserved_for_pending_transfer
        """
    )
    assert harness.ledger.transfers["H1"].expires_at_ns == START_NS + TIMEOUT_S_MAX * NS_PER_S


def test_the_timeout_counts_from_the_commit_that_created_the_hold() -> None:
    harness = run(
        """
        advance 100s
        transfer H1 A B 1 pending timeout=3
        """
    )
    assert harness.ledger.transfers["H1"].expires_at_ns == START_NS + 103 * NS_PER_S


def test_an_expiry_id_cannot_be_chosen_by_a_client() -> None:
    run(
        """
        transfer H1 A B 1 pending timeout=1
        advance 1s
        expire -> 1
        transfer expired:H1 A B 1 -> id_invalid
        post P1 expired:H1 -> pending_id_invalid
        """
    )


def test_the_expire_flag_is_internal() -> None:
    harness = run("")
    event = TransferEvent(
        id="T1",
        debit_account_id="A",
        credit_account_id="B",
        amount_minor=1,
        flags=TransferFlags.expire_pending,
    )
    with pytest.raises(AssertionError, match="expire_pending is internal"):
        create_transfers(harness.ledger, [event])


def test_a_pending_retry_after_expiry_still_exists() -> None:
    run(
        """
        transfer H1 A B 1 pending timeout=1 code=3
        advance 1s
        expire -> 1
        transfer H1 A B 1 pending timeout=1 code=3 -> exists
        transfer H1 A B 1 pending timeout=2 code=3 -> exists_with_different_timeout
        """
    )


def test_a_chain_resolving_an_expired_hold_fails() -> None:
    run(
        """
        transfer H1 A B 10 pending timeout=1
        transfer H2 A B 10 pending
        advance 1s
        expire -> 1
        void V2 H2 linked -> linked_event_failed
        post P1 H1 -> pending_transfer_expired
        hold H2 pending
        """
    )
