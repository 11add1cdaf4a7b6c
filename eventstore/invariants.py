"""The event store's invariants (``check_invariants``): contiguous streams, exact projections."""

from __future__ import annotations

from backoffice.invariants import InvariantOptions, InvariantReport, invariant
from eventstore.verify import event_store_verify


@invariant("eventstore")
def check_event_store(report: InvariantReport, options: InvariantOptions) -> None:
    """Check every stream's versions are contiguous and every projection equals a replay."""
    verification = event_store_verify()
    report.count("streams", verification.streams)
    report.count("events", verification.events)
    for problem in verification.problems:
        report.violation("event_store", "event store", problem)
