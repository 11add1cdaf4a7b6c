"""A small aggregate for the event store's tests and benchmark: a ledger account."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from eventstore.aggregates import Aggregate
from eventstore.registry import DomainEvent, EventRegistry

registry = EventRegistry()


@registry.event("AccountOpened")
@dataclass(frozen=True)
class AccountOpened(DomainEvent):
    owner: str


@registry.event("MoneyDeposited", version=2)
@dataclass(frozen=True)
class MoneyDeposited(DomainEvent):
    amount: Decimal
    currency: str


@registry.upcaster("MoneyDeposited", from_version=1)
def _deposit_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 stored amounts in cents and had no currency.
    return {"amount": str(Decimal(data["cents"]) / 100), "currency": "EUR"}


class AccountClosedError(Exception):
    pass


class Account(Aggregate):
    stream_type = "account"
    snapshot_every = 5
    snapshot_schema = 1

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.owner = ""
        self.balance = Decimal("0")
        self.replayed = 0

    @classmethod
    def open(cls, aggregate_id: str, owner: str) -> Account:
        account = cls(aggregate_id)
        account._record(AccountOpened(owner=owner))
        return account

    def deposit(self, amount: Decimal) -> None:
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self._record(MoneyDeposited(amount=amount, currency="EUR"))

    def apply(self, event: DomainEvent) -> None:
        self.replayed += 1
        match event:
            case AccountOpened(owner=owner):
                self.owner = owner
            case MoneyDeposited(amount=amount):
                self.balance += amount
            case _:
                raise TypeError(f"unexpected event {event!r}")

    def snapshot_state(self) -> dict[str, Any]:
        return {"owner": self.owner, "balance": str(self.balance)}

    @classmethod
    def from_snapshot(cls, aggregate_id: str, version: int, state: dict[str, Any]) -> Self:
        account = cls(aggregate_id)
        account.owner = state["owner"]
        account.balance = Decimal(state["balance"])
        return account
