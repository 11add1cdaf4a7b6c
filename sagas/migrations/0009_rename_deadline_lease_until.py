"""Rename the saga's ``deadline`` field to ``lease_until``: it is the running attempt's lease.

The saga's own deadline is ``finish_by`` (the API's ``deadline``); the lease field kept the
name from before sagas had deadlines, and the admin showed both as "deadline" and "finish by".

Only Django's state changes: the column keeps its name (``db_column="deadline"``), so this
migration runs no SQL and processes of the previous release, which name the column
``deadline``, keep working beside the new ones during a rolling deploy. The CHECK
``sagas_saga_claim_consistent`` is restated in the state only: its SQL is unchanged.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0008_scrub_payment_token"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RenameField(
                    model_name="saga",
                    old_name="deadline",
                    new_name="lease_until",
                ),
                migrations.AlterField(
                    model_name="saga",
                    name="lease_until",
                    field=models.DateTimeField(blank=True, db_column="deadline", null=True),
                ),
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
