"""The aggregate base: versions, pending events and the snapshot defaults (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventstore.aggregates import Aggregate
from eventstore.sample import Account, AccountOpened, MoneyDeposited


class Plain(Aggregate):
    """An aggregate that takes no snapshots."""

    stream_type = "plain"


def test_recorded_events_are_applied_counted_and_kept_until_saved() -> None:
    account = Account.open("acc-1", "ann")
    account.deposit(Decimal("5"))

    assert account.pending_events == (
        AccountOpened(owner="ann"),
        MoneyDeposited(amount=Decimal("5"), currency="EUR"),
    )
    assert (account.version, account.stored_version, account.balance) == (2, 0, Decimal("5"))

    account.mark_saved()

    assert account.pending_events == ()
    assert (account.version, account.stored_version) == (2, 2)


def test_replayed_events_count_as_stored() -> None:
    account = Account("acc-1")
    account.replay(AccountOpened(owner="ann"))
    account.replay(MoneyDeposited(amount=Decimal("2"), currency="EUR"))
    account.deposit(Decimal("3"))

    assert account.pending_events == (MoneyDeposited(amount=Decimal("3"), currency="EUR"),)
    assert (account.version, account.stored_version, account.balance) == (3, 2, Decimal("5"))


def test_an_aggregate_without_snapshots_refuses_to_take_or_load_one() -> None:
    with pytest.raises(NotImplementedError, match=r"^Plain does not take snapshots$"):
        Plain("p-1").snapshot_state()
    with pytest.raises(NotImplementedError, match=r"^Plain does not take snapshots$"):
        Plain.from_snapshot("p-1", 3, {})


def test_the_base_applies_no_event() -> None:
    with pytest.raises(NotImplementedError):
        Plain("p-1").replay(AccountOpened(owner="ann"))
