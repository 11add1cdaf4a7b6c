"""Keep no payment token: payments drop theirs, the simulated processor's charges keep a
fingerprint.

Our ``Payment`` rows lose their ``token`` column (a refund needs the charge's reference, which
they keep). The simulated processor's charges name the card by the token's keyed fingerprint
and keep the behaviour its name stood for (so a replayed charge answers as before), both
computed from the token of each existing charge, then the column holding the tokens is
dropped. (The processor's cards live in its references, signed: no table of them.)
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.utils.crypto import salted_hmac

# Frozen copies of payments.simulated and payments.tokens as of this migration: a migration
# must not change meaning when the code moves on.
_SALT = "payments.tokens.fingerprint"
_BEHAVIOURS = {"tok_visa": "APPROVE", "tok_flaky": "FLAKY", "tok_lostResponse": "LOSE_RESPONSE"}


def fingerprint_existing_charges(apps: Any, schema_editor: Any) -> None:
    charges = apps.get_model("payments", "SimulatedCharge")
    for token in charges.objects.values_list("token", flat=True).distinct().iterator():
        # Any other token declines; the code and message each charge answered are on its row.
        charges.objects.filter(token=token).update(
            fingerprint=salted_hmac(_SALT, token, algorithm="sha256").hexdigest(),
            behaviour=_BEHAVIOURS.get(token, "DECLINE"),
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="simulatedcharge",
            name="fingerprint",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="simulatedcharge",
            name="behaviour",
            field=models.CharField(
                choices=[
                    ("APPROVE", "Approve"),
                    ("DECLINE", "Decline"),
                    ("FLAKY", "Flaky"),
                    ("LOSE_RESPONSE", "Lose Response"),
                ],
                default="",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(
            fingerprint_existing_charges, migrations.RunPython.noop, elidable=True
        ),
        migrations.AddConstraint(
            model_name="simulatedcharge",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("behaviour__in", ["APPROVE", "DECLINE", "FLAKY", "LOSE_RESPONSE"])
                ),
                name="payments_simulatedcharge_behaviour_valid",
            ),
        ),
        migrations.RemoveField(model_name="simulatedcharge", name="token"),
        migrations.RemoveField(model_name="payment", name="token"),
    ]
