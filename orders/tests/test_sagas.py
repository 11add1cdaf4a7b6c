"""The order sagas' definitions, driven through the engine's pure decisions (no database)."""

from __future__ import annotations

import pytest

from orders.sagas import CANCEL_ORDER_SAGA, PLACE_ORDER_SAGA
from sagas.engine import (
    BusinessFailure,
    Cursor,
    Outcome,
    SagaState,
    Schedule,
    TimedOut,
    TransientFailure,
    decide,
)
from sagas.statuses import Phase, SagaStatus

A, C = Phase.ACTION, Phase.COMPENSATION
SPENT = 1_000  # far more attempts than any policy allows: a plain step would give up


def _after_spent_attempts(definition_step: str, outcome: Outcome, saga: str = "cancel"):
    definition = CANCEL_ORDER_SAGA if saga == "cancel" else PLACE_ORDER_SAGA
    index = definition.index(definition_step)
    state = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(index, A), attempt=SPENT)
    return definition, index, decide(definition, state, outcome, rand=0.5)


@pytest.mark.parametrize("step", ["restock_items", "mark_cancelled"])
@pytest.mark.parametrize(
    "outcome",
    [TransientFailure("database is down"), BusinessFailure("injected_fault", "permanent")],
)
def test_after_the_refund_a_cancel_saga_retries_instead_of_compensating(
    step: str, outcome: Outcome
) -> None:
    # Money went back already: ending here would leave a refunded CONFIRMED order.
    definition, index, transition = _after_spent_attempts(step, outcome)

    assert transition.saga_status is SagaStatus.RUNNING
    assert transition.next == Schedule(
        Cursor(index, A), delay=definition.steps[index].retry.max_delay
    )


@pytest.mark.parametrize("outcome", [TransientFailure("gateway timeout"), TimedOut("slow")])
def test_a_refund_of_unknown_outcome_is_retried_until_the_gateway_answers(
    outcome: Outcome,
) -> None:
    _, index, transition = _after_spent_attempts("refund_payment", outcome)

    assert transition.saga_status is SagaStatus.RUNNING
    assert transition.next is not None and transition.next.cursor == Cursor(index, A)


def test_a_refused_refund_ends_the_cancel_saga_with_nothing_changed() -> None:
    _, _, transition = _after_spent_attempts(
        "refund_payment", BusinessFailure("refund_rejected", "card closed")
    )

    # Nothing before the refund has a compensation: the saga ends, the order untouched.
    assert transition.saga_status is SagaStatus.COMPENSATED
    assert transition.next is None


def test_a_charge_that_kept_timing_out_is_refunded_before_the_stock_is_released() -> None:
    # The charge may have gone through before the timeouts: refund it, then release, cancel.
    definition, index, transition = _after_spent_attempts(
        "charge_payment", TimedOut("gateway did not answer"), saga="place"
    )

    assert transition.saga_status is SagaStatus.COMPENSATING
    assert transition.next == Schedule(Cursor(index, C))
    assert definition.steps[index].compensation is not None


def test_a_declined_charge_releases_the_stock_without_a_refund() -> None:
    definition, _, transition = _after_spent_attempts(
        "charge_payment", BusinessFailure("payment_declined", "declined"), saga="place"
    )

    assert transition.next == Schedule(Cursor(definition.index("reserve_inventory"), C))
