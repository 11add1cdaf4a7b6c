"""The engine's decisions about a request to stop a saga, table-driven, with no database."""

from __future__ import annotations

import re

import pytest

from sagas.definitions import Failure, RetryPolicy, SagaDefinition, Step, StepCall, StopRequest
from sagas.engine import (
    BusinessFailure,
    Cursor,
    SagaState,
    Schedule,
    StopVerdict,
    Succeeded,
    TransientFailure,
    Transition,
    decide,
    decide_stop,
    decide_stop_request,
)
from sagas.errors import SagaStateConflict
from sagas.statuses import AttemptStatus, Phase, SagaStatus, StepStatus

A, C = Phase.ACTION, Phase.COMPENSATION
STOP = StopRequest(code="cancelled_by_client", actor="user:7")


def noop(call: StepCall) -> None:
    return None


def saga(spec: str) -> SagaDefinition:
    """Build a saga from a spec like "abc-": a step per letter; "-": no compensation; "!":
    forward (past the point of no return)."""
    steps = tuple(
        Step(
            name=name,
            action=noop,
            compensation=None if mark == "-" else noop,
            forward="always" if mark == "!" else "none",
            retry=RetryPolicy(max_attempts=3, jitter=0.0),
        )
        for name, mark in re.findall(r"([a-z])([-!]?)", spec)
    )
    return SagaDefinition(name=f"saga-{spec}", steps=steps)


#: Like the order's placing saga: create, reserve, charge (each undone), confirm (not).
PLACE = saga("abcd-")


def running(index: int, *, attempt: int = 1, stop: StopRequest | None = STOP) -> SagaState:
    return SagaState(status=SagaStatus.RUNNING, cursor=Cursor(index, A), attempt=attempt, stop=stop)


def stopped_by(step: str) -> Failure:
    return Failure(step=step, code="cancelled_by_client", message="stop requested by user:7")


# --- at the boundary: the running step succeeded ------------------------------------------


@pytest.mark.parametrize(
    ("index", "first_undone"),
    [(1, 1), (2, 2)],  # after b (reserve): b then a; after c (charge): c, b, a
)
def test_a_success_with_a_stop_pending_undoes_that_step_and_those_before(
    index: int, first_undone: int
) -> None:
    transition = decide(PLACE, running(index), Succeeded({"x": 1}), rand=0.5)

    assert transition == Transition(
        saga_status=SagaStatus.COMPENSATING,
        step_status=StepStatus.SUCCEEDED,
        attempt_status=AttemptStatus.SUCCEEDED,
        error="",
        next=Schedule(Cursor(first_undone, C)),
        failure=stopped_by(PLACE.steps[index].name),
        merge={"x": 1},
    )


def test_a_stop_with_nothing_to_undo_ends_compensated_at_once() -> None:
    transition = decide(saga("a-b-c"), running(1), Succeeded(None), rand=0.5)

    assert (transition.saga_status, transition.next) == (SagaStatus.COMPENSATED, None)
    assert transition.failure == stopped_by("b")


def test_a_last_step_that_succeeded_first_completes_the_saga_stopped_too_late() -> None:
    transition = decide(PLACE, running(3), Succeeded(None), rand=0.5)

    assert transition.saga_status is SagaStatus.COMPLETED
    assert transition.stopped_late and transition.next is None and transition.failure is None


def test_without_a_stop_nothing_changes() -> None:
    transition = decide(PLACE, running(3, stop=None), Succeeded(None), rand=0.5)
    assert transition.saga_status is SagaStatus.COMPLETED and not transition.stopped_late
    onward = decide(PLACE, running(1, stop=None), Succeeded(None), rand=0.5)
    assert onward.next == Schedule(Cursor(2, A)) and onward.saga_status is SagaStatus.RUNNING


def test_a_step_past_the_point_of_no_return_ignores_the_stop() -> None:
    definition = saga("ab!c!")

    transition = decide(definition, running(1), Succeeded(None), rand=0.5)

    assert (transition.saga_status, transition.next) == (SagaStatus.RUNNING, Schedule(Cursor(2, A)))


