"""What a saga definition accepts at its limits, and the exact words of each refusal.

A definition is checked once, at import time, so a refusal's message is all a developer
reads: each is compared whole here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from sagas.definitions import RetryPolicy, SagaDefinition, Step, StepBusinessFailure, StepCall


def noop(call: StepCall) -> None:
    return None


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def test_a_retry_policy_accepts_every_limit() -> None:
    tight = RetryPolicy(max_attempts=1, initial_delay=0, max_delay=0, multiplier=1, jitter=0)
    flat = RetryPolicy(initial_delay=2, max_delay=2, jitter=1)

    assert tight.delay(failed_attempts=3, rand=0.5) == 0
    assert flat.delay(failed_attempts=1, rand=0.75) == 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"initial_delay": -0.1}, "delays cannot be negative"),
        ({"max_delay": -1}, "delays cannot be negative"),
        ({"initial_delay": 3, "max_delay": 2}, "initial_delay cannot exceed max_delay"),
        ({"multiplier": 0.5}, "multiplier must be at least 1"),
        ({"jitter": 1.5}, "jitter is a fraction between 0 and 1"),
        ({"jitter": -0.1}, "jitter is a fraction between 0 and 1"),
    ],
)
def test_a_retry_policy_names_what_it_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy(**kwargs)


def test_a_step_may_time_out_in_under_a_second() -> None:
    assert Step(name="quick", action=noop, timeout=0.5).timeout == 0.5


def test_a_step_names_a_forward_mode_it_does_not_know() -> None:
    with pytest.raises(
        ValueError, match=exactly("step 'x': forward must be none, transient or always")
    ):
        Step(name="x", action=noop, forward="sometimes")  # type: ignore[arg-type]


def test_a_saga_definition_names_what_it_refuses() -> None:
    local = Step(name="local", action=noop, local=True)
    remote = Step(name="remote", action=noop)

    with pytest.raises(ValueError, match=exactly("a saga definition needs a name")):
        SagaDefinition(name="", steps=(remote,))
    with pytest.raises(
        ValueError,
        match=exactly(
            "saga 'late': local step 'local' follows a remote step; "
            "only leading steps can run inside the starting transaction"
        ),
    ):
        SagaDefinition(name="late", steps=(remote, local))


def test_looking_up_a_missing_step_names_the_saga_and_the_step() -> None:
    definition = SagaDefinition(name="s", steps=(Step(name="a", action=noop),))
    with pytest.raises(KeyError) as caught:
        definition.index("zz")
    assert caught.value.args == ("saga 's' has no step 'zz'",)


def test_a_business_failure_reads_as_its_code_and_message() -> None:
    assert str(StepBusinessFailure("declined")) == "declined"
    assert str(StepBusinessFailure("declined", "no funds")) == "declined: no funds"
    with pytest.raises(ValueError, match=exactly("a business failure needs a code")):
        StepBusinessFailure("")
