"""Act on a saga as an operator: retry or skip a failed compensation, skip a step; described once.

A saga waiting in COMPENSATION_FAILED is resolved by hand with *retry* (a new round of
attempts at the failed compensation) or *skip* (the compensation counts as done by hand, with
a reason, and compensating carries on). A saga otherwise needing attention (past its deadline,
or retrying a step forward past its point of no return: ``sagas.engine.attention``) is
resolved with *skip step*: the step it waits at counts as done by hand, with a reason, and the
saga carries on. The admin, the REST API and the management commands all offer them: each
reads the action's :class:`OperatorAction` (its permission, whether a reason is required, the
service to call and the words to show) instead of spelling it out.

The services record through ``sagas.recorder.outcome_record`` like every other change of a
saga, and write who did what in the same durable transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import transaction

from infrastructure.clock import database_now
from sagas.definitions import SagaDefinition
from sagas.engine import (
    SagaState,
    Transition,
    decide_operator_retry,
    decide_operator_skip,
    decide_operator_skip_step,
)
from sagas.errors import ReasonRequired, SagaNotFound, SagaStateConflict, StepNotSkippable
from sagas.models import SagaOperatorAction
from sagas.recorder import Loaded, outcome_record, saga_load, saga_state
from sagas.registry import get_definition
from sagas.statuses import OperatorActionKind, SagaStatus


def saga_retry(*, saga_id: UUID, actor: str, reason: str = "", now: datetime | None = None) -> None:
    """Resume a COMPENSATION_FAILED saga at its failed compensation, with fresh retries.

    Two operators clicking at once cause one retry: the write is a compare-and-set on the
    saga as loaded, and the second finds the saga COMPENSATING and gets
    :class:`SagaStateConflict`.
    """
    _operator_act(saga_id=saga_id, actor=actor, reason=reason, action=RETRY, now=now)


def saga_skip_compensation(
    *, saga_id: UUID, actor: str, reason: str, now: datetime | None = None
) -> None:
    """Mark a saga's failed compensation resolved by hand (SKIPPED) and carry on compensating.

    The reason is required (:class:`ReasonRequired`); the action is recorded with it.
    """
    if not reason or not reason.strip():
        raise ReasonRequired()
    _operator_act(saga_id=saga_id, actor=actor, reason=reason.strip(), action=SKIP, now=now)


def saga_skip_step(*, saga_id: UUID, actor: str, reason: str, now: datetime | None = None) -> None:
    """Resolve by hand the step a saga needing attention waits at; the saga carries on.

    ``sagas.engine.decide_operator_skip_step`` decides: an action counts as succeeded, a
    compensation as skipped. Recorded as ``skip_step``, or as ``skip_compensation`` for a
    COMPENSATION_FAILED saga's failed compensation (what the skip action records). The reason
    is required (:class:`ReasonRequired`); a saga needing no attention, or whose step an
    attempt is running now, is refused (:class:`~sagas.errors.StepNotSkippable`).
    """
    if not reason or not reason.strip():
        raise ReasonRequired()
    _operator_act(saga_id=saga_id, actor=actor, reason=reason.strip(), action=SKIP_STEP, now=now)


@dataclass(frozen=True)
class OperatorView:
    """Hold what an operator's decision needs beyond the saga's state (see ``attention``)."""

    claimed: bool
    past_deadline: bool


def _operator_act(
    *, saga_id: UUID, actor: str, reason: str, action: OperatorAction, now: datetime | None
) -> None:
    now = now or database_now()
    failed = SagaStatus.COMPENSATION_FAILED
    with transaction.atomic(durable=True):
        saga = saga_load(saga_id)
        if saga is None:
            raise SagaNotFound(saga_id)
        definition = get_definition(saga.saga_type, saga.definition_version)
        loaded = Loaded(saga=saga, definition=definition, state=saga_state(saga, definition))
        # The database's clock wrote the deadline; ``now`` is the database's too.
        view = OperatorView(
            claimed=saga.claim_token is not None, past_deadline=saga.finish_by < now
        )

        def decision(definition: SagaDefinition, state: SagaState) -> Transition:
            try:
                return action.decide(definition, state, view)
            except StepNotSkippable as exc:
                raise StepNotSkippable(saga_id=saga_id, status=exc.status, why=exc.why) from None
            except SagaStateConflict as exc:
                raise SagaStateConflict(
                    saga_id=saga_id, status=exc.status, action=action.conflict_verb
                ) from None

        recorded = outcome_record(loaded, decision, now=now)
        if not recorded.applied:
            # Another operator (or the engine) changed the saga since it was loaded.
            saga = saga_load(saga_id)
            if saga is None:
                raise SagaNotFound(saga_id)
            if action.kind is OperatorActionKind.SKIP_STEP:
                raise StepNotSkippable(
                    saga_id=saga_id,
                    status=saga.status,
                    why="it moved while you acted (an attempt started or ended); look again",
                )
            raise SagaStateConflict(
                saga_id=saga_id, status=saga.status, action=action.conflict_verb
            )
        kind = action.kind
        if kind is OperatorActionKind.SKIP_STEP and loaded.state.status is failed:
            # A failed compensation skipped: recorded as such (the saga left the
            # failed-compensation queue, as the dashboard's chart counts).
            kind = OperatorActionKind.SKIP_COMPENSATION
        SagaOperatorAction.objects.create(
            saga_id=saga_id,
            action=kind.value,
            actor=actor,
            reason=reason,
            step=recorded.loaded.saga.current_step,
            at=now,
        )


@dataclass(frozen=True)
class OperatorAction:
    """Describe one operator action on a failed compensation, for every edge that offers it.

    ``run`` is the service (keyword arguments ``saga_id``, ``actor``, ``reason``); it raises
    ``SagaNotFound``, ``SagaStateConflict`` or ``ReasonRequired``. ``done`` and ``command_done``
    take ``{step}`` (the compensation's step) and ``{saga_id}``.
    """

    kind: OperatorActionKind
    #: The admin action's name (also the bulk action posted by the changelist).
    admin_action: str
    #: The Django permission it needs ("app_label.codename").
    permission: str
    #: What a user without ``permission`` is told.
    denied: str
    needs_reason: bool
    #: What an operator is told when a required reason is missing.
    reason_required: str
    #: Help for the reason field (the admin form, the command's option).
    reason_help: str
    #: Page titles: several sagas at once, one saga.
    title: str
    single_title: str
    #: The confirmation button.
    verb: str
    #: What happened, after "Saga <id> ".
    done: str
    #: The management command's help and its success line.
    command_help: str
    command_done: str
    #: The verb in "cannot <verb> saga ...: it is <status>".
    conflict_verb: str
    run: Callable[..., None]
    decide: Callable[[SagaDefinition, SagaState, OperatorView], Transition]


RETRY = OperatorAction(
    kind=OperatorActionKind.RETRY,
    admin_action="retry_failed_compensations",
    permission="sagas.retry_saga",
    denied="Retrying a saga needs the retry permission.",
    needs_reason=False,
    reason_required="",
    reason_help="why (recorded with the action)",
    title="Retry failed compensations",
    single_title="Retry the failed compensation",
    verb="Yes, retry",
    done="retried: its compensation {step} runs again",
    command_help="Retry a saga's failed compensation (the saga must be COMPENSATION_FAILED).",
    command_done="saga {saga_id}: compensation retried",
    conflict_verb="retry",
    run=saga_retry,
    decide=lambda definition, state, view: decide_operator_retry(definition, state),
)
SKIP = OperatorAction(
    kind=OperatorActionKind.SKIP_COMPENSATION,
    admin_action="skip_failed_compensations",
    permission="sagas.skip_compensation",
    denied="Skipping a compensation needs the skip permission.",
    needs_reason=True,
    reason_required="A reason is required to skip a compensation.",
    reason_help="Why this compensation is resolved by hand (recorded with your name).",
    title="Skip failed compensations",
    single_title="Skip the failed compensation",
    verb="Yes, skip",
    done="skipped {step}'s compensation; compensating continues",
    command_help=(
        "Skip a COMPENSATION_FAILED saga's failed compensation (its step becomes SKIPPED) and "
        "continue with the compensations before it. A reason is required."
    ),
    command_done="saga {saga_id}: compensation skipped",
    conflict_verb="skip a compensation of",
    run=saga_skip_compensation,
    decide=lambda definition, state, view: decide_operator_skip(definition, state),
)
SKIP_STEP = OperatorAction(
    kind=OperatorActionKind.SKIP_STEP,
    admin_action="skip_steps_needing_attention",
    # The same permission as skipping a compensation: both resolve a step by hand.
    permission=SKIP.permission,
    denied="Skipping a step needs the skip permission.",
    needs_reason=True,
    reason_required="A reason is required to skip a step.",
    reason_help=(
        "Why this step is resolved by hand (its effect happened or is not needed); recorded "
        "with your name."
    ),
    title="Skip the steps of sagas needing attention",
    single_title="Skip the step this saga waits at",
    verb="Yes, skip",
    done="skipped its step {step} by hand; the saga carries on",
    command_help=(
        "Resolve by hand the step a saga needing attention waits at (past its deadline, or "
        "retrying forward past its point of no return; a COMPENSATION_FAILED saga's failed "
        "compensation too): the step counts as done and the saga carries on. A reason is "
        "required."
    ),
    command_done="saga {saga_id}: step skipped, the saga carries on",
    conflict_verb="skip a step of",
    run=saga_skip_step,
    decide=lambda definition, state, view: decide_operator_skip_step(
        definition, state, claimed=view.claimed, past_deadline=view.past_deadline
    ),
)

#: Every operator action, by kind.
OPERATOR_ACTIONS = {action.kind: action for action in (RETRY, SKIP, SKIP_STEP)}