def test_failures_while_a_stop_is_pending_are_decided_as_without_it() -> None:
    # A retry is the same step finishing; a business failure compensates for its own reason.
    retry = decide(PLACE, running(2), TransientFailure("timeout"), rand=0.0)
    assert retry.next == Schedule(Cursor(2, A), delay=0.5) and retry.failure is None
    failed = decide(PLACE, running(2), BusinessFailure("payment_declined", "no"), rand=0.0)
    assert failed.failure == Failure(step="c", code="payment_declined", message="no")
    assert failed.next == Schedule(Cursor(1, C))


def test_a_compensation_that_succeeds_carries_on_as_before() -> None:
    state = SagaState(
        status=SagaStatus.COMPENSATING,
        cursor=Cursor(2, C),
        attempt=1,
        failure=stopped_by("c"),
        stop=STOP,
    )

    transition = decide(PLACE, state, Succeeded(None), rand=0.5)

    assert transition.next == Schedule(Cursor(1, C)) and transition.failure == stopped_by("c")


# --- the request itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "stop", "claimed", "index", "verdict"),
    [
        (SagaStatus.RUNNING, None, False, 1, StopVerdict.RECORD_AND_STOP),
        (SagaStatus.RUNNING, None, True, 1, StopVerdict.RECORD_AND_WAIT),
        (SagaStatus.RUNNING, STOP, False, 1, StopVerdict.ALREADY_REQUESTED),
        (SagaStatus.RUNNING, STOP, True, 1, StopVerdict.ALREADY_REQUESTED),
        (SagaStatus.COMPENSATING, None, False, 1, StopVerdict.UNDOING),
        (SagaStatus.COMPENSATION_FAILED, None, False, 1, StopVerdict.UNDOING),
        (SagaStatus.COMPLETED, None, False, 3, StopVerdict.COMPLETED),
        (SagaStatus.COMPENSATED, None, False, 0, StopVerdict.COMPENSATED),
    ],
)
def test_what_a_request_to_stop_does(
    status: SagaStatus, stop: StopRequest | None, claimed: bool, index: int, verdict: StopVerdict
) -> None:
    state = SagaState(status=status, cursor=Cursor(index, A), stop=stop)

    assert decide_stop_request(PLACE, state, claimed=claimed) is verdict


def test_a_request_at_a_step_past_the_point_of_no_return_waits() -> None:
    state = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(1, A))

    assert decide_stop_request(saga("ab!"), state, claimed=False) is StopVerdict.RECORD_AND_WAIT


def test_a_step_never_attempted_is_passed_over_and_stays_pending() -> None:
    transition = decide_stop(PLACE, running(2, attempt=0))

    assert transition == Transition(
        saga_status=SagaStatus.COMPENSATING,
        step_status=StepStatus.PENDING,
        attempt_status=None,
        error="",
        next=Schedule(Cursor(1, C)),
        failure=stopped_by("c"),
    )


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_step_waiting_to_retry_may_have_acted_so_it_is_undone_first(attempt: int) -> None:
    transition = decide_stop(PLACE, running(2, attempt=attempt))

    assert (transition.step_status, transition.next) == (
        StepStatus.FAILED,
        Schedule(Cursor(2, C)),
    )


def test_stopping_needs_a_running_saga_and_a_request() -> None:
    with pytest.raises(SagaStateConflict) as refused:
        decide_stop(PLACE, running(1, stop=None))
    assert (refused.value.status, refused.value.action) == (SagaStatus.RUNNING, "stop")
    with pytest.raises(SagaStateConflict) as refused:
        decide_stop(
            PLACE, SagaState(status=SagaStatus.COMPENSATING, cursor=Cursor(1, C), stop=STOP)
        )
    assert (refused.value.status, refused.value.action) == (SagaStatus.COMPENSATING, "stop")
