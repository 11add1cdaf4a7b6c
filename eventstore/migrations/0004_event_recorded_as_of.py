"""Let a session name the time its appends are recorded at (``eventstore.recorded_at``).

The column's default stays the writing transaction's start, ``now()``, unless the session
has set ``eventstore.recorded_at`` (``eventstore.postgres.recorded_as_of``): then that time.
It exists so ``seed_demo --orders`` can build a past day's history through the real services
and the real append, versions and constraints included; nothing else sets it.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE eventstore_event ALTER COLUMN recorded_at SET DEFAULT
    coalesce(nullif(current_setting('eventstore.recorded_at', true), '')::timestamptz, now());
"""

BACKWARD = "ALTER TABLE eventstore_event ALTER COLUMN recorded_at SET DEFAULT now();"


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0003_event_no_truncate")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
