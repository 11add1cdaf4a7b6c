"""Leave room on each page of the saga and step tables for HOT updates.

Every saga step rewrites its saga row and its step row a few times. With no indexed column
changed (see Saga.Meta.indexes), PostgreSQL can write the new row version on the same page
without touching any index, if the page has room: a fill factor of 80 keeps that room.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sagas", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[
                "ALTER TABLE sagas_saga SET (fillfactor = 80)",
                "ALTER TABLE sagas_sagastep SET (fillfactor = 80)",
            ],
            reverse_sql=[
                "ALTER TABLE sagas_saga RESET (fillfactor)",
                "ALTER TABLE sagas_sagastep RESET (fillfactor)",
            ],
        )
    ]
