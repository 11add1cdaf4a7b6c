"""The repository's rules, each on its own, against the in-memory store (no database).

What a refusal names, which id and version a loaded aggregate carries, the store's fast
read path, when a snapshot is taken and that it commits with its events, and how
``execute`` retries and gives up.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Self
from uuid import uuid4

import pytest

from eventstore.errors import ConcurrencyError, StreamNotFound, VersionNotFound
from eventstore.memory import InMemoryEventStore
from eventstore.records import EventMetadata, StoredSnapshot
from eventstore.repository import Repository
from eventstore.sample import Account, registry

META = EventMetadata(correlation_id="c", causation_id="k", actor="user:1")


class PayloadStore(InMemoryEventStore):
    """Offer ``read_stream_payloads`` as the PostgreSQL store does, and say which read ran."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def read_stream(self, **kwargs: Any) -> Any:
        self.reads.append("read_stream")
        return super().read_stream(**kwargs)

    def read_stream_payloads(
        self,
        *,
        stream_type: str,
        stream_id: str,
        after_version: int = 0,
        to_version: int | None = None,
    ) -> list[tuple[int, str, int, dict[str, Any]]]:
        self.reads.append("payloads")
        events = InMemoryEventStore.read_stream(
            self,
            stream_type=stream_type,
            stream_id=stream_id,
            after_version=after_version,
            to_version=to_version,
        )
        return [(e.version, e.event_type, e.schema_version, e.data) for e in events]


class SnapshotRefused(Exception):
    pass


class SnapshotRefusingStore(InMemoryEventStore):
    """Fail every snapshot write, as a database error would."""

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        raise SnapshotRefused(snapshot.version)


class VersionedAccount(Account):
    """Remember the version each rebuild from a snapshot was told."""

    told: ClassVar[list[int]] = []

    @classmethod
    def from_snapshot(cls, aggregate_id: str, version: int, state: dict[str, Any]) -> Self:
        cls.told.append(version)
        return super().from_snapshot(aggregate_id, version, state)


class Unsnapshotted(Account):
    # Account narrows the base's ``int | None`` to int; an aggregate may still say None.
    snapshot_every = None  # type: ignore[assignment]


class SnapshotEveryZero(Account):
    snapshot_every = 0


class SnapshotEveryOne(Account):
    snapshot_every = 1


def account_with_deposits(repo: Repository[Any], deposits: int) -> str:
    account = repo.aggregate_type.open(str(uuid4()), "ann")
    for _ in range(deposits):
        account.deposit(Decimal("1.50"))
    repo.save(account, metadata=META)
    return str(account.id)


def snapshot_versions(store: InMemoryEventStore, stream_id: str, upto: int) -> list[int]:
    found = set()
    for version in range(1, upto + 1):
        snapshot = store.latest_snapshot(
            stream_type="account", stream_id=stream_id, schema_version=1, max_version=version
        )
        if snapshot is not None:
            found.add(snapshot.version)
    return sorted(found)


@pytest.fixture
def repo() -> Repository[Account]:
    return Repository(Account, store=InMemoryEventStore(), registry=registry)


# --- refusals -----------------------------------------------------------------------------------


def test_a_version_below_one_is_refused_naming_stream_and_version(
    repo: Repository[Account],
) -> None:
    aid = account_with_deposits(repo, 2)

    with pytest.raises(VersionNotFound) as caught:
        repo.load(aid, version=0)

    err = caught.value
    assert (err.stream_type, err.stream_id, err.version, err.current) == ("account", aid, 0, 0)


def test_a_version_past_the_stream_is_refused_naming_stream_version_and_current(
    repo: Repository[Account],
) -> None:
    aid = account_with_deposits(repo, 2)

    with pytest.raises(VersionNotFound) as caught:
        repo.load(aid, version=4)

    err = caught.value
    assert (err.stream_type, err.stream_id, err.version, err.current) == ("account", aid, 4, 3)


def test_a_stream_with_no_events_is_refused_naming_it(repo: Repository[Account]) -> None:
    aid = str(uuid4())

    with pytest.raises(StreamNotFound) as caught:
        repo.load(aid)

    assert (caught.value.stream_type, caught.value.stream_id) == ("account", aid)


def test_a_stream_of_one_event_loads(repo: Repository[Account]) -> None:
    aid = account_with_deposits(repo, 0)

    account = repo.load(aid, version=1)

    assert (account.id, account.version, account.owner) == (aid, 1, "ann")


# --- loading ------------------------------------------------------------------------------------


def test_an_aggregate_loaded_from_a_snapshot_has_its_id_and_the_snapshots_version() -> None:
    VersionedAccount.told.clear()
    repo = Repository(VersionedAccount, store=InMemoryEventStore(), registry=registry)
    aid = account_with_deposits(repo, 6)  # v7, one batch: a snapshot at 7

    account = repo.load(aid)

    assert VersionedAccount.told == [7]
    assert (account.id, account.version, account.replayed) == (aid, 7, 0)


def test_a_store_that_reads_payloads_is_read_through_them() -> None:
    store = PayloadStore()
    repo = Repository(Account, store=store, registry=registry)
    aid = account_with_deposits(repo, 6)  # v7, a snapshot at 7
    account = repo.load(aid)
    account.deposit(Decimal("2"))
    repo.save(account, metadata=META)  # v8
    store.reads.clear()

    latest = repo.load(aid)  # the snapshot at 7, then event 8
    at_three = repo.load(aid, version=3)  # no usable snapshot: events 1 to 3

    assert store.reads == ["payloads", "payloads"]
    assert (latest.version, latest.replayed, latest.balance) == (8, 1, Decimal("11.00"))
    assert (at_three.version, at_three.replayed, at_three.balance) == (3, 3, Decimal("3.00"))
    assert (latest.id, latest.owner) == (aid, "ann")


