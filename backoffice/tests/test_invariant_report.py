"""The invariant checker's frame (backoffice/invariants.py), apart from any rule: no database.

How a report records violations and counts and sums them up, how checks register, in which
order they run and what each is handed. The rules themselves (each app's ``invariants``
module) read PostgreSQL; tests/invariants/test_each_rule_fires.py shows each one firing.
Each test here swaps the registered checks for its own, so no rule runs.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
from django.apps import apps

from backoffice import invariants
from backoffice.invariants import (
    InvariantCheck,
    InvariantOptions,
    InvariantReport,
    Violation,
    discover,
    invariant,
    invariants_check,
    registered_checks,
)

WHEN = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, InvariantCheck]]:
    """Start each test with no check registered; the real ones come back after it."""
    fresh: list[tuple[str, InvariantCheck]] = []
    monkeypatch.setattr(invariants, "_checks", fresh)
    return fresh


# --- the report ---------------------------------------------------------------------------------


def test_a_violation_is_recorded_with_its_kind_subject_and_detail() -> None:
    report = InvariantReport()

    report.violation("money", "order 7", "2 charge(s)")

    assert report.violations == [Violation("money", "order 7", "2 charge(s)")]
    assert str(report.violations[0]) == "[money] order 7: 2 charge(s)"
    assert report.kinds() == {"money"} and not report.ok


def test_a_count_is_a_number_or_values_counted_by_kind() -> None:
    report = InvariantReport()

    report.count("events", 12)
    report.count("orders", ["PENDING", "CONFIRMED", "PENDING"])

    assert report.counts == {"events": 12, "orders": Counter(PENDING=2, CONFIRMED=1)}
    assert report.by_kind("orders") == Counter(PENDING=2, CONFIRMED=1)
    assert report.by_kind("events") == Counter()
    assert report.by_kind("never counted") == Counter()


def test_the_summary_lists_each_count_in_one_line() -> None:
    report = InvariantReport()
    report.count("orders", ["PENDING", "CONFIRMED", "PENDING"])
    report.count("events", 12)
    report.count("sagas", [])

    assert report.summary() == "orders: 1 CONFIRMED, 2 PENDING; events: 12; sagas: none"
    assert report.ok and InvariantReport().summary() == ""


# --- registering and running checks -------------------------------------------------------------


def test_a_check_registered_twice_runs_once(checks: list[tuple[str, InvariantCheck]]) -> None:
    def check(report: InvariantReport, options: InvariantOptions) -> None:
        report.violation("x", "y", "z")

    assert invariant("orders")(check) is check
    invariant("orders")(check)

    assert checks == [("orders", check)]
    assert invariants_check(now=WHEN).violations == [Violation("x", "y", "z")]


def test_checks_run_in_the_order_of_installed_apps_unknown_areas_last(
    checks: list[tuple[str, InvariantCheck]],
) -> None:
    ran: list[str] = []

    def check_of(area: str) -> InvariantCheck:
        def check(report: InvariantReport, options: InvariantOptions) -> None:
            ran.append(area)

        return invariant(area)(check)

    for area in ("orders", "not an app", "eventstore", "payments", "sagas"):
        check_of(area)

    installed = [config.name for config in apps.get_app_configs()]
    assert installed.index("eventstore") < installed.index("sagas") < installed.index("orders")
    assert [area for area, _ in registered_checks()] == [
        "eventstore",
        "sagas",
        "payments",
        "orders",
        "not an app",
    ]
    invariants_check(now=WHEN)
    assert ran == ["eventstore", "sagas", "payments", "orders", "not an app"]


def test_every_check_adds_to_one_report_with_the_options_asked_for(
    checks: list[tuple[str, InvariantCheck]],
) -> None:
    seen: list[InvariantOptions] = []

    @invariant("sagas")
    def first(report: InvariantReport, options: InvariantOptions) -> None:
        seen.append(options)
        report.violation("saga", "one", "first")
        report.count("sagas", 1)

    @invariant("orders")
    def second(report: InvariantReport, options: InvariantOptions) -> None:
        seen.append(options)
        report.violation("order", "two", "second")

    report = invariants_check(allow_in_flight=True, stock_baseline={"SKU-1": 5}, now=WHEN)

    assert [v.detail for v in report.violations] == ["first", "second"]
    assert report.counts == {"sagas": 1}
    asked = InvariantOptions(now=WHEN, allow_in_flight=True, stock_baseline={"SKU-1": 5})
    assert seen == [asked, asked]
    assert seen[0] is seen[1]


def test_a_run_is_strict_and_measured_against_now_unless_asked_otherwise(
    checks: list[tuple[str, InvariantCheck]],
) -> None:
    seen: list[InvariantOptions] = []
    invariant("orders")(lambda report, options: seen.append(options))
    before = datetime.now(UTC)

    invariants_check()

    (options,) = seen
    assert options.allow_in_flight is False and options.stock_baseline is None
    assert before <= options.now <= datetime.now(UTC)


def test_discover_registers_the_checks_of_each_apps_invariants_module(
    checks: list[tuple[str, InvariantCheck]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Imported already at start-up: forget the modules so that discovering imports them again.
    for app in ("eventstore", "sagas", "inventory", "payments", "orders"):
        monkeypatch.setattr(sys.modules[app], "invariants", sys.modules[f"{app}.invariants"])
        monkeypatch.delitem(sys.modules, f"{app}.invariants")

    discover()

    assert {area for area, _ in checks} == {
        "eventstore",
        "sagas",
        "inventory",
        "payments",
        "orders",
    }
