"""Errors the saga engine raises to its callers (services, commands, the API).

Plain Python, so the pure engine can raise them too.
"""

from __future__ import annotations

from uuid import UUID


class SagaError(Exception):
    """Base class of the saga engine's errors."""


class UnknownSagaType(SagaError):
    """Say that no definition in ``settings.SAGA_DEFINITIONS`` has this name."""

    def __init__(self, saga_type: str) -> None:
        self.saga_type = saga_type
        super().__init__(f"no saga definition is named {saga_type!r}")


class UnknownDefinitionVersion(UnknownSagaType):
    """Say that the saga type is registered, but not in the version a saga started under.

    A worker meeting it leaves the saga alone: running the saga's steps under another
    version would guess at what it did and what undoing it means.
    """

    def __init__(self, saga_type: str, version: int) -> None:
        self.version = version
        super().__init__(saga_type)
        self.args = (f"saga type {saga_type!r} has no registered definition version {version}",)

    def __str__(self) -> str:
        return str(self.args[0])


class SagaNotFound(SagaError):
    """Say that no saga has this id."""

    def __init__(self, saga_id: UUID) -> None:
        self.saga_id = saga_id
        super().__init__(f"saga {saga_id} does not exist")


class SagaStateConflict(SagaError):
    """Refuse an operator action the saga's current status does not allow."""

    def __init__(self, *, saga_id: UUID | None, status: str, action: str) -> None:
        self.saga_id = saga_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} saga {saga_id}: it is {status}, not COMPENSATION_FAILED")


class StepNotSkippable(SagaStateConflict):
    """Refuse to skip a step by hand: the saga needs no attention, or the step is running."""

    def __init__(self, *, saga_id: UUID | None, status: str, why: str) -> None:
        SagaError.__init__(self, f"cannot skip a step of saga {saga_id}: {why}")
        self.saga_id = saga_id
        self.status = status
        self.action = "skip a step of"
        self.why = why


class ReasonRequired(SagaError):
    """Refuse to skip a compensation without saying why."""

    def __init__(self) -> None:
        super().__init__("skipping a step or a compensation needs a non-empty reason")


class SagaAlreadyActive(SagaError):
    """Refuse a second active exclusive saga on the same subject."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"an exclusive saga is already active on {subject!r}")


class TransactionRequired(SagaError):
    """Refuse to start a saga outside the caller's ``transaction.atomic()`` block."""

    def __init__(self) -> None:
        super().__init__(
            "saga_begin joins the caller's transaction: call it inside transaction.atomic()"
        )
