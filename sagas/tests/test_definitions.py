"""Saga definitions: validation, retry policies, errors, and the pure modules' purity."""

from __future__ import annotations

import subprocess
import sys
from uuid import UUID

import pytest

from sagas.definitions import (
    RetryPolicy,
    SagaDefinition,
    Step,
    StepBusinessFailure,
    StepCall,
    idempotency_key,
)


def noop(call: StepCall) -> None:
    return None


def test_business_failure_carries_code_and_message() -> None:
    failure = StepBusinessFailure("payment_declined", "card declined")
    assert (failure.code, failure.message) == ("payment_declined", "card declined")
    assert str(failure) == "payment_declined: card declined"
    assert StepBusinessFailure("out_of_stock").message == ""
    with pytest.raises(ValueError, match="code"):
        StepBusinessFailure("")


def test_idempotency_key_names_saga_step_and_phase() -> None:
    saga_id = UUID("12345678-1234-5678-1234-567812345678")
    assert (
        idempotency_key(saga_id=saga_id, step="charge_payment", phase="compensation")
        == "12345678-1234-5678-1234-567812345678:charge_payment:compensation"
    )


def test_compensations_retry_longer_than_actions_by_default() -> None:
    step = Step(name="a", action=noop)
    assert step.compensation_retry.max_attempts > step.retry.max_attempts
    assert step.compensation_retry.max_delay >= step.retry.max_delay


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_delay": -1.0}, "negative"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"initial_delay": 10.0, "max_delay": 5.0}, "exceed"),
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_definition_refuses_repeated_names_empty_sagas_and_late_local_steps() -> None:
    with pytest.raises(ValueError, match="repeats"):
        SagaDefinition(name="x", steps=(Step(name="a", action=noop), Step(name="a", action=noop)))
    with pytest.raises(ValueError, match="no steps"):
        SagaDefinition(name="x", steps=())
    with pytest.raises(ValueError, match="local step"):
        SagaDefinition(
            name="x", steps=(Step(name="a", action=noop), Step(name="b", action=noop, local=True))
        )
    with pytest.raises(ValueError, match="timeout"):
        Step(name="a", action=noop, timeout=0)
    with pytest.raises(ValueError, match="':'"):
        Step(name="a:b", action=noop)


def test_definition_finds_steps_by_name() -> None:
    definition = SagaDefinition(
        name="x", steps=(Step(name="a", action=noop), Step(name="b", action=noop))
    )
    assert definition.index("b") == 1
    assert definition.step("a").name == "a"
    with pytest.raises(KeyError):
        definition.index("zzz")


def test_pure_modules_import_neither_django_nor_celery() -> None:
    code = (
        "import sys; import sagas.definitions, sagas.engine, sagas.statuses, sagas.errors; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'celery', 'kombu')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
