"""The application role docs/deploy.md describes appends events but cannot alter them.

The test creates the role on the test database and runs the grants exactly as the document
gives them, so the document and the privileges it promises cannot drift apart. Everything
happens inside the test's transaction, the role included: it is rolled back at the end.
"""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import pytest
from django.db import DatabaseError, connection, transaction

from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from eventstore.records import NewEvent

pytestmark = pytest.mark.django_db

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
DOCUMENTED_ROLE = "backoffice_app"


def documented_grants() -> str:
    text = DEPLOY.read_text()
    block = re.search(r"<!-- app-role-grants[^>]*-->\n```sql\n(.*?)```", text, re.DOTALL)
    assert block, "docs/deploy.md lost its app-role-grants block"
    return block.group(1)


@pytest.fixture
def app_role() -> str:
    # Roles are cluster-wide: a name of its own, so parallel test runs never share one.
    role = f"bo_app_test_{uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(documented_grants().replace(DOCUMENTED_ROLE, role))
    return role


def as_role(role: str, sql: str, params: list | None = None) -> None:
    """Run ``sql`` as ``role`` in a savepoint, so a refusal leaves the test's transaction usable."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        cursor.execute(sql, params)


def test_the_app_role_appends_events_through_the_store(app_role: str) -> None:
    stream_id = str(uuid4())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {app_role}")
        PostgresEventStore().append(
            stream_type="acct",
            stream_id=stream_id,
            expected_version=0,
            events=[NewEvent(event_type="Opened", data={"n": 1})],
        )
        events = PostgresEventStore().read_stream(stream_type="acct", stream_id=stream_id)
    assert [e.event_type for e in events] == ["Opened"]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE eventstore_event SET event_type = 'Forged'",
        "DELETE FROM eventstore_event",
        "TRUNCATE eventstore_event",
        "ALTER TABLE eventstore_event DISABLE TRIGGER USER",
        "DROP TRIGGER eventstore_event_no_truncate ON eventstore_event",
    ],
)
def test_the_app_role_cannot_alter_or_remove_events(app_role: str, sql: str) -> None:
    stream_id = str(uuid4())
    PostgresEventStore().append(
        stream_type="acct",
        stream_id=stream_id,
        expected_version=0,
        events=[NewEvent(event_type="Opened", data={})],
    )
    # Refused by privileges, before the triggers are even asked.
    with pytest.raises(DatabaseError, match=r"permission denied|must be owner"):
        as_role(app_role, sql)
    assert StoredEvent.objects.filter(stream_id=stream_id, event_type="Opened").exists()


def test_the_app_role_keeps_writing_the_tables_that_are_rewritten(app_role: str) -> None:
    # Snapshots and checkpoints are rewritten in normal operation: the role keeps those rights.
    as_role(app_role, "DELETE FROM eventstore_snapshot WHERE false")
    as_role(app_role, "UPDATE eventstore_projection_checkpoint SET name = name WHERE false")
