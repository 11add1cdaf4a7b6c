"""Column defaults the append statement relies on, and the trigger that makes events immutable."""

from django.db import migrations

FORWARD = """
ALTER TABLE eventstore_event
    ALTER COLUMN transaction_id SET DEFAULT (pg_current_xact_id()::text::bigint),
    ALTER COLUMN recorded_at SET DEFAULT now(),
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN schema_version SET DEFAULT 1;

CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'append a new event that corrects the old one instead';
END;
$$ LANGUAGE plpgsql;

-- Statement-level, so even an UPDATE or DELETE that matches no row is refused.
CREATE TRIGGER eventstore_event_immutable
    BEFORE UPDATE OR DELETE ON eventstore_event
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS eventstore_event_immutable ON eventstore_event;
DROP FUNCTION IF EXISTS eventstore_refuse_change();
ALTER TABLE eventstore_event
    ALTER COLUMN transaction_id DROP DEFAULT,
    ALTER COLUMN recorded_at DROP DEFAULT;
"""


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
