"""``manage.py purge_expired``: the retention settings applied, with a summary per kind."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from uuid import UUID

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from knox.models import AuthToken

from backoffice import retention
from orders.models import IdempotencyRecord
from sagas.models import SagaStepExecution
from sagas.tests.harness import drive, start
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def record(key: str, age: timedelta) -> None:
    IdempotencyRecord.objects.create(
        user_id=1, key=key, request_hash="0" * 64, response_status=202, response_body={}
    )
    IdempotencyRecord.objects.filter(key=key).update(created_at=timezone.now() - age)


def long_log(saga_id: UUID, attempts: int) -> None:
    """Give step a's action a log of ``attempts`` attempts (as before the bound existed)."""
    now = timezone.now()
    SagaStepExecution.objects.bulk_create(
        SagaStepExecution(
            saga_id=saga_id,
            step="a",
            position=0,
            phase="action",
            attempt=n,
            status="RETRYING",
            at=now,
        )
        for n in range(2, attempts + 1)
    )


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_expired", *args, stdout=out)
    return out.getvalue()


def test_purge_applies_each_retention_setting_and_prints_a_summary(settings) -> None:
    settings.IDEMPOTENCY_TTL_HOURS = 24
    settings.SAGA_STEP_LOG_MAX = 4
    record("old", timedelta(hours=25))
    record("fresh", timedelta(hours=23))
    saga_id = start("test.effects")
    drive(saga_id)
    long_log(saga_id, attempts=10)  # 1 (SUCCEEDED, from the run) and 2..10
    user = make_user()
    AuthToken.objects.create(user=user, expiry=timedelta(days=-1))
    AuthToken.objects.create(user=user, expiry=timedelta(days=1))

    assert purge("--dry-run").splitlines() == [
        "idempotency_records: would delete 1",
        "step_log: would delete 6",
        "api_tokens: would delete 1",
    ]
    assert IdempotencyRecord.objects.count() == 2

    assert purge().splitlines() == [
        "idempotency_records: deleted 1",
        "step_log: deleted 6",
        "api_tokens: deleted 1",
    ]
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]
    kept = SagaStepExecution.objects.filter(saga_id=saga_id, step="a").order_by("attempt")
    assert list(kept.values_list("attempt", flat=True)) == [1, 2, 9, 10]
    assert AuthToken.objects.count() == 1
    assert purge("--dry-run").splitlines()[:2] == [
        "idempotency_records: would delete 0",
        "step_log: would delete 0",
    ]


def test_a_kind_that_fails_is_reported_the_others_still_run_and_the_exit_is_non_zero(
    monkeypatch,
) -> None:
    record("old", timedelta(days=3))

    def broken(dry_run: bool) -> int:
        raise RuntimeError("table locked")

    monkeypatch.setitem(retention.KINDS, "step_log", broken)
    err = StringIO()

    with pytest.raises(CommandError, match="step_log"):
        call_command("purge_expired", stdout=StringIO(), stderr=err)

    assert "step_log: failed: RuntimeError: table locked" in err.getvalue()
    assert not IdempotencyRecord.objects.exists()
