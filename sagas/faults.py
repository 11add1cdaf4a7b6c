"""Inject failures into saga steps on purpose, from a plan kept in PostgreSQL.

Web processes, workers and commands all read the same plan (``FaultRule`` rows), so an
operator or a test can make ``place_order``'s ``charge_payment`` fail three times, or until
cleared, and every worker obeys. Nothing is consulted unless
``settings.FAULT_INJECTION_ENABLED`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from sagas.models import FaultRule
from sagas.registry import find_step
from sagas.statuses import FaultMode, Phase


def fault_injection_enabled() -> bool:
    """Tell whether the fault plan is honoured in this process."""
    return bool(getattr(settings, "FAULT_INJECTION_ENABLED", False))


def fault_take(*, saga_type: str, step: str, phase: Phase, now: datetime) -> FaultMode | None:
    """Consume one injected failure for this step and phase, if the plan has one.

    One statement decrements the rule's remaining count and returns its mode, so two workers
    hitting a rule with one failure left inject it once between them.
    """
    if not fault_injection_enabled():
        return None
    table = connection.ops.quote_name(FaultRule._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET remaining = remaining - 1, hits = hits + 1, updated_at = %s "  # noqa: S608 (table name from the model, values bound)
            "WHERE saga_type = %s AND step = %s AND phase = %s "
            "AND (remaining IS NULL OR remaining > 0) RETURNING mode",
            [now, saga_type, step, phase.value],
        )
        row = cursor.fetchone()
    return FaultMode(row[0]) if row else None


@dataclass(frozen=True)
class FaultRuleView:
    """Describe one rule of the fault plan."""

    saga_type: str
    step: str
    phase: Phase
    mode: FaultMode
    remaining: int | None
    hits: int


def fault_rule_set(
    *,
    saga_type: str,
    step: str,
    phase: Phase,
    mode: FaultMode,
    times: int | None,
    now: datetime | None = None,
) -> FaultRuleView:
    """Make the step's ``phase`` fail ``times`` times (None: until cleared), replacing a rule.

    Raises UnknownSagaType for an unknown saga type and ValueError for an unknown step.
    """
    if times is not None and times < 1:
        raise ValueError("times must be at least 1 (leave it out for 'until cleared')")
    try:
        find_step(saga_type, step)
    except KeyError:
        raise ValueError(f"saga type {saga_type!r} has no step {step!r}") from None
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        rule, _ = FaultRule.objects.update_or_create(
            saga_type=saga_type,
            step=step,
            phase=phase.value,
            defaults={"mode": mode.value, "remaining": times, "hits": 0, "updated_at": now},
            create_defaults={
                "mode": mode.value,
                "remaining": times,
                "hits": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
    return _view(rule)


def fault_rules_clear(*, saga_type: str | None = None, step: str | None = None) -> int:
    """Delete the plan's rules (all, a saga type's, or one step's); return how many."""
    if step is not None and saga_type is None:
        raise ValueError("a step is named within a saga type")
    with transaction.atomic(durable=True):
        rules = FaultRule.objects.all()
        if saga_type is not None:
            rules = rules.filter(saga_type=saga_type)
        if step is not None:
            rules = rules.filter(step=step)
        deleted, _ = rules.delete()
    return deleted


def fault_rules_list() -> list[FaultRuleView]:
    """Return the fault plan, ordered by saga type, step and phase."""
    return [_view(rule) for rule in FaultRule.objects.order_by("saga_type", "step", "phase")]


def _view(rule: FaultRule) -> FaultRuleView:
    return FaultRuleView(
        saga_type=rule.saga_type,
        step=rule.step,
        phase=Phase(rule.phase),
        mode=FaultMode(rule.mode),
        remaining=rule.remaining,
        hits=rule.hits,
    )
