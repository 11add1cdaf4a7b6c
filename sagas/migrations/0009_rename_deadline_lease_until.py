"""Rename the saga's ``deadline`` column to ``lease_until``: it is the running attempt's lease.

The saga's own deadline is ``finish_by`` (the API's ``deadline``); the lease column kept the
name from before sagas had deadlines, and the admin showed both as "deadline" and "finish by".

PostgreSQL's CHECK ``sagas_saga_claim_consistent`` refers to the column, not to its name, so
renaming the column carries it along: the constraint is only restated for Django's migration
state (dropping and adding it would rescan the table under an exclusive lock for nothing).

Processes of the previous release write ``deadline``: stop the workers and the web processes
before migrating, as for any column rename.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0008_scrub_payment_token"),
    ]

    operations = [
        migrations.RenameField(
            model_name="saga",
            old_name="deadline",
            new_name="lease_until",
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="saga",
                    name="sagas_saga_claim_consistent",
                ),
                migrations.AddConstraint(
                    model_name="saga",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("claim_token__isnull", True), ("lease_until__isnull", True)),
                            models.Q(
                                ("claim_token__isnull", False),
                                ("due_at__isnull", True),
                                ("lease_until__isnull", False),
                            ),
                            _connector="OR",
                        ),
                        name="sagas_saga_claim_consistent",
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
