"""System checks of the saga engine: a deploy must not strand sagas on a definition it drops.

``manage.py check`` (and ``migrate``, which runs the checks first) fails with ``sagas.E001``
when an unfinished saga started under a ``(type, version)`` this code does not register:
no worker of this release could finish or undo it. The check reads the database, so it
runs before ``migrate`` on the schema as the previous release left it: a sagas table without
``definition_version`` (before this column existed) holds version 1 sagas only, and a
database without the table (a fresh one) has nothing to strand.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register
from django.db import DatabaseError, connection

from sagas.models import Saga
from sagas.registry import definitions
from sagas.statuses import ACTIVE_SAGA_STATUSES

#: How many saga ids an error names per (type, version); the rest are counted.
NAMED_SAGAS = 20


def unfinished_by_version() -> dict[tuple[str, int], list[str]]:
    """Map each (type, version) that unfinished sagas use to their ids (oldest first)."""
    table = Saga._meta.db_table
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        if table not in tables:
            return {}
        columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
    sagas = Saga.objects.filter(status__in=sorted(s.value for s in ACTIVE_SAGA_STATUSES)).order_by(
        "created_at"
    )
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    if "definition_version" in columns:
        for saga_type, version, saga_id in sagas.values_list(
            "saga_type", "definition_version", "id"
        ):
            found[saga_type, version].append(str(saga_id))
    else:
        # The previous release's schema, before migrate: every saga there is version 1.
        for saga_type, saga_id in sagas.values_list("saga_type", "id"):
            found[saga_type, 1].append(str(saga_id))
    return dict(found)


@register("sagas")
def check_definition_versions_in_use(**kwargs: Any) -> list[CheckMessage]:
    """Fail when unfinished sagas need a definition version this code does not register."""
    registered = {(d.name, d.version) for d in definitions()}
    try:
        in_use = unfinished_by_version()
    except DatabaseError as exc:
        return [
            Warning(
                f"could not read the unfinished sagas' definition versions: {exc}",
                hint="Run `manage.py check` where the database is reachable before deploying.",
                id="sagas.W001",
            )
        ]
    errors: list[CheckMessage] = []
    for (saga_type, version), ids in sorted(in_use.items()):
        if (saga_type, version) in registered:
            continue
        named = ", ".join(ids[:NAMED_SAGAS])
        more = f" and {len(ids) - NAMED_SAGAS} more" if len(ids) > NAMED_SAGAS else ""
        errors.append(
            Error(
                f"{len(ids)} unfinished saga(s) of type {saga_type!r} started under definition "
                f"version {version}, which this code does not register: {named}{more}",
                hint=(
                    f"Keep version {version} of {saga_type!r} in SAGA_DEFINITIONS until "
                    "`manage.py saga_versions` shows none of its sagas unfinished."
                ),
                obj=f"{saga_type} v{version}",
                id="sagas.E001",
            )
        )
    return errors
