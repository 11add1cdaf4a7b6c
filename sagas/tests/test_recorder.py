"""The saga tables' SQL stays true to the models (drift tests); its writes compare-and-set."""

from __future__ import annotations

import re

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps
from django.utils import timezone

from sagas.engine import decide_operator_retry
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.recorder import (
    _CLAIM_SQL,
    _OUTCOME_SQL,
    _OVERDUE_SQL,
    _STOP_SQL,
    SAGA_SET_AT_START,
    SAGA_SET_BY_STOP_REQUEST,
    SAGA_SET_WHEN_OVERDUE,
    STEP_SET_AT_START,
    insert_if,
    insert_params,
    outcome_record,
    saga_load,
    table,
)
from sagas.statuses import Phase, SagaStatus
from sagas.tests.harness import failed_compensation_saga, start

pytestmark = pytest.mark.django_db


def _fields(model: type[models.Model]) -> set[str]:
    return {f.name for f in model._meta.concrete_fields}


def _by_column(model: type[models.Model]) -> dict[str, str]:
    return {f.column: f.name for f in model._meta.concrete_fields}


def updated(sql: str, model: type[models.Model]) -> set[str]:
    """Return the fields of ``model`` the statement's UPDATE of its table sets."""
    found = re.search(rf"UPDATE {re.escape(table(model))} SET(.*?)\n\s*WHERE", sql, re.S)
    assert found, f"{sql} updates no {model._meta.db_table}"
    return {_by_column(model)[c] for c in re.findall(r'"(\w+)" =', found.group(1))}


def inserted(sql: str, model: type[models.Model]) -> set[str]:
    """Return the fields of ``model`` the statement's INSERT into its table writes."""
    found = re.search(rf"INSERT INTO {re.escape(table(model))} \((.*?)\)", sql, re.S)
    assert found, f"{sql} inserts into no {model._meta.db_table}"
    return {_by_column(model)[c.strip().strip('"')] for c in found.group(1).split(",")}


def test_every_saga_column_is_set_at_the_start_or_by_every_recorded_outcome() -> None:
    written = updated(_OUTCOME_SQL[True, False], Saga)

    assert (
        written | SAGA_SET_AT_START | SAGA_SET_BY_STOP_REQUEST | SAGA_SET_WHEN_OVERDUE
        == _fields(Saga)
    )
    assert not written & SAGA_SET_AT_START
    assert not (written | SAGA_SET_AT_START) & SAGA_SET_BY_STOP_REQUEST
    assert not (written | SAGA_SET_AT_START | SAGA_SET_BY_STOP_REQUEST) & SAGA_SET_WHEN_OVERDUE
    assert updated(_STOP_SQL, Saga) == SAGA_SET_BY_STOP_REQUEST
    assert updated(_OVERDUE_SQL, Saga) == SAGA_SET_WHEN_OVERDUE
    # An outcome ends the claim: it rewrites everything a claim wrote.
    for sql in _CLAIM_SQL.values():
        assert updated(sql, Saga) <= written


def test_every_step_column_is_set_at_the_start_by_the_claim_or_by_the_outcome() -> None:
    by_claim = {phase: updated(_CLAIM_SQL[phase, False, False], SagaStep) for phase in Phase}
    by_outcome = updated(_OUTCOME_SQL[True, False], SagaStep)

    assert STEP_SET_AT_START | by_claim[Phase.ACTION] | by_claim[Phase.COMPENSATION] | (
        by_outcome
    ) == _fields(SagaStep)
    assert by_claim[Phase.ACTION] == {"status", "action_attempts", "action_started_at"}


def test_every_attempt_log_column_is_written_by_the_outcome_and_the_takeover() -> None:
    every = _fields(SagaStepExecution) - {"id"}

    assert inserted(_OUTCOME_SQL[True, False], SagaStepExecution) == every
    for phase in Phase:
        assert inserted(_CLAIM_SQL[phase, True, True], SagaStepExecution) == every
    assert "INSERT" not in _OUTCOME_SQL[False, False]


@isolate_apps("sagas")
def test_a_new_column_with_a_default_is_inserted_without_touching_the_sql() -> None:
    class Probe(models.Model):
        name = models.CharField(max_length=20)
        added_later = models.IntegerField(default=7)
        tags = models.JSONField(default=list)

        class Meta:
            app_label = "sagas"
            db_table = "sagas_recorder_probe"

        def __str__(self) -> str:
            return self.name

    with connection.schema_editor() as editor:
        editor.create_model(Probe)
    try:
        params = insert_params(Probe(name="given"), prefix="p_")
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH gate AS (SELECT 1) {insert_if(Probe, prefix='p_', gate='gate')}", params
            )
            cursor.execute("SELECT name, added_later, tags FROM sagas_recorder_probe")
            assert cursor.fetchall() == [("given", 7, "[]")]
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Probe)


def test_saga_load_reads_the_row_as_the_orm_does() -> None:
    saga_id = start("test.effects", {"order": 3})

    loaded = saga_load(saga_id)

    orm = Saga.objects.get(pk=saga_id)
    assert loaded is not None
    assert {f.attname: getattr(loaded, f.attname) for f in Saga._meta.concrete_fields} == {
        f.attname: getattr(orm, f.attname) for f in Saga._meta.concrete_fields
    }
    assert saga_load(Saga().id) is None


def test_an_outcome_decided_on_a_saga_that_changed_since_it_was_loaded_writes_nothing() -> None:
    saga_id = failed_compensation_saga()
    first = outcome_record(saga_id, decide_operator_retry, now=timezone.now())
    assert first.applied

    # The same decision on the row as it was before the first write.
    again = outcome_record(first.loaded, decide_operator_retry, now=timezone.now())

    assert not again.applied
    saga = Saga.objects.get(pk=saga_id)
    assert saga.status == SagaStatus.COMPENSATING
    assert saga.round_start == first.loaded.saga.attempt
