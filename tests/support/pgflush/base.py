"""Django's PostgreSQL backend, whose flush gets past the trigger that refuses TRUNCATE.

``TransactionTestCase`` (pytest-django's ``transactional_db``) empties the tables between
tests with one ``TRUNCATE``, which ``eventstore_event``'s trigger refuses, as it refuses it
to anyone. The flush disables that one trigger, truncates and enables it again; Django runs
the three in one transaction, so a failure leaves the trigger on. Disabling a trigger takes
the table's owner, which the test database's user is and the production application's role is
not (docs/deploy.md); the schema itself has no way round the trigger.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, operations

EVENT_TABLE = "eventstore_event"
TRIGGER = "eventstore_event_no_truncate"


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(
        self,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        statements: list[str] = super().sql_flush(
            style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if not statements or EVENT_TABLE not in tables:
            return statements
        table = self.quote_name(EVENT_TABLE)
        return [
            f"ALTER TABLE {table} DISABLE TRIGGER {TRIGGER};",
            *statements,
            f"ALTER TABLE {table} ENABLE TRIGGER {TRIGGER};",
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
