"""Staff screens for payments and, apart, the simulated processor's records (all read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from backoffice.admin import ReadOnlyAdmin
from payments.models import (
    Payment,
    Refund,
    SimulatedCharge,
    SimulatedRefund,
    SimulatedTransientFailure,
)


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ("id", "amount", "currency", "gateway_reference", "idempotency_key", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "order_id",
        "status",
        "amount",
        "currency",
        "decline_code",
        "created_at",
        "refunded_at",
    )
    list_filter = ("status", "currency", ("refunded_at", admin.EmptyFieldListFilter))
    search_fields = ("=order_id", "=gateway_reference", "=idempotency_key")
    ordering = ("-created_at",)
    inlines = (RefundInline,)
    fields = (
        "id",
        "order_id",
        "status",
        "amount",
        "currency",
        "gateway_reference",
        "decline_code",
        "decline_message",
        "idempotency_key",
        "created_at",
        "updated_at",
        "refunded_at",
    )
    readonly_fields = fields


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "payment", "amount", "currency", "gateway_reference", "created_at")
    list_select_related = ("payment",)
    search_fields = ("=payment__order_id", "=gateway_reference", "=idempotency_key")
    ordering = ("-created_at",)
    fields = (
        "id",
        "payment",
        "amount",
        "currency",
        "gateway_reference",
        "idempotency_key",
        "created_at",
    )
    readonly_fields = fields


@admin.register(SimulatedCharge)
class SimulatedChargeAdmin(ReadOnlyAdmin):
    """The processor's charges, with the card each charged: its fingerprint (the processor keeps
    no table of cards, its references carry them) and the behaviour of its test token."""

    list_display = (
        "reference",
        "outcome",
        "behaviour",
        "amount",
        "currency",
        "card",
        "created_at",
    )
    list_filter = ("outcome", "behaviour")
    # An exact fingerprint lists every charge of one card.
    search_fields = ("=reference", "=idempotency_key", "=fingerprint")
    ordering = ("-created_at",)

    @admin.display(description="card (fingerprint)", ordering="fingerprint")
    def card(self, obj: SimulatedCharge) -> str:
        return f"{obj.fingerprint[:12]}…"


@admin.register(SimulatedRefund)
class SimulatedRefundAdmin(ReadOnlyAdmin):
    list_display = ("reference", "charge", "amount", "currency", "created_at")
    search_fields = ("=reference", "=idempotency_key", "=charge__reference")
    ordering = ("-created_at",)


@admin.register(SimulatedTransientFailure)
class SimulatedTransientFailureAdmin(ReadOnlyAdmin):
    list_display = ("idempotency_key", "failures", "updated_at")
    search_fields = ("=idempotency_key",)
    ordering = ("-updated_at",)
