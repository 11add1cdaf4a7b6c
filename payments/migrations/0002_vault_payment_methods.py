"""Keep no payment token: payments drop theirs, the simulated processor vaults cards.

Our ``Payment`` rows lose their ``token`` column (a refund needs the charge's reference, which
they keep). The simulated processor's charges name a payment method instead of a token: one
method is made per token its existing charges used, holding the token's keyed fingerprint and
the behaviour its name stood for (so a replayed charge answers as before), then the column
holding the tokens is dropped.
"""

from __future__ import annotations

import secrets
from typing import Any

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone
from django.utils.crypto import salted_hmac

# Frozen copies of payments.simulated and payments.tokens as of this migration: a migration
# must not change meaning when the code moves on.
_SALT = "payments.tokens.fingerprint"
_DECLINES = {
    "tok_chargeDeclined": ("card_declined", "Your card was declined."),
    "tok_chargeDeclinedInsufficientFunds": (
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
}
_INVALID = ("invalid_token", "The payment token is not valid.")


def _behaviour(token: str) -> tuple[str, str, str]:
    if token == "tok_visa":  # noqa: S105 (a test token's name)
        return "APPROVE", "", ""
    if token == "tok_flaky":  # noqa: S105
        return "FLAKY", "", ""
    if token == "tok_lostResponse":  # noqa: S105
        return "LOSE_RESPONSE", "", ""
    code, message = _DECLINES.get(token, _INVALID)
    return "DECLINE", code, message


def vault_existing_tokens(apps: Any, schema_editor: Any) -> None:
    charges = apps.get_model("payments", "SimulatedCharge")
    methods = apps.get_model("payments", "SimulatedPaymentMethod")
    for token in charges.objects.values_list("token", flat=True).distinct().iterator():
        behaviour, code, message = _behaviour(token)
        method = methods.objects.create(
            reference=f"pm_sim_{secrets.token_hex(12)}",
            fingerprint=salted_hmac(_SALT, token, algorithm="sha256").hexdigest(),
            behaviour=behaviour,
            decline_code=code,
            decline_message=message,
            created_at=timezone.now(),
        )
        charges.objects.filter(token=token).update(payment_method=method)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="SimulatedPaymentMethod",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("reference", models.CharField(max_length=100, unique=True)),
                ("fingerprint", models.CharField(db_index=True, max_length=64)),
                (
                    "behaviour",
                    models.CharField(
                        choices=[
                            ("APPROVE", "Approve"),
                            ("DECLINE", "Decline"),
                            ("FLAKY", "Flaky"),
                            ("LOSE_RESPONSE", "Lose Response"),
                        ],
                        max_length=16,
                    ),
                ),
                ("decline_code", models.CharField(blank=True, default="", max_length=64)),
                ("decline_message", models.CharField(blank=True, default="", max_length=255)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "simulated gateway payment method",
                "ordering": ["-created_at"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("behaviour__in", ["APPROVE", "DECLINE", "FLAKY", "LOSE_RESPONSE"])
                        ),
                        name="payments_simulatedpaymentmethod_behaviour_valid",
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="simulatedcharge",
            name="payment_method",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="charges",
                to="payments.simulatedpaymentmethod",
            ),
        ),
        migrations.RunPython(vault_existing_tokens, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="simulatedcharge",
            name="payment_method",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="charges",
                to="payments.simulatedpaymentmethod",
            ),
        ),
        migrations.RemoveField(model_name="simulatedcharge", name="token"),
        migrations.RemoveField(model_name="payment", name="token"),
    ]
