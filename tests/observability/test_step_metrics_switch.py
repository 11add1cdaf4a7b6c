"""SAGA_STEP_METRICS: the benchmark's "observability off" switch for the workers' step series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sagas import telemetry
from sagas.engine import Transition
from sagas.statuses import AttemptStatus, SagaStatus, StepStatus

LABELS = {"saga_type": "test.switch", "step": "s1", "phase": "action", "outcome": "SUCCEEDED"}


@pytest.fixture(autouse=True)
def _read_afresh() -> Iterator[None]:
    """The setting is read once per process: forget it around each test."""
    telemetry._metrics_recorded.cache_clear()
    yield
    telemetry._metrics_recorded.cache_clear()


def _attempts() -> float:
    return REGISTRY.get_sample_value("backoffice_saga_step_attempts_total", LABELS) or 0.0


def _observe() -> None:
    now = datetime.now(UTC)
    telemetry.attempt_observed(
        saga_id="00000000-0000-0000-0000-000000000001",
        saga_type=LABELS["saga_type"],
        subject="",
        step=LABELS["step"],
        phase=LABELS["phase"],
        transition=Transition(
            saga_status=SagaStatus.RUNNING,
            step_status=StepStatus.SUCCEEDED,
            attempt_status=AttemptStatus.SUCCEEDED,
            error="",
            next=None,
            failure=None,
        ),
        started_at=now - timedelta(milliseconds=5),
        now=now,
    )


def test_attempts_are_counted_by_default() -> None:
    before = _attempts()
    _observe()
    assert _attempts() == before + 1


def test_no_series_are_recorded_when_switched_off(settings: Any) -> None:
    settings.SAGA_STEP_METRICS = False
    before = _attempts()
    _observe()
    assert _attempts() == before
