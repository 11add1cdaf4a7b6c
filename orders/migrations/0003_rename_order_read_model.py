"""The order read model is called OrderSummary: "Order" is the aggregate's name.

The table keeps its name (``db_table``). Django names a model's default permissions after
it, so the grants staff already hold move with it: view_order becomes view_ordersummary, and
so on (the custom cancel_order keeps its name).
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_VERBS = ("add", "change", "delete", "view")


def _rename_permissions(apps: StateApps, old: str, new: str) -> None:
    permission = apps.get_model("auth", "Permission")
    content_type = apps.get_model("contenttypes", "ContentType")
    for verb in _VERBS:
        stale = permission.objects.filter(
            content_type__app_label="orders", codename=f"{verb}_{old}"
        )
        # post_migrate may already have created the new one on an earlier run.
        if permission.objects.filter(
            content_type__app_label="orders", codename=f"{verb}_{new}"
        ).exists():
            continue
        stale.update(codename=f"{verb}_{new}")
    content_type.objects.filter(app_label="orders", model=old).update(model=new)


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _rename_permissions(apps, "order", "ordersummary")


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _rename_permissions(apps, "ordersummary", "order")


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_drop_indexes_covered_by_composites"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RenameModel("Order", "OrderSummary"),
        migrations.RunPython(forwards, backwards),
    ]
