"""Store sagas durably: the saga row, one row per step, a log row per attempt, operator actions.

The saga row is the truth about where a saga stands and the only thing a worker locks. Besides
status and context it holds the *cursor* (the step and phase that run next), the attempt count
there, and the scheduling fields the claim protocol and the sweeper use:

- ``definition_version``: the version of its type's definition it started under, and runs
  under until it finishes (``sagas.registry``);
- ``due_at``: an attempt at the cursor is waiting to run from this time (NULL while one runs
  or when the saga rests);
- ``dispatched_at``: when a message for it was last handed to the broker (NULL: none was, the
  due time is the sweeper's to act on);
- ``stop_code``, ``stop_actor``, ``stop_requested_at``: a request to stop the saga at its
  next step boundary and compensate (``sagas.engine``);
- ``claim_token``, ``claimed_at``, ``claim_host``, ``claim_pid``, ``claim_worker``,
  ``claim_process`` and ``lease_until``: the attempt running now (``claim_process`` is the
  worker's collision-free identity, ``sagas.workers``), and its lease: the time past which
  the attempt counts as stalled and the sweeper times it out (claimed at + the step's
  timeout + the hard limit's grace twice, ``sagas.claims.lease_length``);
- ``finish_by``: the saga's own deadline, DESIGN.md's ``deadline`` (the API shows it so):
  start + its definition's deadline; unfinished past it, the saga needs an operator's
  attention (``NeedsAttention``); ``overdue_reported_at``: when the sweeper first saw it
  past ``finish_by`` and said so (once per saga).

Step rows are what people read (status, attempts, last error, times); the engine updates them
alongside the saga row but never decides from them. Foreign keys to the saga carry no index
of their own: each table's composite index or unique constraint starts with ``saga_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from django.db import models
from django.db.models import ExpressionWrapper, Q, Value
from django.db.models.functions import Now

from sagas.definitions import DEFAULT_SAGA_DEADLINE, Failure, StopRequest
from sagas.statuses import (
    ACTIVE_SAGA_STATUSES,
    COMPENSATION_STEP_STATUSES,
    MOVING_SAGA_STATUSES,
    AttemptStatus,
    FaultMode,
    OperatorActionKind,
    Phase,
    SagaStatus,
    StepStatus,
)


def _choices(members: Iterable[StrEnum]) -> list[tuple[str, str]]:
    return [(m.value, m.value) for m in members]


def _in(field: str, members: Iterable[StrEnum]) -> Q:
    # Sorted: a set's order changes between processes, and migrations must not.
    return Q(**{f"{field}__in": sorted(m.value for m in members)})


REST_STATUSES = [SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED]


class Saga(models.Model):
    """Run one multi-step process to its end, or undo it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    saga_type = models.CharField(max_length=100)
    #: The version of its type's definition the saga started under and finishes under
    #: (``sagas.registry``). db_default: sagas from before versions existed are version 1.
    definition_version = models.PositiveIntegerField(default=1, db_default=1)
    status = models.CharField(max_length=32, choices=_choices(SagaStatus))
    #: What the saga acts on ("order:<uuid>"), for listing a subject's sagas.
    subject = models.CharField(max_length=200, blank=True, default="")
    #: At most one active exclusive saga per subject (a partial unique index enforces it).
    exclusive = models.BooleanField(default=False)
    correlation_id = models.CharField(max_length=200, blank=True, default="")
    #: Who started the saga ("user:7"), passed to participants for their audit trails.
    actor = models.CharField(max_length=200, blank=True, default="")
    context = models.JSONField(default=dict)

    current_step = models.CharField(max_length=100)
    current_phase = models.CharField(max_length=16, choices=_choices(Phase))
    attempt = models.PositiveIntegerField(default=0)
    round_start = models.PositiveIntegerField(default=0)
    redeliveries = models.PositiveIntegerField(default=0)

    due_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    #: The running attempt's lease: past it, the attempt counts as stalled (NULL: none runs).
    # Its column keeps the name it had before sagas had deadlines of their own, so processes of
    # the previous release keep working beside this one during a rolling deploy.
    lease_until = models.DateTimeField(null=True, blank=True, db_column="deadline")
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_host = models.CharField(max_length=255, blank=True, default="")
    claim_pid = models.IntegerField(null=True, blank=True)
    claim_worker = models.CharField(max_length=255, blank=True, default="")
    claim_process = models.CharField(max_length=100, blank=True, default="")

    #: The saga's deadline (the contract's and the API's ``deadline``).
    # db_default: rows written before this column existed got start + the default deadline
    # by the migration; an INSERT of the previous release during a rolling deploy gets one
    # from the database's clock (as late as such a row can be, never NULL).
    finish_by = models.DateTimeField(
        db_default=ExpressionWrapper(
            Now() + Value(DEFAULT_SAGA_DEADLINE), output_field=models.DateTimeField()
        )
    )
    overdue_reported_at = models.DateTimeField(null=True, blank=True)

    failure_step = models.CharField(max_length=100, blank=True, default="")
    failure_code = models.CharField(max_length=100, blank=True, default="")
    failure_message = models.TextField(blank=True, default="")

    #: A request to stop at the next step boundary and compensate (``sagas.engine``): its
    #: code (the compensations' failure code), who asked and when. Written once, by the
    #: request (``sagas.recorder.stop_request_record``).
    # db_default too: an INSERT written before these columns existed (a process of the
    # previous release during a rolling deploy, a raw seed) still writes a valid row.
    stop_code = models.CharField(max_length=100, blank=True, default="", db_default="")
    stop_actor = models.CharField(max_length=200, blank=True, default="", db_default="")
    stop_requested_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("retry_saga", "Can retry a saga's failed compensation"),
            ("skip_compensation", "Can skip a saga's failed compensation"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=_in("status", SagaStatus), name="sagas_saga_status_valid"
            ),
            models.CheckConstraint(
                condition=_in("current_phase", Phase), name="sagas_saga_phase_valid"
            ),
            # A claim always comes with its lease, and a claimed attempt is not also due.
            models.CheckConstraint(
                condition=Q(claim_token__isnull=True, lease_until__isnull=True)
                | Q(claim_token__isnull=False, lease_until__isnull=False, due_at__isnull=True),
                name="sagas_saga_claim_consistent",
            ),
            # A saga at rest has nothing due and nothing running.
            models.CheckConstraint(
                condition=~_in("status", REST_STATUSES)
                | Q(due_at__isnull=True, claim_token__isnull=True),
                name="sagas_saga_rest_is_idle",
            ),
            models.CheckConstraint(
                condition=Q(round_start__lte=models.F("attempt")),
                name="sagas_saga_round_within_attempts",
            ),
            models.UniqueConstraint(
                fields=["subject"],
                condition=Q(exclusive=True) & _in("status", ACTIVE_SAGA_STATUSES),
                name="sagas_saga_one_active_exclusive_per_subject",
            ),
        ]
        indexes = [
            models.Index(fields=["subject", "-created_at"], name="sagas_saga_subject_idx"),
            # Also the sweeper's: it scans only RUNNING and COMPENSATING sagas. due_at and
            # lease_until are deliberately not indexed: every step rewrites them, and an update
            # that touches no indexed column is a HOT update (no index entries to write).
            models.Index(fields=["status", "saga_type"], name="sagas_saga_status_type_idx"),
            models.Index(fields=["-created_at"], name="sagas_saga_created_idx"),
            models.Index(fields=["correlation_id"], name="sagas_saga_correlation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.saga_type} {self.id} ({self.status})"

    @property
    def type(self) -> str:
        """Return the saga type (the API calls it ``type``)."""
        return self.saga_type

    @property
    def failure(self) -> Failure | None:
        """Return why the saga compensates (step, code, message), or None when it does not."""
        if not self.failure_code:
            return None
        return Failure(step=self.failure_step, code=self.failure_code, message=self.failure_message)

    @property
    def stop(self) -> StopRequest | None:
        """Return the request to stop the saga, or None when nobody asked."""
        if not self.stop_code:
            return None
        return StopRequest(code=self.stop_code, actor=self.stop_actor)


class FailedCompensationManager(models.Manager["FailedCompensation"]):
    """Keep only the sagas waiting in COMPENSATION_FAILED."""

    def get_queryset(self) -> models.QuerySet[FailedCompensation]:
        """Return the sagas whose compensation failed for good, waiting for an operator."""
        return super().get_queryset().filter(status=SagaStatus.COMPENSATION_FAILED.value)


class FailedCompensation(Saga):
    """Show a saga waiting in COMPENSATION_FAILED for an operator's retry or skip.

    The failed-compensation queue of the admin. A view of sagas, so it has no permissions of
    its own: whoever may view sagas sees it, and retry and skip need the saga's.
    """

    objects: ClassVar[FailedCompensationManager] = FailedCompensationManager()

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "failed compensation"
        verbose_name_plural = "failed compensations"


def needs_attention_condition() -> Q:
    """Return the condition of sagas needing an operator, as ``sagas.engine.attention`` says.

    COMPENSATION_FAILED; moving past its deadline (the database's clock, which wrote it);
    or RUNNING at a forward step whose failures this round reached its policy's attempts
    (the attempt running now, if any, not counted). Built from the registered definitions.
    """
    from sagas.registry import definitions  # the registry reads settings: not at import

    claimed = Q(claim_token__isnull=False)
    forward = Q(pk__in=[])
    for definition in definitions():
        for step in definition.steps:
            if step.forward == "none":
                continue
            spent = models.F("round_start") + step.retry.max_attempts
            forward |= Q(saga_type=definition.name, current_step=step.name) & (
                (~claimed & Q(attempt__gte=spent)) | (claimed & Q(attempt__gt=spent))
            )
    return (
        Q(status=SagaStatus.COMPENSATION_FAILED.value)
        | (_in("status", MOVING_SAGA_STATUSES) & Q(finish_by__lt=Now()))
        | (Q(status=SagaStatus.RUNNING.value, current_phase=Phase.ACTION.value) & forward)
    )


class NeedsAttentionManager(models.Manager["NeedsAttention"]):
    """Keep only the sagas that need an operator (:func:`needs_attention_condition`)."""

    def get_queryset(self) -> models.QuerySet[NeedsAttention]:
        """Return the sagas an operator has to move on."""
        return super().get_queryset().filter(needs_attention_condition())


class NeedsAttention(Saga):
    """Show a saga an operator has to move on: past its deadline, retrying forward past its
    point of no return, or waiting in COMPENSATION_FAILED.

    The admin's "needs attention" queue; like :class:`FailedCompensation`, a view of sagas
    with no permissions of its own.
    """

    objects: ClassVar[NeedsAttentionManager] = NeedsAttentionManager()

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "saga needing attention"
        verbose_name_plural = "sagas needing attention"


class SagaStep(models.Model):
    """Show where one step of a saga stands (its compensation's status once compensating)."""

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="steps", db_index=False)
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=32, choices=_choices(StepStatus))
    compensable = models.BooleanField()
    action_attempts = models.PositiveIntegerField(default=0)
    compensation_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    action_started_at = models.DateTimeField(null=True, blank=True)
    action_finished_at = models.DateTimeField(null=True, blank=True)
    compensation_started_at = models.DateTimeField(null=True, blank=True)
    compensation_finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["saga", "position"], name="sagas_step_position_unique"),
            models.UniqueConstraint(fields=["saga", "name"], name="sagas_step_name_unique"),
            models.CheckConstraint(
                condition=_in("status", StepStatus), name="sagas_step_status_valid"
            ),
        ]
        ordering = ["saga", "position"]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def in_compensation(self) -> bool:
        """Tell whether the step shows its compensation (compensating or past it)."""
        return StepStatus(self.status) in COMPENSATION_STEP_STATUSES

    @property
    def attempts(self) -> int:
        """Return the attempts of the phase the step shows."""
        return self.compensation_attempts if self.in_compensation else self.action_attempts

    @property
    def started_at(self) -> datetime | None:
        """Return when the phase the step shows first started."""
        return self.compensation_started_at if self.in_compensation else self.action_started_at

    @property
    def finished_at(self) -> datetime | None:
        """Return when the phase the step shows finished (None while it has not)."""
        return self.compensation_finished_at if self.in_compensation else self.action_finished_at


