"""Admin pages of the saga engine: sagas (read-only, steps and log inline) and the fault plan.

Sagas change only through the engine and its operator services, so the saga pages allow
viewing alone. The fault plan is editable, and listed only while fault injection is enabled.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from sagas.errors import UnknownSagaType
from sagas.models import FaultRule, Saga, SagaOperatorAction, SagaStep, SagaStepExecution
from sagas.registry import get_definition


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = ("position", "name", "status", "attempts", "last_error", "started_at", "finished_at")
    readonly_fields = fields
    ordering = ("position",)


class SagaStepExecutionInline(ReadOnlyInline):
    model = SagaStepExecution
    verbose_name = "attempt"
    verbose_name_plural = "step log"
    fields = ("at", "step", "phase", "attempt", "status", "error", "started_at", "worker")
    readonly_fields = fields
    ordering = ("at", "id")


class SagaOperatorActionInline(ReadOnlyInline):
    model = SagaOperatorAction
    fields = ("at", "action", "actor", "step", "reason")
    readonly_fields = fields
    ordering = ("at", "id")


@admin.register(Saga)
class SagaAdmin(admin.ModelAdmin):
    list_display = ("id", "saga_type", "status", "current_step", "subject", "created_at")
    list_filter = ("status", "saga_type")
    search_fields = ("=id", "subject", "correlation_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "id",
        "saga_type",
        "status",
        "subject",
        "exclusive",
        "correlation_id",
        "actor",
        "context",
        "current_step",
        "current_phase",
        "attempt",
        "failure_step",
        "failure_code",
        "failure_message",
        "due_at",
        "dispatched_at",
        "deadline",
        "claim_worker",
        "created_at",
        "updated_at",
        "finished_at",
    )
    fields = readonly_fields
    inlines = (SagaStepInline, SagaStepExecutionInline, SagaOperatorActionInline)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FaultRuleForm(forms.ModelForm):
    class Meta:
        model = FaultRule
        fields = ("saga_type", "step", "phase", "mode", "remaining")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        saga_type, step = data.get("saga_type"), data.get("step")
        if saga_type and step:
            try:
                get_definition(saga_type).index(step)
            except UnknownSagaType as exc:
                raise forms.ValidationError({"saga_type": str(exc)}) from exc
            except KeyError as exc:
                raise forms.ValidationError({"step": f"{saga_type} has no step {step!r}"}) from exc
        return data


class FaultRuleAdmin(admin.ModelAdmin):
    form = FaultRuleForm
    list_display = ("saga_type", "step", "phase", "mode", "remaining", "hits", "updated_at")
    list_filter = ("saga_type", "mode", "phase")
    fields = ("saga_type", "step", "phase", "mode", "remaining", "hits")
    readonly_fields = ("hits",)

    def save_model(self, request: HttpRequest, obj: FaultRule, form: Any, change: bool) -> None:
        now = timezone.now()
        if not change:
            obj.created_at = now
        obj.updated_at = now
        super().save_model(request, obj, form, change)


if settings.FAULT_INJECTION_ENABLED:
    admin.site.register(FaultRule, FaultRuleAdmin)
