"""The repository: load by replay, as of a version, from snapshots; save; reload and retry.

Runs on the in-memory store (no database) except where the stored bytes matter.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import connection

from eventstore.errors import ConcurrencyError, StreamNotFound, UpcastError, VersionNotFound
from eventstore.memory import InMemoryEventStore
from eventstore.postgres import PostgresEventStore
from eventstore.records import EventMetadata, NewEvent
from eventstore.repository import Repository
from eventstore.sample import Account, AccountOpened, MoneyDeposited, registry

META = EventMetadata(correlation_id="c", causation_id="k", actor="user:1")


@pytest.fixture
def repo() -> Repository[Account]:
    return Repository(Account, store=InMemoryEventStore(), registry=registry)


def opened_with_deposits(repo: Repository[Account], deposits: int) -> str:
    account = Account.open(str(uuid4()), "ann")
    for _ in range(deposits):
        account.deposit(Decimal("1.50"))
    repo.save(account, metadata=META)
    return account.id


def test_save_then_load_rebuilds_state_from_events(repo: Repository[Account]) -> None:
    aid = opened_with_deposits(repo, 2)

    account = repo.load(aid)

    assert (account.owner, account.balance, account.version) == ("ann", Decimal("3.00"), 3)
    stored = repo.store.read_stream(stream_type="account", stream_id=aid)
    assert [e.event_type for e in stored] == ["AccountOpened", "MoneyDeposited", "MoneyDeposited"]
    assert stored[1].data == {"amount": "1.50", "currency": "EUR"}
    assert stored[1].schema_version == 2
    assert stored[0].metadata == {"correlation_id": "c", "causation_id": "k", "actor": "user:1"}


def test_load_as_of_a_version(repo: Repository[Account]) -> None:
    aid = opened_with_deposits(repo, 3)

    assert repo.load(aid, version=1).balance == Decimal("0")
    assert repo.load(aid, version=3).balance == Decimal("3.00")
    with pytest.raises(VersionNotFound) as caught:
        repo.load(aid, version=9)
    assert caught.value.current == 4
    with pytest.raises(VersionNotFound):
        repo.load(aid, version=0)


def test_unknown_stream_is_not_found(repo: Repository[Account]) -> None:
    with pytest.raises(StreamNotFound):
        repo.load(str(uuid4()))


def test_save_expects_the_loaded_version(repo: Repository[Account]) -> None:
    aid = opened_with_deposits(repo, 0)
    first, second = repo.load(aid), repo.load(aid)
    first.deposit(Decimal("5"))
    repo.save(first, metadata=META)
    second.deposit(Decimal("7"))

    with pytest.raises(ConcurrencyError) as caught:
        repo.save(second, metadata=META)

    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert repo.load(aid).balance == Decimal("5")


@pytest.mark.django_db(transaction=True)
def test_execute_reloads_and_reapplies_the_command_after_a_conflict() -> None:
    repo = Repository(Account, store=PostgresEventStore(), registry=registry)
    aid = opened_with_deposits(repo, 0)
    calls = []

    def save_elsewhere() -> None:
        try:
            other = repo.load(aid)
            other.deposit(Decimal("10"))
            repo.save(other, metadata=META)
        finally:
            connection.close()

    def deposit_racing_once(account: Account) -> None:
        calls.append(account.version)
        if len(calls) == 1:
            # Another connection commits between our load and our save.
            racer = threading.Thread(target=save_elsewhere)
            racer.start()
            racer.join(timeout=30)
        account.deposit(Decimal("1"))

    account, _, recorded = repo.execute(aid, deposit_racing_once, metadata=META)

    assert calls == [1, 2]
    assert account.balance == Decimal("11")
    assert [e.version for e in recorded] == [3]
    assert repo.load(aid).balance == Decimal("11")


def test_snapshot_every_n_events_and_loading_starts_from_it(repo: Repository[Account]) -> None:
    aid = opened_with_deposits(repo, 11)  # versions 1..12 saved in one batch: snapshot at 12

    account = repo.load(aid)

    assert account.version == 12 and account.balance == Decimal("16.50")
    assert account.replayed == 0  # state came from the snapshot; no event replayed

    account.deposit(Decimal("1"))
    account.deposit(Decimal("1"))
    repo.save(account, metadata=META)
    again = repo.load(aid)
    assert again.replayed == 2 and again.balance == Decimal("18.50")


def test_load_as_of_a_version_uses_an_older_snapshot_only(repo: Repository[Account]) -> None:
    aid = opened_with_deposits(repo, 3)  # v4, below the first snapshot boundary
    account = repo.load(aid)
    for _ in range(8):
        account.deposit(Decimal("1"))
        repo.save(account, metadata=META)  # one save per event: snapshots at v5 and v10

    at_seven = repo.load(aid, version=7)

    assert at_seven.version == 7 and at_seven.replayed == 2
    assert at_seven.balance == Decimal("4.50") + Decimal("3")


def test_snapshot_of_another_schema_is_ignored(repo: Repository[Account]) -> None:
    aid = opened_with_deposits(repo, 11)

    class AccountV2(Account):
        snapshot_schema = 2

    v2_repo = Repository(AccountV2, store=repo.store, registry=registry)
    account = v2_repo.load(aid)

    assert account.replayed == 12  # every event replayed: the v1 snapshot was not trusted
    assert account.balance == Decimal("16.50")


@pytest.mark.django_db(transaction=True)
def test_stored_old_schema_event_is_upcast_on_read() -> None:
    store = PostgresEventStore()
    aid = str(uuid4())
    store.append(
        stream_type="account",
        stream_id=aid,
        expected_version=0,
        events=[
            NewEvent(event_type="AccountOpened", data={"owner": "bob"}),
            # Written by an older release: cents, no currency, schema 1.
            NewEvent(event_type="MoneyDeposited", data={"cents": 1234}, schema_version=1),
        ],
    )
    repo = Repository(Account, store=store, registry=registry)

    account = repo.load(aid)

    assert account.balance == Decimal("12.34")
    stored = store.read_stream(stream_type="account", stream_id=aid)
    assert stored[1].data == {"cents": 1234}  # the stored event is untouched
    event = registry.decode(stored[1].event_type, stored[1].schema_version, stored[1].data)
    assert event == MoneyDeposited(amount=Decimal("12.34"), currency="EUR")


def test_event_newer_than_the_code_is_refused() -> None:
    with pytest.raises(UpcastError, match="newer than this code"):
        registry.decode("MoneyDeposited", 3, {"amount": "1"})


def test_events_encode_money_as_strings() -> None:
    name, version, data = registry.to_stored(MoneyDeposited(amount=Decimal("2.10"), currency="EUR"))
    assert (name, version, data) == ("MoneyDeposited", 2, {"amount": "2.10", "currency": "EUR"})
    assert registry.decode(name, version, data) == MoneyDeposited(
        amount=Decimal("2.10"), currency="EUR"
    )
    assert registry.to_stored(AccountOpened(owner="x"))[0] == "AccountOpened"
