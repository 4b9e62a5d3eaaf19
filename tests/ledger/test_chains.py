"""Linked chains: a chain of events succeeds or fails as one.

Every scenario runs on a ``Harness``, which checks the ledger invariants after every operation.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farthing.ledger import (
    AccountEvent,
    AccountFlags,
    Balances,
    CreateAccountResult,
    CreateTransferResult,
    HoldState,
    TransferEvent,
    TransferFlags,
)
from tests.ledger.ledger_text import (
    RANDOM_SETUP,
    Harness,
    apply_operation,
    random_operation,
    random_transfer,
)

_A = CreateAccountResult
_T = CreateTransferResult

BASE = """
account A USD
account B USD
account C USD
account E EUR
account L USD D<C limit=100
"""


def run(script: str) -> Harness:
    harness = Harness()
    harness.run(BASE + script)
    return harness


def test_a_chain_commits_every_event() -> None:
    harness = run(
        """
        transfer T1 A B 10 linked
        transfer T2 B C 10 linked
        transfer T3 C A 5
        balances A 0 10 0 5
        balances B 0 10 0 10
        balances C 0 5 0 10
        """
    )
    assert [row.id for row in harness.ledger.new_transfers] == ["T1", "T2", "T3"]


def test_a_failing_event_undoes_its_chain_and_keeps_its_code() -> None:
    harness = run(
        """
        transfer T0 A B 1
        """
    )
    before = harness.state()
    harness.run(
        """
        transfer T1 A B 10 linked -> linked_event_failed
        transfer T2 B C 10 linked -> linked_event_failed
        transfer T3 C E 5 linked -> accounts_must_have_the_same_currency
        transfer T4 A B 5 -> linked_event_failed
        absent T1 T2 T3 T4
        """
    )
    assert harness.state() == before


def test_events_after_the_culprit_are_not_evaluated() -> None:
    """They answer linked_event_failed, even when invalid, and their ids stay unused."""
    harness = run(
        """
        transfer T1 A Z 10 linked -> credit_account_not_found
        transfer bad!id A B 0 linked -> linked_event_failed
        transfer T3 Z A 10 -> linked_event_failed
        """
    )
    assert harness.ledger.failed == {"T1": _T.credit_account_not_found}
    harness.run(
        """
        account Z USD
        transfer T3 Z A 10
        transfer T1 A Z 10 -> id_already_failed
        """
    )


def test_the_ok_events_of_a_failed_chain_may_be_retried() -> None:
    run(
        """
        transfer T1 A B 10 linked -> linked_event_failed
        transfer T2 L A 101 -> exceeds_credits

        transfer T1 A B 10
        transfer T2 L A 101 -> id_already_failed
        """
    )


def test_rollback_restores_balances_holds_and_transfers() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending
        transfer H2 A C 20 pending
        transfer H3 L A 50 pending
        """
    )
    before = harness.state()
    harness.run(
        """
        post P1 H1 10 linked -> linked_event_failed         # posts part, releases the rest
        void V2 H2 linked -> linked_event_failed            # releases H2
        transfer H4 A B 7 pending linked -> linked_event_failed  # a new hold
        post P4 H4 linked -> linked_event_failed            # and its post
        transfer T5 L A 50 linked -> linked_event_failed    # L reaches its limit
        transfer T6 L A 1 -> exceeds_credits
        hold H1 pending
        hold H2 pending
        absent P1 V2 H4 P4 T5 T6
        balances A 50 0 50 0
        balances L 50 0 0 0
        """
    )
    assert harness.state() == before
    assert "H4" not in harness.ledger.holds
    assert "H4" not in harness.ledger.new_holds
    assert harness.ledger.new_holds == {
        "H1": HoldState.pending,
        "H2": HoldState.pending,
        "H3": HoldState.pending,
    }


def test_a_chain_can_post_a_hold_it_created() -> None:
    harness = run(
        """
        transfer H1 A B 30 pending linked
        post P1 H1 20 linked
        transfer T2 B C 20
        hold H1 posted
        balances B 0 20 0 20
        """
    )
    assert [row.id for row in harness.ledger.new_transfers] == ["H1", "P1", "T2"]


def test_an_event_sees_the_earlier_events_of_its_chain() -> None:
    run(
        """
        account S USD D<C
        transfer T1 A S 40 linked      # funds S first
        transfer T2 S B 40             # then spends it
        balances S 0 40 0 40

        transfer T3 S B 1 linked -> exceeds_credits
        transfer T4 A S 1 -> linked_event_failed   # funding after the spend is too late
        """
    )