# --- saving -------------------------------------------------------------------------------------


def test_saving_nothing_new_writes_nothing(repo: Repository[Account]) -> None:
    aid = account_with_deposits(repo, 1)
    account = repo.load(aid)

    assert repo.save(account, metadata=META) == []
    assert repo.store.stream_version(stream_type="account", stream_id=aid) == 2


def test_save_returns_the_events_it_recorded(repo: Repository[Account]) -> None:
    account = Account.open(str(uuid4()), "ann")
    account.deposit(Decimal("1"))

    recorded = repo.save(account, metadata=META)

    stored = repo.store.read_stream(stream_type="account", stream_id=account.id)
    assert recorded == stored
    assert [(e.event_type, e.schema_version) for e in recorded] == [
        ("AccountOpened", 1),
        ("MoneyDeposited", 2),
    ]
    assert account.pending_events == () and account.stored_version == 2


def test_an_aggregate_without_snapshots_is_saved_without_one() -> None:
    for kind in (Unsnapshotted, SnapshotEveryZero):
        store = InMemoryEventStore()
        repo = Repository(kind, store=store, registry=registry)

        aid = account_with_deposits(repo, 11)

        assert repo.load(aid).replayed == 12
        assert snapshot_versions(store, aid, 12) == []


def test_a_snapshot_every_event_is_taken_at_each_save() -> None:
    store = InMemoryEventStore()
    repo = Repository(SnapshotEveryOne, store=store, registry=registry)
    aid = account_with_deposits(repo, 0)
    for _ in range(2):
        account = repo.load(aid)
        account.deposit(Decimal("1"))
        repo.save(account, metadata=META)

    assert snapshot_versions(store, aid, 3) == [1, 2, 3]


def test_a_snapshot_is_taken_when_a_save_crosses_a_multiple_of_snapshot_every(
    repo: Repository[Account],
) -> None:
    store = repo.store
    assert isinstance(store, InMemoryEventStore)
    aid = account_with_deposits(repo, 2)  # v3
    for batch in (1, 3, 1, 2, 4):  # v4, v7 (crosses 5), v8, v10 (reaches 10), v14
        account = repo.load(aid)
        for _ in range(batch):
            account.deposit(Decimal("1"))
        repo.save(account, metadata=META)

    assert snapshot_versions(store, aid, 14) == [7, 10]


def test_the_events_and_their_snapshot_commit_together() -> None:
    store = SnapshotRefusingStore()
    repo = Repository(Account, store=store, registry=registry)
    aid = account_with_deposits(repo, 2)  # v3: no snapshot due
    account = repo.load(aid)
    account.deposit(Decimal("1"))
    account.deposit(Decimal("1"))  # v5: a snapshot is due

    with pytest.raises(SnapshotRefused):
        repo.save(account, metadata=META)

    assert store.stream_version(stream_type="account", stream_id=aid) == 3
    assert account.stored_version == 3  # still pending: the caller may try again


# --- execute ------------------------------------------------------------------------------------


class DepositAfterARival:
    """Deposit 1, letting a rival deposit 10 and save first on the first ``rivals`` runs."""

    def __init__(self, repo: Repository[Account], aid: str, *, rivals: int) -> None:
        self.repo, self.aid, self.rivals = repo, aid, rivals
        self.runs: list[int] = []

    def __call__(self, account: Account) -> int:
        self.runs.append(account.version)
        if len(self.runs) <= self.rivals:
            rival = self.repo.load(self.aid)
            rival.deposit(Decimal("10"))
            self.repo.save(rival, metadata=META)
        account.deposit(Decimal("1"))
        return len(self.runs)


def test_execute_returns_the_aggregate_the_commands_outcome_and_what_it_recorded(
    repo: Repository[Account],
) -> None:
    aid = account_with_deposits(repo, 0)

    def deposit_two(account: Account) -> str:
        account.deposit(Decimal("2"))
        return "done"

    account, outcome, recorded = repo.execute(aid, deposit_two, metadata=META)

    assert (account.id, account.version, account.balance) == (aid, 2, Decimal("2"))
    assert outcome == "done"
    assert recorded == repo.store.read_stream(stream_type="account", stream_id=aid)[1:]
    assert recorded[0].metadata == META.as_dict()


def test_execute_runs_the_command_again_on_the_fresh_state_after_a_conflict(
    repo: Repository[Account],
) -> None:
    aid = account_with_deposits(repo, 0)
    command = DepositAfterARival(repo, aid, rivals=1)

    account, outcome, recorded = repo.execute(aid, command, metadata=META)

    assert command.runs == [1, 2]
    assert outcome == 2
    assert (account.version, account.balance) == (3, Decimal("11"))
    assert [e.version for e in recorded] == [3]


def test_execute_gives_up_after_five_conflicts_by_default(repo: Repository[Account]) -> None:
    aid = account_with_deposits(repo, 0)
    command = DepositAfterARival(repo, aid, rivals=99)

    with pytest.raises(ConcurrencyError):
        repo.execute(aid, command, metadata=META)

    assert command.runs == [1, 2, 3, 4, 5]


def test_execute_tries_as_often_as_asked(repo: Repository[Account]) -> None:
    aid = account_with_deposits(repo, 0)
    command = DepositAfterARival(repo, aid, rivals=99)

    with pytest.raises(ConcurrencyError):
        repo.execute(aid, command, metadata=META, attempts=2)
    assert command.runs == [1, 2]

    once = DepositAfterARival(repo, aid, rivals=1)
    with pytest.raises(ConcurrencyError):
        repo.execute(aid, once, metadata=META, attempts=1)
    assert once.runs == [3]
