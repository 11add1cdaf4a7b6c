"""Versioned saga definitions: registered by (type, version), recorded on each saga, held to.

The version change itself, with real workers of two releases, is in
``tests/e2e/test_definition_versions.py``; here are the registry, the start, the refusal,
the deploy check and the listing, in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from rest_framework.test import APIClient

from sagas import registry
from sagas.checks import check_definition_versions_in_use
from sagas.definitions import SagaDefinition, Step, StepCall
from sagas.errors import UnknownDefinitionVersion, UnknownSagaType
from sagas.models import Saga
from sagas.statuses import SagaStatus
from sagas.testing.models import Call
from sagas.tests.harness import drive, run_step, start

pytestmark = pytest.mark.django_db

TYPE = "test.versioned"
V1 = "sagas.testing.sagas.VERSIONED_V1"
V2 = "sagas.testing.sagas.VERSIONED_V2"


def noop(call: StepCall) -> None:
    return None


TWIN_V1 = SagaDefinition(name=TYPE, version=1, steps=(Step(name="x", action=noop),))


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def release(settings: Any, *paths: str) -> None:
    """List ``test.versioned`` in ``paths`` only, as a release's code would."""
    settings.SAGA_DEFINITIONS = [p for p in settings.SAGA_DEFINITIONS if p not in (V1, V2)] + list(
        paths
    )
    registry.reset()


def test_a_version_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="version must be at least 1"):
        SagaDefinition(name="x", version=0, steps=(Step(name="a", action=noop),))


def test_versions_of_a_type_coexist_and_new_sagas_start_on_the_highest(settings: Any) -> None:
    release(settings, V2, V1)

    assert registry.get_definition(TYPE).version == 2
    assert [s.name for s in registry.get_definition(TYPE, 1).steps] == [
        "reserve",
        "charge",
        "pack",
        "ship",
    ]
    assert registry.versions()[TYPE] == [1, 2]
    assert registry.type_names().count(TYPE) == 1
    # A step of any version names a fault target or a queue.
    assert registry.find_step(TYPE, "pack").name == "pack"
    assert registry.find_step(TYPE, "bill").name == "bill"
    with pytest.raises(KeyError):
        registry.find_step(TYPE, "nope")
    with pytest.raises(UnknownDefinitionVersion, match="no registered definition version 3"):
        registry.get_definition(TYPE, 3)
    with pytest.raises(UnknownSagaType):
        registry.get_definition("nope", 1)


def test_two_definitions_of_one_type_and_version_are_refused(settings: Any) -> None:
    release(settings, V1, f"{__name__}.TWIN_V1")
    with pytest.raises(ImproperlyConfigured, match="in version 1"):
        registry.get_definition(TYPE)


def test_a_saga_records_the_version_it_started_under_and_the_api_shows_it(
    settings: Any,
) -> None:
    first = start(TYPE)
    release(settings, V1, V2)
    second = start(TYPE)

    assert Saga.objects.get(pk=first).definition_version == 1
    assert Saga.objects.get(pk=second).definition_version == 2
    user = get_user_model().objects.create_user(username="viewer", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_saga"))
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(f"/api/sagas/{first}/").json()["definition_version"] == 1
    assert client.get(f"/api/sagas/{second}/").json()["definition_version"] == 2


def test_a_saga_finishes_under_its_own_version_after_a_newer_one_is_registered(
    settings: Any,
) -> None:
    saga_id = start(TYPE)
    release(settings, V1, V2)

    assert drive(saga_id).status == SagaStatus.COMPLETED
    assert list(
        Call.objects.filter(saga_id=saga_id).order_by("id").values_list("step", flat=True)
    ) == ["reserve", "charge", "pack", "ship"]


def test_a_worker_without_the_sagas_version_refuses_its_step_and_leaves_it(
    settings: Any,
) -> None:
    saga_id = start(TYPE)
    before = Saga.objects.get(pk=saga_id)
    release(settings, V2)

    report = run_step(saga_id)

    assert not report.ran
    assert "refused" in report.detail and "version 1" in report.detail
    after = Saga.objects.get(pk=saga_id)
    assert (after.status, after.current_step, after.attempt, after.claim_token) == (
        before.status,
        before.current_step,
        before.attempt,
        None,
    )
    assert not Call.objects.filter(saga_id=saga_id).exists()


def test_check_fails_naming_the_unfinished_sagas_of_a_dropped_version(settings: Any) -> None:
    waiting = start(TYPE)
    finished = start(TYPE)
    drive(finished)
    release(settings, V2)

    errors = check_definition_versions_in_use()

    assert [e.id for e in errors] == ["sagas.E001"]
    assert str(waiting) in errors[0].msg and str(finished) not in errors[0].msg
    assert "version 1" in errors[0].msg
    with pytest.raises(SystemCheckError, match=str(waiting)):
        call_command("check")


def test_check_passes_while_the_version_in_use_stays_registered(settings: Any) -> None:
    start(TYPE)
    release(settings, V1, V2)
    assert check_definition_versions_in_use() == []
    call_command("check")


def test_saga_versions_lists_each_version_with_its_sagas_by_status(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    start(TYPE)
    drive(start(TYPE))
    release(settings, V1, V2)
    start(TYPE)

    call_command("saga_versions")
    lines = capsys.readouterr().out.splitlines()

    assert f"{TYPE} v1 (registered): RUNNING 1, COMPLETED 1; 1 unfinished" in lines
    assert f"{TYPE} v2 (current): RUNNING 1; 1 unfinished" in lines

    release(settings, V2)
    call_command("saga_versions")
    assert f"{TYPE} v1 (NOT REGISTERED): RUNNING 1, COMPLETED 1; 1 unfinished" in (
        capsys.readouterr().out.splitlines()
    )


def test_check_finds_nothing_to_strand_before_the_sagas_table_exists(monkeypatch: Any) -> None:
    # A fresh database before its first migrate: the table is not there yet.
    monkeypatch.setattr(Saga._meta, "db_table", "sagas_saga_not_migrated_yet")
    assert check_definition_versions_in_use() == []


def test_check_reads_the_previous_schema_as_version_1(settings: Any) -> None:
    # Before migrate adds the column (rolled back with the test's transaction): the previous
    # release's sagas are all version 1, which a release without version 1 would strand.
    waiting = start(TYPE)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE sagas_saga DROP COLUMN definition_version")
    release(settings, V2)

    errors = check_definition_versions_in_use()

    assert [e.id for e in errors] == ["sagas.E001"]
    assert str(waiting) in errors[0].msg
