"""Replace rest_framework.authtoken's clear-text keys with knox digests, and drop their table.

Existing keys keep working (each is stored as its digest, expiring API_TOKEN_TTL_DAYS from
now); nothing can show them again. A database that never had the old table is untouched.
"""

from django.db import migrations


def hash_in_place(apps, schema_editor):
    from backoffice.api_tokens import migrate_plaintext_tokens

    migrate_plaintext_tokens(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("knox", "0009_extend_authtoken_field"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(hash_in_place, migrations.RunPython.noop)]
