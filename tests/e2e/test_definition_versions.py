"""A saga definition changes under running sagas: each saga finishes under its own version.

Sagas of ``test.versioned`` are started under version 1 (reserve, charge, pack, ship) and
held at each of its steps, forward and compensating, by running their attempts here, as the
old release's worker would have, up to that step (one of them mid-retry under an injected
fault). Then real Celery workers of the next release take over. That release's code has
version 2 (charge renamed to bill, check inserted, pack removed):

- a worker that dropped version 1 refuses every step of those sagas and leaves them as they
  were, unclaimed;
- a worker that keeps version 1 beside version 2 finishes them exactly as version 1 says,
  while sagas started under version 2 run as version 2 says.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from infrastructure.clock import database_now
from sagas import registry
from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import Saga
from sagas.runner import step_attempt_run
from sagas.services import sagas_sweep
from sagas.statuses import FaultMode, Phase, SagaStatus
from sagas.testing.models import Call
from sagas.tests.harness import effect_order, effects, log_of, start, step_statuses
from sagas.workers import current_worker
from tests.e2e.own_worker import own_worker
from tests.support.invariants import assert_invariants
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TYPE = "test.versioned"
V1_STEPS = ["reserve", "charge", "pack", "ship"]
V2_STEPS = ["reserve", "bill", "check", "ship"]
FINAL = [SagaStatus.COMPLETED.value, SagaStatus.COMPENSATED.value]


def act(*steps: str) -> list[tuple[str, str]]:
    return [(step, "action") for step in steps]


def undo(*steps: str) -> list[tuple[str, str]]:
    return [(step, "compensation") for step in steps]


def run_attempts(saga_id: UUID, count: int) -> Saga:
    """Run the saga's next ``count`` attempts in this process, on the database's clock."""
    for _ in range(count):
        saga = Saga.objects.get(pk=saga_id)
        report = step_attempt_run(
            saga_id=saga_id,
            step=saga.current_step,
            phase=Phase(saga.current_phase),
            worker=current_worker("old-release"),
            clock=database_now,
        )
        assert report.ran, report.detail
    return Saga.objects.get(pk=saga_id)


def where(saga: Saga) -> tuple[str, str, str, int, UUID | None]:
    return (saga.status, saga.current_step, saga.current_phase, saga.attempt, saga.claim_token)


def test_sagas_finish_under_the_definition_version_they_started_with(
    settings: Any, tmp_path: Path
) -> None:
    # The sweeper, run here as beat would, re-sends a due step at once.
    settings.SAGA_SWEEP_GRACE_SECONDS = 0
    registry.reset()
    assert registry.get_definition(TYPE).version == 1

    # --- the old release: version 1 only, sagas held at each step ----------------------------
    # Forward, held before each step: (saga, attempts already run, expected effects).
    old: dict[str, tuple[UUID, list[tuple[str, str]]]] = {}
    for ran, step in enumerate(V1_STEPS):
        saga_id = start(TYPE, {"held": step})
        assert run_attempts(saga_id, ran).current_step == step
        old[f"before {step}"] = (saga_id, act(*V1_STEPS))
    # Fails at pack, the step version 2 removed, when the new release runs it.
    saga_id = start(TYPE, {"fail_at": "pack"})
    run_attempts(saga_id, 2)
    old["fails at pack"] = (saga_id, act("reserve", "charge") + undo("charge", "reserve"))
    # Failed at ship, held before each compensation.
    for ran, step in ((4, "pack"), (5, "charge"), (6, "reserve")):
        saga_id = start(TYPE, {"fail_at": "ship"})
        saga = run_attempts(saga_id, ran)
        assert (saga.status, saga.current_step) == (SagaStatus.COMPENSATING, step)
        old[f"compensating {step}"] = (
            saga_id,
            act("reserve", "charge", "pack") + undo("pack", "charge", "reserve"),
        )
    # Mid-retry at charge, the step version 2 renamed: an injected transient fault failed it.
    fault_rule_set(
        saga_type=TYPE, step="charge", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=1
    )
    saga_id = start(TYPE)
    saga = run_attempts(saga_id, 2)
    assert (saga.current_step, saga.attempt) == ("charge", 1)
    old["retrying charge"] = (saga_id, act(*V1_STEPS))
    fault_rules_clear()

    held = {name: where(Saga.objects.get(pk=saga_id)) for name, (saga_id, _) in old.items()}
    calls_before = Call.objects.count()
    assert {Saga.objects.get(pk=s).definition_version for s, _ in old.values()} == {1}

    # --- a new release that dropped version 1: it refuses, and guesses nothing ------------------
    with own_worker(
        "tests.e2e.versioned_worker",
        tmp_path / "v2-only.log",
        test_settings=settings,
        env={"VERSIONED_DEFINITIONS": "v2"},
    ) as worker:

        def all_refused() -> bool:
            # Again until every step was sent: the retrying one is due after its backoff.
            sagas_sweep(now=database_now())
            return all(f"saga {s} step" in worker.log() for s, _ in old.values())

        wait_for(
            all_refused,
            timeout=60,
            interval=0.5,
            message="the worker without version 1 to refuse every held saga's step",
        )
        log = worker.log()
    assert log.count("has no registered definition version 1") >= len(old), log
    assert {name: where(Saga.objects.get(pk=s)) for name, (s, _) in old.items()} == held
    assert Call.objects.count() == calls_before, "a step ran under a version it did not start on"

    # --- the new release done right: version 2 beside version 1 ---------------------------------
    settings.SAGA_DEFINITIONS = [*settings.SAGA_DEFINITIONS, "sagas.testing.sagas.VERSIONED_V2"]
    registry.reset()
    try:
        with own_worker(
            "tests.e2e.versioned_worker",
            tmp_path / "v1-v2.log",
            test_settings=settings,
            env={"VERSIONED_DEFINITIONS": "v1,v2"},
        ) as worker:
            new = {
                "completes": (start(TYPE), act(*V2_STEPS)),
                "fails at check": (
                    start(TYPE, {"fail_at": "check"}),
                    act("reserve", "bill") + undo("bill", "reserve"),
                ),
                "fails at ship": (
                    start(TYPE, {"fail_at": "ship"}),
                    act("reserve", "bill", "check") + undo("check", "bill", "reserve"),
                ),
            }
            every = [saga_id for saga_id, _ in [*old.values(), *new.values()]]

            def all_finished() -> bool:
                sagas_sweep(now=database_now())
                return Saga.objects.filter(pk__in=every, status__in=FINAL).count() == len(every)

            wait_for(all_finished, timeout=120, interval=0.5, message="every saga to finish")
            log = worker.log()

        for name, (saga_id, expected) in old.items():
            saga = Saga.objects.get(pk=saga_id)
            assert saga.definition_version == 1, name
            assert list(step_statuses(saga_id)) == V1_STEPS, name
            # Each effect once, in version 1's order, forward then undone in reverse.
            assert effect_order(saga_id) == expected, (name, log)
            assert effects(saga_id) == Counter(expected), name
            failed = "fail_at" in saga.context
            assert saga.status == (SagaStatus.COMPENSATED if failed else SagaStatus.COMPLETED)
        for name, (saga_id, expected) in new.items():
            saga = Saga.objects.get(pk=saga_id)
            assert saga.definition_version == 2, name
            assert list(step_statuses(saga_id)) == V2_STEPS, name
            assert effect_order(saga_id) == expected, (name, log)
            assert effects(saga_id) == Counter(expected), name
        # The retried step ran again under its version 1 name, after the injected failure.
        assert log_of(old["retrying charge"][0], "charge") == ["RETRYING", "SUCCEEDED"]
        assert "has no registered definition version" not in log
        assert_invariants()
    finally:
        registry.reset()
