"""The engine's decisions, table-driven, with no database and no broker."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from sagas.definitions import RetryPolicy, SagaDefinition, Step, StepCall
from sagas.engine import (
    EARLY_TOLERANCE,
    BusinessFailure,
    Claim,
    Claimant,
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
    compensation_order,
    decide,
    decide_claim,
    decide_operator_retry,
    decide_operator_skip,
    first_cursor,
)
from sagas.errors import SagaStateConflict
from sagas.statuses import AttemptStatus, Phase, SagaStatus, StepStatus

A = Phase.ACTION
C = Phase.COMPENSATION
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def noop(call: StepCall) -> None:
    return None


def saga(spec: str, *, retry: RetryPolicy | None = None) -> SagaDefinition:
    """Build a saga from a spec like "abc-de": a step per letter; "-" after one: no compensation."""
    steps = tuple(
        Step(
            name=name,
            action=noop,
            compensation=None if no_compensation else noop,
            retry=retry or RetryPolicy(max_attempts=3, jitter=0.0),
            compensation_retry=retry or RetryPolicy(max_attempts=2, jitter=0.0),
        )
        for name, no_compensation in re.findall(r"([a-z])(-?)", spec)
    )
    return SagaDefinition(name=f"saga-{spec}", steps=steps)


@dataclass
class Run:
    """Drive a saga through the pure decisions, as the worker would, and record what ran."""

    definition: SagaDefinition
    state: SagaState
    ran: list[tuple[str, Phase]]
    step_status: dict[str, StepStatus]

    @classmethod
    def start(cls, definition: SagaDefinition) -> Run:
        cursor = first_cursor(definition)
        assert cursor is not None
        return cls(
            definition=definition,
            state=SagaState(status=SagaStatus.RUNNING, cursor=cursor),
            ran=[],
            step_status={s.name: StepStatus.PENDING for s in definition.steps},
        )

    def until_rest(self, outcome_for: Callable[[str, Phase, int], Outcome]) -> Run:
        for _ in range(200):
            if self.state.status not in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
                return self
            cursor = self.state.cursor
            name = self.definition.steps[cursor.index].name
            attempt = self.state.attempt + 1
            self.ran.append((name, cursor.phase))
            running = replace(self.state, attempt=attempt)
            transition = decide(
                self.definition, running, outcome_for(name, cursor.phase, attempt), rand=0.5
            )
            self.apply(running, transition)
        raise AssertionError("saga never came to rest")

    def apply(self, running: SagaState, transition: Transition) -> None:
        name = self.definition.steps[running.cursor.index].name
        self.step_status[name] = transition.step_status
        nxt = transition.next
        if nxt is None:
            self.state = replace(running, status=transition.saga_status, failure=transition.failure)
        elif nxt.cursor != running.cursor:
            self.state = SagaState(
                status=transition.saga_status, cursor=nxt.cursor, failure=transition.failure
            )
        else:
            self.state = replace(
                running,
                status=transition.saga_status,
                failure=transition.failure,
                round_start=running.attempt if nxt.new_round else running.round_start,
            )


def fail_business_at(step: str) -> Callable[[str, Phase, int], Outcome]:
    def outcome(name: str, phase: Phase, attempt: int) -> Outcome:
        if phase is A and name == step:
            return BusinessFailure("out_of_stock", "none left")
        return Succeeded({f"{name}:{phase}": attempt})

    return outcome


# Failure at each step of a 5-step saga whose third step (c) has no compensation: exactly the
# compensations of the steps that succeeded run, latest first, passing over c.
@pytest.mark.parametrize(
    ("fail_at", "compensated"),
    [
        ("a", []),
        ("b", ["a"]),
        ("c", ["b", "a"]),
        ("d", ["b", "a"]),
        ("e", ["d", "b", "a"]),
    ],
)
def test_failure_at_each_step_runs_the_succeeded_steps_compensations_in_reverse(
    fail_at: str, compensated: list[str]
) -> None:
    definition = saga("abc-de")
    run = Run.start(definition).until_rest(fail_business_at(fail_at))

    succeeded = [s.name for s in definition.steps][: definition.index(fail_at)]
    assert run.ran == [(s, A) for s in [*succeeded, fail_at]] + [(s, C) for s in compensated]
    assert run.state.status is SagaStatus.COMPENSATED
    assert run.state.failure is not None
    assert (run.state.failure.step, run.state.failure.code) == (fail_at, "out_of_stock")
    assert run.step_status[fail_at] is StepStatus.FAILED
    for name in compensated:
        assert run.step_status[name] is StepStatus.COMPENSATED
    if "c" in succeeded:
        assert run.step_status["c"] is StepStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("fail_at", "compensated"),
    [
        ("a", ["a"]),
        ("b", ["b", "a"]),
        ("c", ["b", "a"]),
        ("e", ["e", "d", "b", "a"]),
    ],
)
def test_an_action_that_gave_up_on_retries_is_compensated_itself_first(
    fail_at: str, compensated: list[str]
) -> None:
    # A charge that kept timing out may have charged all the same; its refund is harmless
    # when it did not (compensations treat "nothing to undo" as success).
    def outcome(name: str, phase: Phase, attempt: int) -> Outcome:
        if phase is A and name == fail_at:
            return TransientFailure("TimeoutError: gateway did not answer")
        return Succeeded()

    definition = saga("abc-de")
    run = Run.start(definition).until_rest(outcome)

    assert [s for s, phase in run.ran if phase is C] == compensated
    assert run.state.status is SagaStatus.COMPENSATED
    assert run.state.failure is not None and run.state.failure.code == "step_failed"
    index = definition.index(fail_at)
    assert compensation_order(definition, failed_index=index, outcome_unknown=True) == [
        definition.index(name) for name in compensated
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 6])
def test_failure_at_every_position_of_n_step_sagas_compensates_exactly_the_prefix(
    size: int,
) -> None:
    definition = saga("abcdef"[:size])
    for i, step in enumerate(definition.steps):
        run = Run.start(definition).until_rest(fail_business_at(step.name))
        expected = [(s.name, C) for s in reversed(definition.steps[:i])]
        assert run.ran[i + 1 :] == expected
        assert compensation_order(definition, failed_index=i) == list(range(i - 1, -1, -1))


def test_every_step_succeeding_completes_the_saga_with_merged_results() -> None:
    definition = saga("abc")
    state = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(2, A), attempt=1)

    last = decide(definition, state, Succeeded({"c": 1}), rand=0.5)

    assert last.saga_status is SagaStatus.COMPLETED
    assert last.finished and last.next is None
    assert last.merge == {"c": 1}
    assert last.attempt_status is AttemptStatus.SUCCEEDED
    middle = decide(definition, replace(state, cursor=Cursor(1, A)), Succeeded(), rand=0.5)
    assert middle.next == Schedule(Cursor(2, A))
    assert middle.saga_status is SagaStatus.RUNNING


def transient_then(succeed_on: int) -> Callable[[str, Phase, int], Outcome]:
    def outcome(name: str, phase: Phase, attempt: int) -> Outcome:
        if name == "b" and phase is A and attempt < succeed_on:
            return TransientFailure("TransientStepError: timeout")
        return Succeeded()

    return outcome


@pytest.mark.parametrize(
    ("succeed_on", "status", "b_runs"),
    [(1, SagaStatus.COMPLETED, 1), (3, SagaStatus.COMPLETED, 3), (4, SagaStatus.COMPENSATED, 3)],
)
def test_transient_failures_retry_up_to_the_step_limit(
    succeed_on: int, status: SagaStatus, b_runs: int
) -> None:
    run = Run.start(saga("abc")).until_rest(transient_then(succeed_on))

    assert run.state.status is status
    assert run.ran.count(("b", A)) == b_runs
    if status is SagaStatus.COMPENSATED:
        assert run.state.failure is not None
        assert run.state.failure.code == "step_failed"
        assert "TransientStepError: timeout" in run.state.failure.message
        # b's outcome is unknown (it may have acted before timing out): undo it, then a.
        assert run.ran[-2:] == [("b", C), ("a", C)]
        assert run.step_status["b"] is StepStatus.COMPENSATED


@pytest.mark.parametrize(
    ("outcome", "retries", "logged"),
    [
        (TransientFailure("boom"), True, AttemptStatus.RETRYING),
        (TimedOut("too slow"), True, AttemptStatus.TIMED_OUT),
        (BusinessFailure("declined", ""), False, AttemptStatus.FAILED),
        (Poisoned("poison guard"), False, AttemptStatus.WORKER_LOST),
    ],
)
def test_each_kind_of_action_failure_retries_or_compensates(
    outcome: Outcome, retries: bool, logged: AttemptStatus
) -> None:
    definition = saga("ab")
    state = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(1, A), attempt=1)

    transition = decide(definition, state, outcome, rand=0.5)

    assert transition.attempt_status is logged
    if retries:
        assert transition.next == Schedule(Cursor(1, A), delay=0.5)
        assert transition.step_status is StepStatus.PENDING
        assert transition.saga_status is SagaStatus.RUNNING
        assert transition.failure is None
    else:
        # A business failure means b did nothing; a lost worker leaves b's effect unknown.
        undo_from = 0 if isinstance(outcome, BusinessFailure) else 1
        assert transition.next == Schedule(Cursor(undo_from, C))
        assert transition.step_status is StepStatus.FAILED
        assert transition.saga_status is SagaStatus.COMPENSATING
        assert transition.failure is not None and transition.failure.step == "b"


@pytest.mark.parametrize(
    ("outcome", "attempt", "result"),
    [
        (TransientFailure("x"), 1, "retry"),
        (TimedOut("x"), 1, "retry"),
        (TransientFailure("x"), 2, "stop"),
        (BusinessFailure("cannot_refund", "closed account"), 1, "stop"),
        (Poisoned("x"), 1, "stop"),
        (Succeeded(), 1, "next"),
    ],
)
def test_compensation_outcomes(outcome: Outcome, attempt: int, result: str) -> None:
    definition = saga("abc")
    state = SagaState(status=SagaStatus.COMPENSATING, cursor=Cursor(1, C), attempt=attempt)

    transition = decide(definition, state, outcome, rand=0.0)

    if result == "retry":
        assert transition.next is not None and transition.next.cursor == Cursor(1, C)
        assert transition.step_status is StepStatus.COMPENSATING
        assert transition.saga_status is SagaStatus.COMPENSATING
    elif result == "stop":
        # Earlier compensations (a) wait: nothing is scheduled past a failed one.
        assert transition.next is None
        assert transition.step_status is StepStatus.COMPENSATION_FAILED
        assert transition.saga_status is SagaStatus.COMPENSATION_FAILED
        assert transition.error
    else:
        assert transition.next == Schedule(Cursor(0, C))
        assert transition.step_status is StepStatus.COMPENSATED


def test_operator_retry_resumes_the_failed_compensation_with_a_fresh_round() -> None:
    definition = saga("abc")
    stuck = SagaState(status=SagaStatus.COMPENSATION_FAILED, cursor=Cursor(1, C), attempt=2)

    transition = decide_operator_retry(definition, stuck)

    assert transition.next == Schedule(Cursor(1, C), new_round=True)
    assert transition.saga_status is SagaStatus.COMPENSATING
    assert transition.step_status is StepStatus.COMPENSATING
    assert transition.attempt_status is None
    # The new round has the full budget again: attempt 3 is its first.
    again = SagaState(status=SagaStatus.COMPENSATING, cursor=Cursor(1, C), attempt=3, round_start=2)
    assert decide(definition, again, TransientFailure("x"), rand=0.0).next is not None


def test_operator_skip_marks_the_step_and_carries_on() -> None:
    definition = saga("abc")
    stuck = SagaState(status=SagaStatus.COMPENSATION_FAILED, cursor=Cursor(1, C), attempt=2)

    transition = decide_operator_skip(definition, stuck)
    assert transition.step_status is StepStatus.SKIPPED
    assert transition.next == Schedule(Cursor(0, C))
    assert transition.saga_status is SagaStatus.COMPENSATING

    first = replace(stuck, cursor=Cursor(0, C))
    last = decide_operator_skip(definition, first)
    assert last.next is None
    assert last.saga_status is SagaStatus.COMPENSATED


@pytest.mark.parametrize(
    "status", [SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.COMPLETED]
)
def test_operator_actions_need_compensation_failed(status: SagaStatus) -> None:
    state = SagaState(status=status, cursor=Cursor(0, C))
    with pytest.raises(SagaStateConflict):
        decide_operator_retry(saga("ab"), state)
    with pytest.raises(SagaStateConflict):
        decide_operator_skip(saga("ab"), state)


def test_backoff_grows_exponentially_is_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.2
    )

    assert [policy.delay(failed_attempts=n, rand=0.5) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert policy.delay(failed_attempts=2, rand=0.0) == pytest.approx(1.6)
    assert policy.delay(failed_attempts=2, rand=0.999999) == pytest.approx(2.4, rel=1e-4)


# --- Claims ---------------------------------------------------------------------------------

RUNNING_AT_B = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(1, A), attempt=1)


@pytest.mark.parametrize(
    ("state", "view", "message", "expected"),
    [
        # Due and free: claim the next attempt.
        (RUNNING_AT_B, ClaimView(due_at=NOW, claimed=False), (1, A), Claim(attempt=2)),
        (
            RUNNING_AT_B,
            ClaimView(due_at=NOW + EARLY_TOLERANCE / 2, claimed=False),
            (1, A),
            Claim(attempt=2),
        ),
        # A message for a step that already succeeded, or for another phase: a no-op.
        (RUNNING_AT_B, ClaimView(due_at=NOW, claimed=False), (0, A), Ignore),
        (RUNNING_AT_B, ClaimView(due_at=NOW, claimed=False), (1, C), Ignore),
        # A retry not due yet (a duplicate of the earlier attempt's message).
        (RUNNING_AT_B, ClaimView(due_at=NOW + timedelta(seconds=5), claimed=False), (1, A), Ignore),
        (RUNNING_AT_B, ClaimView(due_at=None, claimed=False), (1, A), Ignore),
        # A live attempt holds the step (the duplicate arrives while it runs).
        (RUNNING_AT_B, ClaimView(due_at=None, claimed=True), (1, A), Ignore),
        (
            RUNNING_AT_B,
            ClaimView(due_at=None, claimed=True, lease_expired=True),
            (1, A),
            Ignore,
        ),
        # Its worker runs on another machine or in another PID namespace: its lease decides,
        # even when its host name and pid match a process that is gone here.
        (
            RUNNING_AT_B,
            ClaimView(due_at=None, claimed=True, claimant=Claimant.ELSEWHERE),
            (1, A),
            Ignore,
        ),
        (
            RUNNING_AT_B,
            ClaimView(due_at=None, claimed=True, claimant=Claimant.ELSEWHERE, lease_expired=True),
            (1, A),
            Ignore,
        ),
        # Its worker died: take the same attempt over.
        (
            RUNNING_AT_B,
            ClaimView(due_at=None, claimed=True, claimant=Claimant.DEAD),
            (1, A),
            Claim(attempt=1, takeover=True, redeliveries=1),
        ),
        # ...unless it already killed three workers: the poison guard gives it up.
        (
            replace(RUNNING_AT_B, redeliveries=3),
            ClaimView(due_at=None, claimed=True, claimant=Claimant.DEAD),
            (1, A),
            GiveUp,
        ),
        # A saga at rest runs nothing.
        (
            replace(RUNNING_AT_B, status=SagaStatus.COMPLETED),
            ClaimView(due_at=None, claimed=False),
            (1, A),
            Ignore,
        ),
        (
            replace(RUNNING_AT_B, status=SagaStatus.COMPENSATION_FAILED, cursor=Cursor(0, C)),
            ClaimView(due_at=None, claimed=False),
            (0, C),
            Ignore,
        ),
    ],
)
def test_claim_decisions(
    state: SagaState, view: ClaimView, message: tuple[int, Phase], expected: object
) -> None:
    decision = decide_claim(
        state, view, step_index=message[0], phase=message[1], now=NOW, max_redeliveries=3
    )
    if isinstance(expected, type):
        assert isinstance(decision, expected)
    else:
        assert decision == expected


def test_first_cursor_skips_local_steps() -> None:
    local = Step(name="create", action=noop, local=True)
    remote = Step(name="b", action=noop)
    assert first_cursor(SagaDefinition(name="x", steps=(local, remote))) == Cursor(1, A)
    assert first_cursor(SagaDefinition(name="y", steps=(local,))) is None


def forward_saga() -> SagaDefinition:
    quick = RetryPolicy(max_attempts=2, initial_delay=0.1, max_delay=7.0, jitter=0.0)
    return SagaDefinition(
        name="forward",
        steps=(
            Step(name="a", action=noop, compensation=noop, retry=quick),
            Step(name="b", action=noop, compensation=noop, retry=quick, forward="transient"),
            Step(name="c", action=noop, retry=quick, forward="always"),
        ),
    )


@pytest.mark.parametrize(
    ("step", "outcome", "forward"),
    [
        ("b", TransientFailure("gateway timeout"), True),
        ("b", TimedOut("too slow"), True),
        ("b", Poisoned("poison guard"), True),
        ("b", BusinessFailure("refund_rejected", "no"), False),
        ("c", TransientFailure("db down"), True),
        ("c", BusinessFailure("injected_fault", "permanent"), True),
        ("c", Poisoned("poison guard"), True),
    ],
)
def test_forward_steps_retry_at_the_longest_delay_instead_of_compensating(
    step: str, outcome: Outcome, forward: bool
) -> None:
    definition = forward_saga()
    index = definition.index(step)
    # The step's attempts are spent: a plain step would give up now.
    state = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(index, A), attempt=2)

    transition = decide(definition, state, outcome, rand=0.5)

    if forward:
        assert transition.next == Schedule(Cursor(index, A), delay=7.0)
        assert transition.saga_status is SagaStatus.RUNNING
        assert transition.step_status is StepStatus.PENDING
        assert "retrying until it succeeds" in transition.error
    else:
        assert transition.next == Schedule(Cursor(0, C))
        assert transition.saga_status is SagaStatus.COMPENSATING


def test_a_local_step_cannot_retry_forever() -> None:
    with pytest.raises(ValueError, match="local"):
        Step(name="x", action=noop, local=True, forward="always")


def test_an_outcome_the_engine_does_not_know_is_refused_naming_it() -> None:
    # A kind of outcome added without a decision for it fails loudly, saying which it was.
    @dataclass(frozen=True)
    class Stranger:
        why: str

    state = SagaState(status=SagaStatus.RUNNING, cursor=Cursor(0, A), attempt=1)

    with pytest.raises(AssertionError, match=r"Stranger\(why='new'\)"):
        decide(saga("ab"), state, Stranger("new"), rand=0.5)  # type: ignore[arg-type]
