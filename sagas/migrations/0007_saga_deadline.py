"""Give every saga a deadline (``finish_by``) and a "needs attention" queue.

Sagas started before this migration get their start + the default deadline (30 minutes);
new sagas get their definition's deadline from ``sagas.recorder.saga_record_start``.
"""

import datetime

import django.db.models.expressions
import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0006_definition_version"),
    ]

    operations = [
        migrations.CreateModel(
            name="NeedsAttention",
            fields=[],
            options={
                "verbose_name": "saga needing attention",
                "verbose_name_plural": "sagas needing attention",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("sagas.saga",),
        ),
        migrations.RemoveConstraint(
            model_name="sagaoperatoraction",
            name="sagas_operator_action_valid",
        ),
        migrations.RemoveConstraint(
            model_name="sagaoperatoraction",
            name="sagas_operator_skip_has_reason",
        ),
        migrations.AddField(
            model_name="saga",
            name="finish_by",
            field=models.DateTimeField(
                db_default=models.ExpressionWrapper(
                    django.db.models.expressions.CombinedExpression(
                        django.db.models.functions.datetime.Now(),
                        "+",
                        models.Value(datetime.timedelta(seconds=1800)),
                    ),
                    output_field=models.DateTimeField(),
                )
            ),
        ),
        migrations.RunSQL(
            "UPDATE sagas_saga SET finish_by = created_at + interval '30 minutes'",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddField(
            model_name="saga",
            name="overdue_reported_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="sagaoperatoraction",
            name="action",
            field=models.CharField(
                choices=[
                    ("retry", "retry"),
                    ("skip_compensation", "skip_compensation"),
                    ("skip_step", "skip_step"),
                ],
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="sagaoperatoraction",
            constraint=models.CheckConstraint(
                condition=models.Q(("action__in", ["retry", "skip_compensation", "skip_step"])),
                name="sagas_operator_action_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="sagaoperatoraction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("action__in", ["skip_compensation", "skip_step"]), _negated=True),
                    models.Q(("reason", ""), _negated=True),
                    _connector="OR",
                ),
                name="sagas_operator_skip_has_reason",
            ),
        ),
    ]
