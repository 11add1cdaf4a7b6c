"""Declare saga types: ordered steps, each an action with an optional compensation.

This module is the contract between the engine and the code that defines sagas (the order
sagas, the test sagas). It is plain Python with no Django or Celery import, so definitions and
the participants they name can be unit-tested without a database or a broker.

A participant (an action or a compensation) receives a :class:`StepCall` and either returns
a mapping to merge into the saga's context (or None), raises :class:`TransientStepError`
(retry with backoff), or raises :class:`StepBusinessFailure` (no retry: compensate now). Any
other exception is treated as transient (it may be a passing database error) and its type and
message are recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

#: What a participant returns: data to merge into the saga's context, or nothing.
StepResult = Mapping[str, Any] | None


class TransientStepError(Exception):
    """Signal a failure worth retrying (a timeout, a refused connection): back off, try again."""


class StepBusinessFailure(Exception):
    """Signal a failure that retrying cannot fix (out of stock, card declined): compensate now.

    ``code`` is a short machine-readable reason ("out_of_stock") that becomes the saga's
    failure code; ``message`` is for people.
    """

    def __init__(self, code: str, message: str = "") -> None:
        if not code:
            raise ValueError("a business failure needs a code")
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}" if message else code)


@dataclass(frozen=True)
class RetryPolicy:
    """Bound the attempts of a step and space them with exponential backoff and jitter.

    The n-th retry waits ``initial_delay * multiplier ** (n - 1)`` seconds, capped at
    ``max_delay``, then moved by up to ``± jitter`` of itself at random so that many sagas
    failing together do not retry in lockstep.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")
        if self.initial_delay > self.max_delay:
            raise ValueError("initial_delay cannot exceed max_delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay(self, *, failed_attempts: int, rand: float) -> float:
        """Return the seconds to wait after ``failed_attempts`` failures (``rand`` in [0, 1))."""
        exponent = max(failed_attempts - 1, 0)
        base = min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        spread = base * self.jitter * (2.0 * rand - 1.0)
        return max(0.0, base + spread)


#: Actions retry briefly: a step stuck for long holds the saga (and its order) in suspense.
DEFAULT_ACTION_RETRY = RetryPolicy()
#: Compensations retry longer: giving up means an operator has to step in.
DEFAULT_COMPENSATION_RETRY = RetryPolicy(
    max_attempts=10, initial_delay=1.0, multiplier=2.0, max_delay=60.0, jitter=0.2
)


@dataclass(frozen=True)
class Failure:
    """Say why a saga is compensating: which step failed for good, with what code."""

    step: str
    code: str
    message: str


@dataclass(frozen=True)
class StopRequest:
    """Ask a running saga to stop at its next step boundary and undo what it did.

    ``code`` becomes the failure code its compensations see (``cancelled_by_client``);
    ``actor`` is who asked. Recorded on the saga row (``sagas.recorder.stop_request_record``);
    the engine decides with it (``sagas.engine.decide``, ``decide_stop``).
    """

    code: str
    actor: str

    def __post_init__(self) -> None:
        if not self.code:
            raise ValueError("a stop request needs a code")

    def failure(self, step: str) -> Failure:
        """Return the failure a saga stopped at ``step`` compensates for."""
        return Failure(step=step, code=self.code, message=f"stop requested by {self.actor}")


@dataclass(frozen=True)
class LateStop:
    """Describe a saga asked to stop that completed first: its last step had already run.

    Handed to :attr:`SagaDefinition.on_late_stop` inside the transaction that records the
    completion, so whatever undoes the saga's effects (the order's cancel saga) starts with
    it or not at all.
    """

    saga_id: UUID
    saga_type: str
    context: Mapping[str, Any]
    correlation_id: str
    stop: StopRequest


#: Failure code of a step whose transient errors outlasted its retries (or its poison guard).
STEP_FAILED = "step_failed"
#: Failure code of an action failed by a permanent injected fault.
INJECTED_FAULT = "injected_fault"


@dataclass(frozen=True)
class StepCall:
    """Carry everything a participant needs for one attempt of one step.

    ``idempotency_key`` is the same on every attempt of the same step and phase, so a
    participant that records it with its effect makes that effect happen once however often
    it is called. ``context`` is a read-only view; return a mapping to change it.
    """

    saga_id: UUID
    saga_type: str
    step: str
    phase: Literal["action", "compensation"]
    attempt: int
    idempotency_key: str
    context: Mapping[str, Any]
    correlation_id: str
    actor: str
    failure: Failure | None = None


def idempotency_key(*, saga_id: UUID, step: str, phase: str) -> str:
    """Build the key a participant uses to make its effect happen once: saga, step, phase."""
    return f"{saga_id}:{step}:{phase}"


Participant = Callable[[StepCall], StepResult]


#: How a step recovers from failures its retries did not fix (see :class:`Step`).
ForwardRecovery = Literal["none", "transient", "always"]


@dataclass(frozen=True)
class Step:
    """Describe one step: its action, its compensation (None: nothing to undo) and limits.

    ``timeout`` bounds one attempt in seconds; an attempt running longer counts as a
    transient failure. ``local`` steps run inside the transaction that starts the saga (only
    leading steps may be local): their exceptions reach the caller and roll the start back.

    ``forward`` is for steps at or past the saga's point of no return, where compensating
    would leave things worse than finishing (a refund went out: the order must end
    cancelled). Such a step retries forward instead of giving up: once its attempts are
    spent it keeps trying every ``retry.max_delay`` seconds, its last error on show, until it
    succeeds or the cause is fixed. ``"transient"``: only failures of unknown outcome retry
    forever, a business failure still compensates (the pivot itself: a refused refund did
    nothing). ``"always"``: no failure compensates (the steps after the pivot).

    ``participant`` names the service the step calls; its messages go to that participant's
    queue (``SAGA_QUEUE_ROUTES``; none or an unrouted one: the default queue).
    """

    name: str
    action: Participant
    compensation: Participant | None = None
    retry: RetryPolicy = DEFAULT_ACTION_RETRY
    compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY
    timeout: float = 30.0
    local: bool = False
    forward: ForwardRecovery = "none"
    participant: str = ""

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"step name {self.name!r} must be non-empty and free of ':'")
        if self.timeout <= 0:
            raise ValueError(f"step {self.name!r}: timeout must be positive")
        if self.forward not in ("none", "transient", "always"):
            raise ValueError(f"step {self.name!r}: forward must be none, transient or always")
        if self.forward != "none" and self.local:
            raise ValueError(f"step {self.name!r}: a local step cannot retry forever")


