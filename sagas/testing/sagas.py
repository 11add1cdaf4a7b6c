"""Saga definitions for the engine's tests and benchmark (listed in settings when testing)."""

from __future__ import annotations

from sagas.definitions import RetryPolicy, SagaDefinition, Step
from sagas.testing.participants import record

#: Retries fast enough for a test to watch them all.
QUICK = RetryPolicy(max_attempts=3, initial_delay=0.05, multiplier=2.0, max_delay=0.2, jitter=0.1)


def _recording_steps() -> tuple[Step, ...]:
    # c has no compensation: compensating passes over it.
    return (
        Step(name="a", action=record, compensation=record, retry=QUICK, compensation_retry=QUICK),
        Step(name="b", action=record, compensation=record, retry=QUICK, compensation_retry=QUICK),
        Step(name="c", action=record, retry=QUICK),
        Step(name="d", action=record, compensation=record, retry=QUICK, compensation_retry=QUICK),
    )


#: Four recording steps (a, b, c without compensation, d).
EFFECTS = SagaDefinition(name="test.effects", steps=_recording_steps())

#: The same steps; sagas.testing.duplication publishes every message of this type twice.
DUPLICATED = SagaDefinition(name="test.duplicated", steps=_recording_steps())

#: A first step that runs inside the starting transaction, then two remote ones.
LOCAL = SagaDefinition(
    name="test.local",
    steps=(
        Step(name="create", action=record, compensation=record, local=True, retry=QUICK),
        Step(name="b", action=record, compensation=record, retry=QUICK, compensation_retry=QUICK),
        Step(name="c", action=record, compensation=record, retry=QUICK, compensation_retry=QUICK),
    ),
)

#: A step with a one-second timeout (its first call can be told to sleep past it).
TIMEOUT = SagaDefinition(
    name="test.timeout",
    steps=(
        Step(name="a", action=record, compensation=record, retry=QUICK),
        Step(name="slow", action=record, compensation=record, retry=QUICK, timeout=1.0),
    ),
)

#: A step whose retries back off far longer than a broker countdown may wait.
LONG_BACKOFF = SagaDefinition(
    name="test.long_backoff",
    steps=(
        Step(name="a", action=record, compensation=record, retry=QUICK),
        Step(
            name="b",
            action=record,
            compensation=record,
            retry=RetryPolicy(max_attempts=3, initial_delay=60.0, max_delay=120.0, jitter=0.0),
        ),
    ),
)

#: A pivot (b: only transient failures retry forever) and a step past it (c: every failure
#: retries forever); a and b can be undone.
FORWARD = SagaDefinition(
    name="test.forward",
    steps=(
        Step(name="a", action=record, compensation=record, retry=QUICK, compensation_retry=QUICK),
        Step(
            name="b",
            action=record,
            compensation=record,
            retry=QUICK,
            compensation_retry=QUICK,
            forward="transient",
        ),
        Step(name="c", action=record, retry=QUICK, forward="always"),
    ),
)

#: One step per participant, so each goes to that participant's queue (the several-hosts lab
#: test gives the queues to different workers); the last one's lease is short enough to watch
#: run out.
HOSTS = SagaDefinition(
    name="test.hosts",
    steps=(
        Step(name="reserve", action=record, retry=QUICK, participant="inventory"),
        Step(name="charge", action=record, retry=QUICK, participant="payments"),
        Step(name="confirm", action=record, retry=QUICK, participant="orders", timeout=10.0),
    ),
)


def _recorded(name: str) -> Step:
    return Step(
        name=name, action=record, compensation=record, retry=QUICK, compensation_retry=QUICK
    )


#: A saga type changed between two releases. Version 1, what the settings list when testing
#: (the release before the change): reserve, charge, pack, ship.
VERSIONED_V1 = SagaDefinition(
    name="test.versioned",
    version=1,
    steps=(_recorded("reserve"), _recorded("charge"), _recorded("pack"), _recorded("ship")),
)

#: Version 2, the release after it: charge renamed to bill, check inserted after it, pack
#: removed. Registered beside version 1 by the worker of that release
#: (``tests.e2e.versioned_worker``) and by the test that starts sagas on it.
VERSIONED_V2 = SagaDefinition(
    name="test.versioned",
    version=2,
    steps=(_recorded("reserve"), _recorded("bill"), _recorded("check"), _recorded("ship")),
)
