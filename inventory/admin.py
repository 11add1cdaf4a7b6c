"""Staff screens for the catalogue's stock and the reservations orders hold."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from backoffice.admin import ReadOnlyAdmin
from inventory.errors import StockBelowReserved, StockChanged
from inventory.models import Product, Reservation, ReservationLine
from inventory.services import product_create, product_update

_SAVE_REFUSED = "_inventory_save_refused"


class ProductAdminForm(forms.ModelForm):
    # The stock figure the editor saw: a save after stock moved is refused, not overwritten.
    expected_stock_on_hand = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Product
        fields = ("sku", "name", "price", "stock_on_hand")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["expected_stock_on_hand"].initial = self.instance.stock_on_hand

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        expected = cleaned.get("expected_stock_on_hand")
        if self.instance.pk is not None and expected is not None:
            current = Product.objects.values_list("stock_on_hand", flat=True).get(
                pk=self.instance.pk
            )
            if current != expected:
                self.add_error(
                    "stock_on_hand",
                    f"Stock on hand changed from {expected} to {current} while you edited "
                    "(orders were confirmed or cancelled). Reload the page and try again.",
                )
        return cleaned


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = (
        "sku",
        "name",
        "price",
        "currency",
        "stock_on_hand",
        "stock_reserved",
        "available",
        "updated_at",
    )
    search_fields = ("sku", "name")
    ordering = ("sku",)
    list_per_page = 100

    def get_fields(self, request: HttpRequest, obj: Product | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("sku", "name", "price", "stock_on_hand")
        return (
            "sku",
            "name",
            "price",
            "currency",
            "stock_on_hand",
            "stock_reserved",
            "available",
            "expected_stock_on_hand",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> list[str]:
        # Reserved units move only through reservations; the sku names the product for good.
        if obj is None:
            return []
        return ["sku", "currency", "stock_reserved", "available", "created_at", "updated_at"]

    @admin.display(description="available")
    def available(self, obj: Product) -> int:
        return obj.stock_available

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Orders and reservations refer to products by sku: a product is never deleted.
        return False

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            obj.pk = product_create(
                sku=data["sku"],
                name=data["name"],
                price=data["price"],
                stock_on_hand=data["stock_on_hand"],
            )
            return
        try:
            product_update(
                sku=obj.sku,
                name=data["name"],
                price=data["price"],
                stock_on_hand=data["stock_on_hand"],
                expected_stock_on_hand=data.get("expected_stock_on_hand"),
            )
        except (StockChanged, StockBelowReserved) as exc:
            # Stock moved between the form's checks and the save: nothing was written.
            setattr(request, _SAVE_REFUSED, True)
            self.message_user(request, f"Not saved: {exc}.", level=messages.ERROR)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if getattr(request, _SAVE_REFUSED, False):
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request: HttpRequest, obj: Product) -> HttpResponse:
        if getattr(request, _SAVE_REFUSED, False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReservationLineInline(ReadOnlyInline):
    model = ReservationLine
    fields = ("product", "quantity")
    readonly_fields = ("product", "quantity")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReservationLine]:
        # Each line shows its product: fetch them with the lines, not one query per line.
        return super().get_queryset(request).select_related("product")


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "status", "reserved_at", "committed_at", "released_at")
    list_filter = ("status",)
    search_fields = ("=order_id",)
    ordering = ("-reserved_at",)
    inlines = (ReservationLineInline,)
    readonly_fields = (
        "order_id",
        "status",
        "reserved_key",
        "reserved_at",
        "committed_key",
        "committed_at",
        "released_key",
        "released_at",
        "restocked_key",
        "restocked_at",
        "updated_at",
    )
