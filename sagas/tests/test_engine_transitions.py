"""Every branch of the engine's decisions, compared whole: no database, no broker.

test_engine.py drives sagas through the decisions and checks where they end; here each
decision's whole answer is the expected value, field by field: what the saga row, the step
row and the attempt log receive, which error text an operator reads, which failure the saga
keeps and what the next message is. The error texts are compared exactly because they are
what the admin shows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sagas.definitions import Failure, RetryPolicy, SagaDefinition, Step, StepCall
from sagas.engine import (
    EARLY_TOLERANCE,
    BusinessFailure,
    Claim,
    Claimant,
    ClaimDecision,
    ClaimView,
    Cursor,
    GiveUp,
    Ignore,
    Outcome,
    Poisoned,
    SagaState,
    Schedule,
    Succeeded,
    TimedOut,
    TransientFailure,
    Transition,
    claimed_step_status,
    decide,
    decide_claim,
    decide_operator_retry,
    decide_operator_skip,
)
from sagas.errors import SagaStateConflict
from sagas.statuses import AttemptStatus, Phase, SagaStatus, StepStatus

A = Phase.ACTION
C = Phase.COMPENSATION
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
FORWARD = "(retrying until it succeeds: compensating is no longer possible)"


def noop(call: StepCall) -> None:
    return None


# Actions and compensations get different policies, so a decision that read the wrong one
# would schedule another delay.
ACTION_RETRY = RetryPolicy(
    max_attempts=2, initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0
)
UNDO_RETRY = RetryPolicy(max_attempts=3, initial_delay=2.0, multiplier=3.0, max_delay=9.0, jitter=0)

# a and b undo themselves; c is the point of no return (only failures of unknown outcome
# retry forever); d comes after it (nothing compensates).
DEFINITION = SagaDefinition(
    name="transitions",
    steps=(
        Step(
            name="a",
            action=noop,
            compensation=noop,
            retry=ACTION_RETRY,
            compensation_retry=UNDO_RETRY,
        ),
        Step(
            name="b",
            action=noop,
            compensation=noop,
            retry=ACTION_RETRY,
            compensation_retry=UNDO_RETRY,
        ),
        Step(name="c", action=noop, retry=ACTION_RETRY, forward="transient"),
        Step(name="d", action=noop, retry=ACTION_RETRY, forward="always"),
    ),
)

#: The failure a compensating saga carries: every decision while compensating keeps it.
EARLIER = Failure(step="c", code="payment_declined", message="card refused")


def running(index: int, attempt: int) -> SagaState:
    return SagaState(status=SagaStatus.RUNNING, cursor=Cursor(index, A), attempt=attempt)


def compensating(index: int, attempt: int) -> SagaState:
    return SagaState(
        status=SagaStatus.COMPENSATING, cursor=Cursor(index, C), attempt=attempt, failure=EARLIER
    )


def gave_up(error: str, attempts: int) -> str:
    return f"{error} (gave up after {attempts} attempts)"


CASES: list[tuple[str, SagaState, Outcome, Transition]] = [
    (
        "an action succeeds: the next action follows, its result merged",
        running(1, 1),
        Succeeded({"reserved": 2}),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.SUCCEEDED,
            attempt_status=AttemptStatus.SUCCEEDED,
            error="",
            next=Schedule(Cursor(2, A)),
            failure=None,
            merge={"reserved": 2},
        ),
    ),
    (
        "the last action succeeds: the saga completes",
        running(3, 1),
        Succeeded(),
        Transition(
            saga_status=SagaStatus.COMPLETED,
            step_status=StepStatus.SUCCEEDED,
            attempt_status=AttemptStatus.SUCCEEDED,
            error="",
            next=None,
            failure=None,
        ),
    ),
    (
        "a compensation succeeds: the one before follows, its result merged",
        compensating(1, 1),
        Succeeded({"released": True}),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.COMPENSATED,
            attempt_status=AttemptStatus.SUCCEEDED,
            error="",
            next=Schedule(Cursor(0, C)),
            failure=EARLIER,
            merge={"released": True},
        ),
    ),
    (
        "the first compensation succeeds: the saga is compensated",
        compensating(0, 1),
        Succeeded(),
        Transition(
            saga_status=SagaStatus.COMPENSATED,
            step_status=StepStatus.COMPENSATED,
            attempt_status=AttemptStatus.SUCCEEDED,
            error="",
            next=None,
            failure=EARLIER,
        ),
    ),
    (
        "a transient action failure with attempts left retries after the action's backoff",
        running(1, 1),
        TransientFailure("ConnectionError: refused"),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.RETRYING,
            error="ConnectionError: refused",
            next=Schedule(Cursor(1, A), delay=1.0),
            failure=None,
        ),
    ),
    (
        "a timed-out action with attempts left retries, logged as timed out",
        running(1, 1),
        TimedOut("ran past 30 s"),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.TIMED_OUT,
            error="ran past 30 s",
            next=Schedule(Cursor(1, A), delay=1.0),
            failure=None,
        ),
    ),
    (
        "a transient compensation failure with attempts left retries after its own backoff",
        compensating(1, 2),
        TransientFailure("gateway busy"),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.COMPENSATING,
            attempt_status=AttemptStatus.RETRYING,
            error="gateway busy",
            next=Schedule(Cursor(1, C), delay=6.0),
            failure=EARLIER,
        ),
    ),
    (
        "an action out of attempts fails for good and its own compensation runs first",
        running(1, 2),
        TransientFailure("gateway busy"),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.FAILED,
            attempt_status=AttemptStatus.FAILED,
            error="step_failed: " + gave_up("gateway busy", 2),
            next=Schedule(Cursor(1, C)),
            failure=Failure(step="b", code="step_failed", message=gave_up("gateway busy", 2)),
        ),
    ),
    (
        "an action that timed out of its attempts is logged as timed out and compensated",
        running(1, 2),
        TimedOut("ran past 30 s"),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.FAILED,
            attempt_status=AttemptStatus.TIMED_OUT,
            error="step_failed: " + gave_up("ran past 30 s", 2),
            next=Schedule(Cursor(1, C)),
            failure=Failure(step="b", code="step_failed", message=gave_up("ran past 30 s", 2)),
        ),
    ),
    (
        "a compensation out of attempts stops the saga for an operator",
        compensating(1, 3),
        TransientFailure("gateway busy"),
        Transition(
            saga_status=SagaStatus.COMPENSATION_FAILED,
            step_status=StepStatus.COMPENSATION_FAILED,
            attempt_status=AttemptStatus.FAILED,
            error=gave_up("gateway busy", 3),
            next=None,
            failure=EARLIER,
        ),
    ),
    (
        "a compensation that timed out of its attempts is logged as timed out",
        compensating(1, 3),
        TimedOut("ran past 30 s"),
        Transition(
            saga_status=SagaStatus.COMPENSATION_FAILED,
            step_status=StepStatus.COMPENSATION_FAILED,
            attempt_status=AttemptStatus.TIMED_OUT,
            error=gave_up("ran past 30 s", 3),
            next=None,
            failure=EARLIER,
        ),
    ),
    (
        "a business failure compensates the steps before, never the failed one",
        running(1, 1),
        BusinessFailure("out_of_stock", "SKU-1: 0 left"),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.FAILED,
            attempt_status=AttemptStatus.FAILED,
            error="out_of_stock: SKU-1: 0 left",
            next=Schedule(Cursor(0, C)),
            failure=Failure(step="b", code="out_of_stock", message="SKU-1: 0 left"),
        ),
    ),
    (
        "a business failure of the first step, with no message, ends compensated at once",
        running(0, 1),
        BusinessFailure("out_of_stock", ""),
        Transition(
            saga_status=SagaStatus.COMPENSATED,
            step_status=StepStatus.FAILED,
            attempt_status=AttemptStatus.FAILED,
            error="out_of_stock",
            next=None,
            failure=Failure(step="a", code="out_of_stock", message=""),
        ),
    ),
    (
        "a business failure at the pivot still compensates: a refused refund did nothing",
        running(2, 1),
        BusinessFailure("refund_rejected", "closed account"),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.FAILED,
            attempt_status=AttemptStatus.FAILED,
            error="refund_rejected: closed account",
            next=Schedule(Cursor(1, C)),
            failure=Failure(step="c", code="refund_rejected", message="closed account"),
        ),
    ),
    (
        "a compensation's business failure stops the saga for an operator",
        compensating(1, 1),
        BusinessFailure("refund_rejected", "closed account"),
        Transition(
            saga_status=SagaStatus.COMPENSATION_FAILED,
            step_status=StepStatus.COMPENSATION_FAILED,
            attempt_status=AttemptStatus.FAILED,
            error="refund_rejected: closed account",
            next=None,
            failure=EARLIER,
        ),
    ),
    (
        "a compensation's business failure with no message shows its code alone",
        compensating(1, 1),
        BusinessFailure("refund_rejected", ""),
        Transition(
            saga_status=SagaStatus.COMPENSATION_FAILED,
            step_status=StepStatus.COMPENSATION_FAILED,
            attempt_status=AttemptStatus.FAILED,
            error="refund_rejected",
            next=None,
            failure=EARLIER,
        ),
    ),
    (
        "past the pivot a business failure retries at the longest delay",
        running(3, 1),
        BusinessFailure("injected_fault", "permanent"),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.FAILED,
            error=f"injected_fault: permanent {FORWARD}",
            next=Schedule(Cursor(3, A), delay=5.0),
            failure=None,
        ),
    ),
    (
        "past the pivot a business failure with no message shows its code alone",
        running(3, 1),
        BusinessFailure("injected_fault", ""),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.FAILED,
            error=f"injected_fault {FORWARD}",
            next=Schedule(Cursor(3, A), delay=5.0),
            failure=None,
        ),
    ),
    (
        "the pivot out of attempts retries at the longest delay instead of compensating",
        running(2, 2),
        TransientFailure("gateway busy"),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.RETRYING,
            error=f"gateway busy {FORWARD}",
            next=Schedule(Cursor(2, A), delay=5.0),
            failure=None,
        ),
    ),
    (
        "the pivot timed out of its attempts retries forward, logged as timed out",
        running(2, 2),
        TimedOut("ran past 30 s"),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.TIMED_OUT,
            error=f"ran past 30 s {FORWARD}",
            next=Schedule(Cursor(2, A), delay=5.0),
            failure=None,
        ),
    ),
    (
        "a poisoned action fails for good and its own compensation runs first",
        running(1, 1),
        Poisoned("lost its worker 4 times"),
        Transition(
            saga_status=SagaStatus.COMPENSATING,
            step_status=StepStatus.FAILED,
            attempt_status=AttemptStatus.WORKER_LOST,
            error="step_failed: lost its worker 4 times",
            next=Schedule(Cursor(1, C)),
            failure=Failure(step="b", code="step_failed", message="lost its worker 4 times"),
        ),
    ),
    (
        "a poisoned pivot retries at the longest delay",
        running(2, 1),
        Poisoned("lost its worker 4 times"),
        Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.PENDING,
            attempt_status=AttemptStatus.WORKER_LOST,
            error=f"lost its worker 4 times {FORWARD}",
            next=Schedule(Cursor(2, A), delay=5.0),
            failure=None,
        ),
    ),
    (
        "a poisoned compensation stops the saga for an operator",
        compensating(1, 1),
        Poisoned("lost its worker 4 times"),
        Transition(
            saga_status=SagaStatus.COMPENSATION_FAILED,
            step_status=StepStatus.COMPENSATION_FAILED,
            attempt_status=AttemptStatus.WORKER_LOST,
            error="lost its worker 4 times",
            next=None,
            failure=EARLIER,
        ),
    ),
]


@pytest.mark.parametrize(
    ("state", "outcome", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_each_outcome_decides_the_whole_transition(
    state: SagaState, outcome: Outcome, expected: Transition
) -> None:
    assert decide(DEFINITION, state, outcome, rand=0.5) == expected


@pytest.mark.parametrize(
    "status", [SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED]
)
def test_a_saga_at_rest_refuses_to_record_an_attempt(status: SagaStatus) -> None:
    state = SagaState(status=status, cursor=Cursor(1, A), attempt=1)

    with pytest.raises(SagaStateConflict) as caught:
        decide(DEFINITION, state, Succeeded(), rand=0.5)

    assert (caught.value.saga_id, caught.value.status, caught.value.action) == (
        None,
        status,
        "record an attempt of",
    )


STUCK = SagaState(
    status=SagaStatus.COMPENSATION_FAILED, cursor=Cursor(1, C), attempt=3, failure=EARLIER
)


def test_an_operator_retry_keeps_the_failure_and_starts_a_new_round() -> None:
    assert decide_operator_retry(DEFINITION, STUCK) == Transition(
        saga_status=SagaStatus.COMPENSATING,
        step_status=StepStatus.COMPENSATING,
        attempt_status=None,
        error="",
        next=Schedule(Cursor(1, C), new_round=True),
        failure=EARLIER,
    )


def test_an_operator_skip_keeps_the_failure_and_moves_to_the_compensation_before() -> None:
    assert decide_operator_skip(DEFINITION, STUCK) == Transition(
        saga_status=SagaStatus.COMPENSATING,
        step_status=StepStatus.SKIPPED,
        attempt_status=None,
        error="",
        next=Schedule(Cursor(0, C)),
        failure=EARLIER,
    )


@pytest.mark.parametrize(
    ("decision", "action"),
    [(decide_operator_retry, "retry"), (decide_operator_skip, "skip a compensation of")],
)
def test_operator_actions_name_what_was_refused(decision, action: str) -> None:
    state = SagaState(status=SagaStatus.COMPENSATING, cursor=Cursor(1, C), failure=EARLIER)

    with pytest.raises(SagaStateConflict) as caught:
        decision(DEFINITION, state)

    assert (caught.value.saga_id, caught.value.status, caught.value.action) == (
        None,
        SagaStatus.COMPENSATING,
        action,
    )


AT_B = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(1, A), attempt=1)


@pytest.mark.parametrize(
    ("state", "view", "message", "expected"),
    [
        (
            SagaState(status=SagaStatus.COMPLETED, cursor=Cursor(1, A), attempt=1),
            ClaimView(due_at=NOW, claimed=False),
            (1, A),
            Ignore("saga is COMPLETED"),
        ),
        (
            AT_B,
            ClaimView(due_at=NOW, claimed=False),
            (0, A),
            Ignore("not the saga's current step and phase"),
        ),
        (
            AT_B,
            ClaimView(due_at=None, claimed=True, lease_expired=True),
            (1, A),
            Ignore("the running attempt is past its lease; the sweeper times it out"),
        ),
        (
            AT_B,
            ClaimView(due_at=None, claimed=True),
            (1, A),
            Ignore("a live attempt holds the step"),
        ),
        (
            AT_B,
            ClaimView(due_at=None, claimed=True, claimant=Claimant.ELSEWHERE),
            (1, A),
            Ignore(
                "a live attempt holds the step (its worker runs on another machine or in "
                "another PID namespace; its lease decides)"
            ),
        ),
        (
            SagaState(status=SagaStatus.RUNNING, cursor=Cursor(1, A), attempt=1, redeliveries=3),
            ClaimView(due_at=None, claimed=True, claimant=Claimant.DEAD),
            (1, A),
            GiveUp("poison guard: attempt 1 lost its worker 4 times; giving up"),
        ),
        (
            AT_B,
            ClaimView(due_at=None, claimed=False),
            (1, A),
            Ignore("nothing is due at this step"),
        ),
        (
            AT_B,
            ClaimView(due_at=NOW + EARLY_TOLERANCE * 2, claimed=False),
            (1, A),
            Ignore("not due yet"),
        ),
        # Exactly the tolerance early is early enough.
        (
            AT_B,
            ClaimView(due_at=NOW + EARLY_TOLERANCE, claimed=False),
            (1, A),
            Claim(attempt=2),
        ),
    ],
)
def test_each_claim_decision_says_why(
    state: SagaState, view: ClaimView, message: tuple[int, Phase], expected: ClaimDecision
) -> None:
    decision = decide_claim(
        state, view, step_index=message[0], phase=message[1], now=NOW, max_redeliveries=3
    )
    assert decision == expected


def test_a_claimed_step_shows_running_or_compensating_by_phase() -> None:
    assert claimed_step_status(A) is StepStatus.RUNNING
    assert claimed_step_status(C) is StepStatus.COMPENSATING
