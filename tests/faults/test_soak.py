"""The short soak (CI): orders under every kind of scheduled fault, then the invariant checker.

``make soak`` runs the full one (a few hundred orders); this is the same run, smaller:
``SOAK_ORDERS`` orders (40 by default) while the whole worker is killed, Redis is killed
with and without persistence, PostgreSQL crashes, and a compensation fails until an
operator retries it, and the order read model is rebuilt while orders flow; the charges that
lose their answer must end refunded, and no saga may compensate at its confirmation. The figures are
printed (``-s`` shows them).
"""

from __future__ import annotations

import os

import pytest

from soak.run import SoakConfig, soak_run

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_short_soak_loses_no_order_and_breaks_no_invariant() -> None:
    config = SoakConfig(
        orders=int(os.environ.get("SOAK_ORDERS") or 40),
        faults=("worker_kill", "redis_aof", "postgres", "redis_volatile"),
    )

    result = soak_run(config, say=print)

    print("\n".join(["", *result.lines()]))
    assert result.unsettled == 0
    assert result.violations == 0, result.invariants_output
    assert [f.kind for f in result.faults] == list(config.faults)
    assert result.waited_for_operator >= 1
    assert result.operator_retries == result.waited_for_operator
    assert result.order_statuses["CONFIRMED"] > 0
    assert {"payment_declined", "out_of_stock"} <= set(result.cancellation_reasons)
    assert result.orders == config.orders
    # Charges whose every answer was lost were found at the processor and paid back.
    assert result.lost_answers >= 1
    assert result.lost_answers_refunded == result.lost_answers
    # The read model was rebuilt while orders flowed, and no confirmation timed out for it.
    assert result.rebuilds == 1
    assert result.rebuild_summary.startswith("orders: rebuilt from ")
    assert result.rebuild_summary.endswith(", 0 removed")
    assert result.compensated_at_confirm == 0
