"""Refuse TRUNCATE on events too: UPDATE and DELETE triggers never fire for it.

Statement-level BEFORE TRUNCATE, reusing the function that refuses UPDATE and DELETE (it
names the operation). There is no switch that lets a session through: only the table's owner
can disable the trigger, and docs/deploy.md keeps the application from being the owner.
"""

from django.db import migrations

FORWARD = """
CREATE TRIGGER eventstore_event_no_truncate
    BEFORE TRUNCATE ON eventstore_event
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
"""

BACKWARD = "DROP TRIGGER IF EXISTS eventstore_event_no_truncate ON eventstore_event;"


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0002_event_defaults_and_immutability")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