def test_chains_in_one_batch_are_independent() -> None:
    run(
        """
        transfer T1 A B 1 linked -> linked_event_failed
        transfer T2 A Z 1 -> credit_account_not_found
        transfer T3 A B 2
        transfer T4 A B 3 linked
        transfer T5 A B 4
        transfer T6 A Z 1 linked -> credit_account_not_found
        transfer T7 A B 5 -> linked_event_failed
        balances A 0 9 0 0
        absent T1 T2 T6 T7
        """
    )


def test_a_chain_left_open_fails_without_being_applied() -> None:
    harness = run(
        """
        transfer T1 A B 1
        transfer T2 A B 2 linked
        transfer T3 A B 3
        transfer T4 A Z 4 linked -> linked_event_failed
        transfer bad!id A B 5 linked -> linked_event_failed
        transfer T6 A B 6 linked -> linked_event_chain_open
        absent T4 T6
        balances A 0 6 0 0
        """
    )
    # The open chain was never evaluated: T4's transient failure is not remembered.
    assert harness.ledger.failed == {}


def test_a_single_linked_event_is_an_open_chain() -> None:
    harness = run("")
    (result,) = harness.transfers(
        [
            TransferEvent(
                id="bad!id",
                debit_account_id="A",
                credit_account_id="A",
                amount_minor=0,
                flags=TransferFlags.linked,
            )
        ]
    )
    # linked_event_chain_open precedes every other code, even those of the event's shape.
    assert result == _T.linked_event_chain_open
    (account,) = harness.accounts(
        [AccountEvent(id="bad!id", currency="usd", flags=AccountFlags.linked)]
    )
    assert account == _A.linked_event_chain_open


def test_linked_event_failed_precedes_the_shape_of_later_events() -> None:
    """An event after the culprit answers linked_event_failed, not its own (earlier) code."""
    harness = run("")
    results = harness.transfers(
        [
            TransferEvent(
                id="T1",
                debit_account_id="A",
                credit_account_id="Z",
                amount_minor=1,
                flags=TransferFlags.linked,
            ),
            TransferEvent(id="bad!id", flags=TransferFlags.pending | TransferFlags.post_pending),
        ]
    )
    assert results == [_T.credit_account_not_found, _T.linked_event_failed]


def test_a_retried_committed_chain_answers_exists_for_every_event() -> None:
    chain = """
        transfer T1 A B 10 linked
        transfer H2 B C 10 pending linked
        post P2 H2 4 linked
        transfer T3 C A 1
    """
    harness = run(chain)
    before = harness.state()
    harness.run(
        """
        transfer T1 A B 10 linked -> exists
        transfer H2 B C 10 pending linked -> exists
        post P2 H2 4 linked -> exists
        transfer T3 C A 1 -> exists
        """
    )
    assert harness.state() == before
    # The same events retried alone, or chained differently, answer exists too.
    harness.run(
        """
        transfer T1 A B 10 -> exists
        transfer H2 B C 10 pending -> exists

        post P2 H2 4 linked -> exists
        transfer T1 A B 10 -> exists
        """
    )
    assert harness.state() == before


def test_a_chain_mixing_committed_and_new_events_fails() -> None:
    """The first existing event keeps exists; the new events are undone."""
    harness = run("transfer T1 A B 10")
    before = harness.state()
    harness.run(
        """
        transfer T1 A B 10 linked -> exists
        transfer T2 A B 20 -> linked_event_failed

        transfer T3 A B 30 linked -> linked_event_failed
        transfer T1 A B 10 linked -> exists
        transfer T4 A B 40 -> linked_event_failed

        transfer T5 A B 50 linked -> linked_event_failed
        transfer T6 A Z 1 linked -> credit_account_not_found
        transfer T1 A B 10 -> linked_event_failed
        absent T2 T3 T4 T5 T6
        """
    )
    assert harness.state() == before


def test_the_first_existing_event_of_a_mixed_chain_answers() -> None:
    harness = run(
        """
        transfer T1 A B 10
        transfer T2 A B 20
        """
    )
    harness.run(
        """
        transfer T3 A B 30 linked -> linked_event_failed
        transfer T1 A B 10 linked -> exists
        transfer T2 A B 20 linked -> linked_event_failed
        transfer T4 A B 40 -> linked_event_failed
        """
    )
    assert harness.balances("A") == Balances(0, 30, 0, 0)


def test_a_retried_chain_with_a_changed_event_fails() -> None:
    harness = run(
        """
        transfer T1 A B 10 linked
        transfer T2 A B 20
        """
    )
    harness.run(
        """
        transfer T1 A B 10 linked -> linked_event_failed
        transfer T2 A B 21 -> exists_with_different_amount
        """
    )
    assert harness.balances("A") == Balances(0, 30, 0, 0)


