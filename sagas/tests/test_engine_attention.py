"""Which sagas need an operator, and what skipping their step by hand decides (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sagas.definitions import Failure, SagaDefinition, StopRequest
from sagas.engine import (
    Cursor,
    SagaState,
    Schedule,
    attention,
    decide_operator_skip_step,
    retrying_forward,
)
from sagas.errors import StepNotSkippable
from sagas.statuses import Attention, Phase, SagaStatus, StepStatus
from sagas.tests.test_engine import forward_saga, saga

A = Phase.ACTION
C = Phase.COMPENSATION
RUNNING = SagaStatus.RUNNING


def _attention(
    definition: SagaDefinition,
    state: SagaState,
    *,
    claimed: bool = False,
    past_deadline: bool = False,
) -> Attention | None:
    return attention(definition, state, claimed=claimed, past_deadline=past_deadline)


@pytest.mark.parametrize(
    ("step", "attempt", "claimed", "expected"),
    [
        # Forward steps whose failures this round reached max_attempts (2) retry forward.
        ("b", 2, False, Attention.RETRYING_FORWARD),
        ("c", 5, False, Attention.RETRYING_FORWARD),
        # The attempt running now is not a failure (yet).
        ("b", 2, True, None),
        ("b", 3, True, Attention.RETRYING_FORWARD),
        # Within the policy: an ordinary retry.
        ("b", 1, False, None),
        # A plain step never retries forward: it compensates when its retries run out.
        ("a", 2, False, None),
    ],
)
def test_a_forward_step_whose_retries_ran_out_needs_attention(
    step: str, attempt: int, claimed: bool, expected: Attention | None
) -> None:
    definition = forward_saga()
    state = SagaState(status=RUNNING, cursor=Cursor(definition.index(step), A), attempt=attempt)

    assert _attention(definition, state, claimed=claimed) is expected
    assert retrying_forward(definition, state, claimed=claimed) is (expected is not None)


def test_a_forward_steps_compensation_is_never_retrying_forward() -> None:
    # Compensating b (a stop asked before b ran, say): its compensation's retries are its own.
    definition = forward_saga()
    for status in (SagaStatus.COMPENSATING, SagaStatus.RUNNING):
        state = SagaState(status=status, cursor=Cursor(1, C), attempt=5)
        assert _attention(definition, state) is None


def test_an_operators_retry_round_counts_afresh() -> None:
    definition = forward_saga()
    state = SagaState(status=RUNNING, cursor=Cursor(1, A), attempt=3, round_start=2)

    assert _attention(definition, state) is None


@pytest.mark.parametrize("status", [SagaStatus.RUNNING, SagaStatus.COMPENSATING])
def test_a_moving_saga_past_its_deadline_needs_attention(status: SagaStatus) -> None:
    phase = A if status is RUNNING else C
    state = SagaState(status=status, cursor=Cursor(0, phase), attempt=1)

    assert _attention(saga("abc"), state, past_deadline=True) is Attention.PAST_DEADLINE
    assert _attention(saga("abc"), state, past_deadline=False) is None


def test_a_failed_compensation_needs_attention_first_and_a_finished_saga_never() -> None:
    failed = SagaState(status=SagaStatus.COMPENSATION_FAILED, cursor=Cursor(0, C), attempt=2)
    assert _attention(saga("ab"), failed, past_deadline=True) is Attention.COMPENSATION_FAILED
    for status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
        finished = SagaState(status=status, cursor=Cursor(1, A), attempt=1)
        assert _attention(saga("ab"), finished, past_deadline=True) is None


def test_skipping_a_forward_step_counts_it_succeeded_and_moves_on() -> None:
    definition = forward_saga()
    state = SagaState(status=RUNNING, cursor=Cursor(1, A), attempt=4)

    transition = decide_operator_skip_step(definition, state, claimed=False, past_deadline=False)

    assert transition.saga_status is RUNNING
    assert transition.step_status is StepStatus.SUCCEEDED
    assert transition.attempt_status is None  # no attempt ended: the operator acted
    assert transition.next == Schedule(Cursor(2, A))


def test_skipping_the_last_step_completes_the_saga() -> None:
    definition = forward_saga()
    state = SagaState(status=RUNNING, cursor=Cursor(2, A), attempt=9)

    transition = decide_operator_skip_step(definition, state, claimed=False, past_deadline=False)

    assert transition.saga_status is SagaStatus.COMPLETED
    assert transition.next is None


def test_skipping_a_compensation_past_the_deadline_carries_on_compensating() -> None:
    failure = Failure(step="c", code="out_of_stock", message="")
    state = SagaState(
        status=SagaStatus.COMPENSATING, cursor=Cursor(1, C), attempt=1, failure=failure
    )

    transition = decide_operator_skip_step(saga("abc"), state, claimed=False, past_deadline=True)

    assert transition.step_status is StepStatus.SKIPPED
    assert transition.next == Schedule(Cursor(0, C))
    assert transition.failure == failure


def test_skipping_a_step_past_the_deadline_honours_a_pending_stop() -> None:
    # Asked to stop before: the step done by hand is the boundary the stop waited for.
    stop = StopRequest(code="cancelled_by_client", actor="user:1")
    state = SagaState(status=RUNNING, cursor=Cursor(1, A), attempt=1, stop=stop)

    transition = decide_operator_skip_step(saga("abc"), state, claimed=False, past_deadline=True)

    assert transition.saga_status is SagaStatus.COMPENSATING
    assert transition.next == Schedule(Cursor(1, C))


def test_skipping_a_failed_compensation_is_the_compensations_skip() -> None:
    state = SagaState(status=SagaStatus.COMPENSATION_FAILED, cursor=Cursor(1, C), attempt=2)

    transition = decide_operator_skip_step(saga("abc"), state, claimed=False, past_deadline=False)

    assert transition.step_status is StepStatus.SKIPPED
    assert transition.saga_status is SagaStatus.COMPENSATING


def test_a_saga_needing_no_attention_or_running_its_step_is_refused() -> None:
    definition = forward_saga()
    fine = SagaState(status=RUNNING, cursor=Cursor(1, A), attempt=1)
    with pytest.raises(StepNotSkippable, match="not retrying forward"):
        decide_operator_skip_step(definition, fine, claimed=False, past_deadline=False)
    with pytest.raises(StepNotSkippable, match="attempt of its step is running"):
        decide_operator_skip_step(definition, fine, claimed=True, past_deadline=True)
    done = SagaState(status=SagaStatus.COMPLETED, cursor=Cursor(2, A), attempt=1)
    with pytest.raises(StepNotSkippable):
        decide_operator_skip_step(definition, done, claimed=False, past_deadline=True)


def test_a_definitions_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="deadline"):
        SagaDefinition(name="x", steps=saga("a").steps, deadline=timedelta(0))
