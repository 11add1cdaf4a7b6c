"""Scrub the raw payment token from every saga's context.

Placing sagas used to carry the client's ``payment_token`` to the charge step; they now carry
the gateway's reference to the card (``payment_method``) and the token is stored nowhere. A
saga still waiting to charge when this runs loses its token with the rest, and its charge step
fails as ``payment_rejected`` (the order is cancelled, never charged): drain the placing sagas
before upgrading to avoid that.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def scrub_payment_token(apps: Any, schema_editor: Any) -> None:
    sagas = apps.get_model("sagas", "Saga")
    # One UPDATE with jsonb's "-" operator: no row leaves the database, none is read into
    # Python, and rows without the key are not touched (no dead tuples for them).
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {sagas._meta.db_table} SET context = context - 'payment_token' "  # noqa: S608 (the table's own name)
            "WHERE context ? 'payment_token'"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0007_saga_deadline"),
    ]

    operations = [
        migrations.RunPython(scrub_payment_token, migrations.RunPython.noop, elidable=True),
    ]