def test_a_duplicate_id_inside_a_chain_answers_exists_for_an_undone_event() -> None:
    """TigerBeetle's behaviour: the duplicate meets the first event, then the chain is undone.

    The answer ``exists`` then names an event that was not committed; a client must read a chain
    answer as a whole (it failed: another event answers linked_event_failed).
    """
    harness = run(
        """
        transfer T1 A B 10 linked -> linked_event_failed
        transfer T1 A B 10 -> exists
        absent T1
        """
    )
    harness.run("transfer T1 A B 10")
    assert harness.balances("A") == Balances(0, 10, 0, 0)


# ---------------------------------------------------------------------------------------------
# Account chains


def test_an_account_chain_is_all_or_nothing() -> None:
    harness = run(
        """
        account N1 USD linked -> linked_event_failed
        account N2 EUR linked -> linked_event_failed
        account N3 usd -> currency_invalid
        absent N1 N2 N3

        account N1 USD linked
        account N2 EUR
        """
    )
    assert [account.id for account in harness.ledger.new_accounts][-2:] == ["N1", "N2"]


def test_an_account_chain_undoes_its_new_accounts_only() -> None:
    harness = run("account N1 USD")
    harness.run(
        """
        account N1 USD linked -> exists
        account N2 USD linked -> linked_event_failed
        account N3 USD -> linked_event_failed
        absent N2 N3

        account N4 USD linked -> linked_event_failed
        account N1 EUR -> exists_with_different_currency
        absent N4
        """
    )
    assert "N1" in harness.ledger.accounts


def test_a_retried_account_chain_answers_exists() -> None:
    chain = """
        account N1 USD linked
        account N2 USD D<C limit=5 linked
        account N3 EUR
    """
    harness = run(chain)
    harness.run(
        """
        account N1 USD linked -> exists
        account N2 USD D<C limit=5 linked -> exists
        account N3 EUR -> exists
        """
    )


def test_an_open_account_chain_creates_nothing() -> None:
    run(
        """
        account N1 USD
        account N2 USD linked -> linked_event_failed
        account N3 USD linked -> linked_event_chain_open
        absent N2 N3
        """
    )


# ---------------------------------------------------------------------------------------------
# Properties


def chain_spans(linked: list[bool]) -> list[tuple[int, int]]:
    """(first, last) index of every chain, an unlinked event being a chain of one."""
    spans: list[tuple[int, int]] = []
    start = 0
    for index, is_linked in enumerate(linked):
        if not is_linked or index == len(linked) - 1:
            spans.append((start, index))
            start = index + 1
    return spans


@pytest.mark.parametrize(
    ("linked", "spans"),
    [
        ([], []),
        ([False], [(0, 0)]),
        ([True], [(0, 0)]),
        ([True, False, False], [(0, 1), (2, 2)]),
        ([False, True, True], [(0, 0), (1, 2)]),
    ],
)
def test_chain_spans(linked: list[bool], spans: list[tuple[int, int]]) -> None:
    assert chain_spans(linked) == spans


def check_chain_answers(linked: list[bool], results: list[CreateTransferResult]) -> None:
    """Every chain answers all ok, all exists, or one culprit and linked_event_failed."""
    for start, end in chain_spans(linked):
        answers = results[start : end + 1]
        if linked[end]:
            assert answers == [_T.linked_event_failed] * (end - start) + [
                _T.linked_event_chain_open
            ]
            continue
        if set(answers) <= {_T.ok} or set(answers) == {_T.exists}:
            continue
        culprits = [answer for answer in answers if answer != _T.linked_event_failed]
        assert len(culprits) == 1 or end == start, answers
        assert culprits[0] != _T.ok, answers


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(random_operation(), max_size=8),
    st.lists(random_transfer(), min_size=1, max_size=8),
)
def test_a_batch_commits_exactly_its_ok_events(
    history: list[tuple[str, object]], batch: list[TransferEvent]
) -> None:
    """Applying a batch equals applying only its ok events, unlinked, in order."""
    harness = Harness()
    harness.run(RANDOM_SETUP)
    for operation in history:
        apply_operation(harness, operation)
    replay = harness.clone()
    results = harness.transfers(batch)
    check_chain_answers([bool(event.flags & TransferFlags.linked) for event in batch], results)
    committed = [
        replace(event, flags=event.flags & ~TransferFlags.linked)
        for event, result in zip(batch, results, strict=True)
        if result == _T.ok
    ]
    assert replay.transfers(committed) == [_T.ok] * len(committed)
    assert replay.state() == harness.state()
    assert replay.ledger.new_transfers == harness.ledger.new_transfers
