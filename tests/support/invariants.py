"""Assert, at the end of a test, that every registered invariant (backoffice.invariants) holds."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from backoffice.invariants import InvariantReport, invariants_check


def assert_invariants(
    *, allow_in_flight: bool = False, stock_baseline: Mapping[str, int] | None = None
) -> InvariantReport:
    """Fail the test with the checker's report if any invariant is broken; return the report."""
    report = invariants_check(allow_in_flight=allow_in_flight, stock_baseline=stock_baseline)
    if not report.ok:
        lines = "\n".join(f"  - {violation}" for violation in report.violations)
        pytest.fail(
            f"{len(report.violations)} invariant violation(s) ({report.summary()}):\n{lines}",
            pytrace=False,
        )
    return report