#: Long enough for every retry of a step and of each compensation to run out (a saga that
#: needs more is stuck), short enough that an operator hears of a stuck order the same hour.
DEFAULT_SAGA_DEADLINE = timedelta(minutes=30)


@dataclass(frozen=True)
class SagaDefinition:
    """Name a saga type and list its steps in the order they run.

    ``version`` tells definitions of one type apart: a saga records the version it started
    under and finishes under it, so changing a type's steps means adding a definition with a
    higher version beside the old one (the registry starts new sagas on the highest), never
    editing one that unfinished sagas still follow.

    ``on_late_stop`` is called when a saga asked to stop completes before it could stop (see
    :class:`LateStop`); None: such a saga just completes.

    ``deadline`` is how long after its start a saga of this type should have finished
    (``settings.SAGA_DEADLINES`` overrides it by type, ``sagas.registry.saga_deadline``). A
    saga still unfinished past it waits in the "needs attention" queue for an operator.
    """

    name: str
    steps: tuple[Step, ...] = field(default_factory=tuple)
    on_late_stop: Callable[[LateStop], None] | None = None
    version: int = 1
    deadline: timedelta = DEFAULT_SAGA_DEADLINE

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a saga definition needs a name")
        if self.version < 1:
            raise ValueError(f"saga {self.name!r}: version must be at least 1")
        if not self.steps:
            raise ValueError(f"saga {self.name!r} has no steps")
        if self.deadline <= timedelta(0):
            raise ValueError(f"saga {self.name!r}: deadline must be positive")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name!r} repeats a step name: {names}")
        seen_remote = False
        for step in self.steps:
            if step.local and seen_remote:
                raise ValueError(
                    f"saga {self.name!r}: local step {step.name!r} follows a remote step; "
                    "only leading steps can run inside the starting transaction"
                )
            seen_remote = seen_remote or not step.local

    def index(self, step: str) -> int:
        """Return the position of the step named ``step`` (KeyError when there is none)."""
        for i, candidate in enumerate(self.steps):
            if candidate.name == step:
                return i
        raise KeyError(f"saga {self.name!r} has no step {step!r}")

    def step(self, name: str) -> Step:
        """Return the step named ``name`` (KeyError when there is none)."""
        return self.steps[self.index(name)]
