"""A saga's start as written: every column of its three tables, and the start's atomicity."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sagas import registry
from sagas.definitions import SagaDefinition, Step, StepCall
from sagas.errors import SagaAlreadyActive
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.services import saga_start
from sagas.statuses import SagaStatus
from sagas.testing.models import Call
from sagas.tests.harness import start

pytestmark = pytest.mark.django_db


def _columns_inserted_into(model: type[Model], statements: list[str]) -> set[str]:
    marker = f'INSERT INTO "{model._meta.db_table}" ('
    [insert] = [s.split(marker, 1)[1] for s in statements if marker in s]
    column_list = insert.split(")", 1)[0]
    return {c.strip().strip('"') for c in column_list.split(",")}


def test_the_start_writes_every_column_of_the_saga_its_steps_and_its_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection.ensure_connection()
    # A prepared statement logs no text: keep these unprepared.
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)
    with CaptureQueriesContext(connection) as queries:
        saga_id = start("test.local", {"n": 1})

    statements = [q["sql"] for q in queries.captured_queries if q["sql"]]
    for model in (Saga, SagaStep, SagaStepExecution):
        auto = {f.column for f in model._meta.concrete_fields if f.primary_key and f.auto_created}
        wanted = {f.column for f in model._meta.concrete_fields} - auto
        assert _columns_inserted_into(model, statements) == wanted, model.__name__
    saga = Saga.objects.get(pk=saga_id)
    # What a start leaves to the model's defaults arrives as those defaults.
    assert (saga.attempt, saga.redeliveries, saga.claim_host, saga.claim_token) == (0, 0, "", None)
    assert (saga.failure_code, saga.lease_until) == ("", None)


def start_a_rival(call: StepCall) -> None:
    # Another exclusive start on the subject, committed "between" this start's check and
    # its row: here, in the same transaction, which the unique index must then refuse.
    now = timezone.now()
    Saga.objects.create(
        saga_type="test.effects",
        status=SagaStatus.RUNNING,
        subject=str(call.context["subject"]),
        exclusive=True,
        current_step="a",
        current_phase="action",
        created_at=now,
        updated_at=now,
    )
    Call.objects.create(saga_id=call.saga_id, step=call.step, phase=call.phase, attempt=1, pid=0)


RIVALLED = SagaDefinition(
    name="test.rivalled",
    steps=(
        Step(name="rival", action=start_a_rival, local=True),
        Step(name="act", action=lambda call: None),
    ),
)


@pytest.mark.django_db(transaction=True)
def test_an_exclusive_start_that_loses_to_the_index_writes_nothing(settings: Any) -> None:
    settings.SAGA_DEFINITIONS = [*settings.SAGA_DEFINITIONS, f"{__name__}.RIVALLED"]
    registry.reset()
    subject = f"order:{uuid.uuid4()}"
    try:
        with pytest.raises(SagaAlreadyActive):
            saga_start(
                saga_type="test.rivalled",
                context={"subject": subject},
                correlation_id="c",
                actor="a",
                subject=subject,
                exclusive=True,
            )
    finally:
        registry.reset()

    assert not Saga.objects.filter(subject=subject).exists()
    assert not Call.objects.exists()
