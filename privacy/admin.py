"""Staff pages of personal data: the record of erasures (read-only; never the data)."""

from __future__ import annotations

from django.contrib import admin

from backoffice.admin import ReadOnlyAdmin
from privacy.models import Erasure


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = ("customer_id", "erased_at", "actor", "orders", "keys")
    search_fields = ("customer_id",)
    fields = ("customer_id", "erased_at", "actor", "reason", "orders", "keys")
    readonly_fields = fields
