"""List each saga type's definition versions with their sagas by status: ``saga_versions``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count

from sagas.models import Saga
from sagas.registry import get_definition, versions
from sagas.statuses import ACTIVE_SAGA_STATUSES, SagaStatus


class Command(BaseCommand):
    help = (
        "List each saga type's definition versions: whether this code registers them, which "
        "one new sagas start on, and their sagas by status. A version whose sagas are all "
        "finished can be removed from SAGA_DEFINITIONS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts: dict[tuple[str, int], dict[str, int]] = {}
        rows = (
            Saga.objects.order_by()
            .values_list("saga_type", "definition_version", "status")
            .annotate(n=Count("id"))
        )
        for saga_type, version, status, n in rows:
            counts.setdefault((saga_type, version), {})[status] = n
        registered = versions()
        keys = sorted(
            {(name, v) for name, listed in registered.items() for v in listed} | set(counts)
        )
        active = {s.value for s in ACTIVE_SAGA_STATUSES}
        for saga_type, version in keys:
            by_status = counts.get((saga_type, version), {})
            if version not in registered.get(saga_type, []):
                state = "NOT REGISTERED"
            elif get_definition(saga_type).version == version:
                state = "current"
            else:
                state = "registered"
            unfinished = sum(n for status, n in by_status.items() if status in active)
            shown = ", ".join(
                f"{status.value} {by_status[status.value]}"
                for status in SagaStatus
                if status.value in by_status
            )
            self.stdout.write(
                f"{saga_type} v{version} ({state}): {shown or 'no sagas'}; {unfinished} unfinished"
            )
