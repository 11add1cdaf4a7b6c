"""Check, after any run, that nothing was lost or done twice: what ``check_invariants`` reports.

Each app contributes the checks over its own tables the way Django's system checks are
contributed: a function in the app's ``invariants`` module, registered with
``@invariant("<area>")``. The back office imports every installed app's ``invariants`` module
when it starts (as the admin finds each ``admin.py``), and :func:`invariants_check` runs every
registered check, in the order of ``INSTALLED_APPS``, over one :class:`InvariantReport`.

A check reads PostgreSQL only (the truth: saga rows, events, payments, reservations), adds
what it finds wrong with :meth:`InvariantReport.violation` and what it looked at with
:meth:`InvariantReport.count`; an empty list of violations is a clean bill.

This module imports no app of the project, so the generic apps can contribute checks too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules


@dataclass(frozen=True)
class Violation:
    """Name one broken invariant: its kind, what it is about, and what is wrong."""

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.subject}: {self.detail}"


@dataclass(frozen=True)
class InvariantOptions:
    """Say how strict a run is.

    ``allow_in_flight`` accepts sagas still moving (a check during a run); ``stock_baseline``
    maps SKUs to the on-hand stock they had before any order reserved them (without it
    on-hand stock is not checked); ``now`` is the instant deadlines are measured against.
    """

    now: datetime
    allow_in_flight: bool = False
    stock_baseline: Mapping[str, int] | None = None


@dataclass
class InvariantReport:
    """Count what was checked and list every violation found."""

    counts: dict[str, Counter[str] | int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether no invariant is broken."""
        return not self.violations

    def violation(self, kind: str, subject: str, detail: str) -> None:
        """Record one broken invariant."""
        self.violations.append(Violation(kind, subject, detail))

    def count(self, what: str, seen: int | Iterable[str]) -> None:
        """Record how many of ``what`` were checked: a number, or values counted by kind."""
        self.counts[what] = seen if isinstance(seen, int) else Counter(seen)

    def by_kind(self, what: str) -> Counter[str]:
        """Return how many of ``what`` were checked, by kind (empty if counted as a number)."""
        seen = self.counts.get(what)
        return seen if isinstance(seen, Counter) else Counter()

    def kinds(self) -> set[str]:
        """Return the kinds of the violations found."""
        return {v.kind for v in self.violations}

    def summary(self) -> str:
        """Describe what was checked in one line."""
        parts = []
        for what, seen in self.counts.items():
            if isinstance(seen, int):
                parts.append(f"{what}: {seen}")
            else:
                by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(seen.items()))
                parts.append(f"{what}: {by_kind or 'none'}")
        return "; ".join(parts)


InvariantCheck = Callable[[InvariantReport, InvariantOptions], None]

_checks: list[tuple[str, InvariantCheck]] = []


def invariant(area: str) -> Callable[[InvariantCheck], InvariantCheck]:
    """Register the decorated function as a check of ``area`` (an app's name)."""

    def register(check: InvariantCheck) -> InvariantCheck:
        if (area, check) not in _checks:
            _checks.append((area, check))
        return check

    return register


def discover() -> None:
    """Import every installed app's ``invariants`` module, registering its checks."""
    autodiscover_modules("invariants")


def registered_checks() -> list[tuple[str, InvariantCheck]]:
    """Return every registered (area, check), in the order of ``INSTALLED_APPS``."""
    order = {config.name: index for index, config in enumerate(apps.get_app_configs())}
    return sorted(_checks, key=lambda entry: order.get(entry[0], len(order)))


def invariants_check(
    *,
    allow_in_flight: bool = False,
    stock_baseline: Mapping[str, int] | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> InvariantReport:
    """Run every registered check over the whole database and report each violation found.

    ``progress(done, total, name)`` is called before each check (``name``: its area and
    function) and once at the end with ``done == total``.
    """
    options = InvariantOptions(
        now=now or timezone.now(),
        allow_in_flight=allow_in_flight,
        stock_baseline=stock_baseline,
    )
    report = InvariantReport()
    checks = registered_checks()
    for done, (area, check) in enumerate(checks):
        if progress is not None:
            progress(done, len(checks), f"{area}: {check.__name__.strip('_')}")
        check(report, options)
    if progress is not None:
        progress(len(checks), len(checks), "done")
    return report