class SagaStepExecution(models.Model):
    """Log one attempt of a step's action or compensation: who ran it, when, how it ended."""

    saga = models.ForeignKey(
        Saga, on_delete=models.CASCADE, related_name="executions", db_index=False
    )
    step = models.CharField(max_length=100)
    position = models.PositiveSmallIntegerField()
    phase = models.CharField(max_length=16, choices=_choices(Phase))
    attempt = models.PositiveIntegerField()
    status = models.CharField(max_length=32, choices=_choices(AttemptStatus))
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    #: When the attempt's outcome was recorded.
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=_in("status", AttemptStatus), name="sagas_execution_status_valid"
            ),
            models.CheckConstraint(
                condition=_in("phase", Phase), name="sagas_execution_phase_valid"
            ),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="sagas_execution_attempt_pos"),
        ]
        indexes = [models.Index(fields=["saga", "at"], name="sagas_execution_saga_at_idx")]

    def __str__(self) -> str:
        return f"{self.step} {self.phase} #{self.attempt} {self.status}"


class SagaOperatorAction(models.Model):
    """Record what an operator did to a saga: who, when, why."""

    saga = models.ForeignKey(
        Saga, on_delete=models.CASCADE, related_name="operator_actions", db_index=False
    )
    action = models.CharField(max_length=32, choices=_choices(OperatorActionKind))
    actor = models.CharField(max_length=200)
    reason = models.TextField(blank=True, default="")
    step = models.CharField(max_length=100)
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=_in("action", OperatorActionKind), name="sagas_operator_action_valid"
            ),
            # A skip without a reason would leave nobody able to tell why a compensation
            # never ran, or why a step counts as done.
            models.CheckConstraint(
                condition=~_in(
                    "action", [OperatorActionKind.SKIP_COMPENSATION, OperatorActionKind.SKIP_STEP]
                )
                | ~Q(reason=""),
                name="sagas_operator_skip_has_reason",
            ),
        ]
        indexes = [models.Index(fields=["saga", "at"], name="sagas_operator_saga_at_idx")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} at {self.at:%Y-%m-%d %H:%M:%S}"


class FaultRule(models.Model):
    """Make a saga step's action or compensation fail on purpose (fault injection).

    ``remaining`` counts the failures still to inject; NULL means until the rule is cleared.
    Honoured only when ``settings.FAULT_INJECTION_ENABLED`` is true.
    """

    saga_type = models.CharField(max_length=100)
    step = models.CharField(max_length=100)
    phase = models.CharField(max_length=16, choices=_choices(Phase))
    mode = models.CharField(max_length=16, choices=_choices(FaultMode))
    remaining = models.PositiveIntegerField(null=True, blank=True)
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["saga_type", "step", "phase"], name="sagas_fault_one_rule_per_target"
            ),
            models.CheckConstraint(condition=_in("phase", Phase), name="sagas_fault_phase_valid"),
            models.CheckConstraint(condition=_in("mode", FaultMode), name="sagas_fault_mode_valid"),
        ]
        ordering = ["saga_type", "step", "phase"]

    def __str__(self) -> str:
        times = "until cleared" if self.remaining is None else f"{self.remaining} more"
        return f"{self.mode} fault on {self.saga_type}.{self.step} {self.phase} ({times})"
