"""Staff pages for orders: the read model's list, and each order with its sagas and history.

Nothing on an order is edited by hand: its state comes from its events. The order page shows
the order, the sagas that acted on it, its event timeline and its state as of any version;
staff holding ``orders.cancel_order`` can cancel a pending or confirmed order from it (one
order, or a selection with the list's action), behind a confirmation page, through the same
service as the REST API: a pending order's placing saga stops at its next step boundary and
compensates, a confirmed order gets the cancel saga.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from backoffice.admin import (
    ReadOnlyAdmin,
    RefuseUnavailableActions,
    confirmation_page,
    confirmed,
    pretty_json,
    register_subject_admin,
    render_links,
)
from eventstore.admin import correlation_links, register_stream_admin
from eventstore.errors import VersionNotFound
from infrastructure.snapshots import read_snapshot
from orders.domain import OrderAlreadyCancelled, OrderNotCancellable, OrderStatus
from orders.models import OrderSummary
from orders.personal_data import event_ciphers, personal_views
from orders.selectors import OrderAsOf, order_replay, order_stream_events
from orders.serializers import event_actor_names, event_data_named
from orders.services import (
    CANCEL_ORDER,
    OrderNotFound,
    customer_erase,
    order_request_cancellation,
    order_subject,
)
from privacy.models import ERASE_PERMISSION
from sagas.models import Saga
from sagas.selectors import sagas_for_subject

CANCEL_PERMISSION = "orders.cancel_order"
#: The statuses an order can be cancelled from (the service decides how).
CANCELLABLE = (OrderStatus.PENDING, OrderStatus.CONFIRMED)

register_stream_admin("order", "admin:orders_ordersummary_change", label="order")
register_subject_admin("order", "admin:orders_ordersummary_change")


@admin.register(OrderSummary)
class OrderAdmin(RefuseUnavailableActions, ReadOnlyAdmin):
    list_display = (
        "id",
        "customer_id",
        "status",
        "cancellation_reason",
        "amount",
        "saga",
        "version",
        "created_at",
    )
    list_filter = ("status", "created_at", "cancellation_reason")
    search_fields = ("customer_id",)
    search_help_text = "An order id (exact) or a customer id (or part of one)."
    ordering = ("-created_position",)
    list_per_page = 100
    show_full_result_count = False
    change_form_template = "admin/orders/ordersummary/change_form.html"
    actions = ("cancel_orders", "erase_customers")
    fields = (
        "id",
        "customer_id",
        "contact",
        "personal_data_erased",
        "status",
        "cancellation_reason",
        "items_table",
        "total",
        "currency",
        "version",
        "placed_by",
        "correlation",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CANCEL_PERMISSION)

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ERASE_PERMISSION)

    @admin.display(description="contact")
    def contact(self, obj: OrderSummary) -> str:
        shown = personal_views([obj])[str(obj.id)].contact
        return pretty_json(shown) if shown is not None else "-"

    @admin.display(description="personal data erased", boolean=True)
    def personal_data_erased(self, obj: OrderSummary) -> bool:
        return personal_views([obj])[str(obj.id)].personal_data_erased

    @admin.action(
        permissions=["erase"],
        description="Erase the personal data of the selected orders' customers",
    )
    def erase_customers(
        self, request: HttpRequest, queryset: QuerySet[OrderSummary]
    ) -> HttpResponse | None:
        """Confirm (with a reason), then erase each selected order's customer."""
        customers = sorted({o.customer_id for o in queryset})
        reason = request.POST.get("reason", "").strip()
        if confirmed(request) and reason:
            for customer_id in customers:
                done = customer_erase(
                    customer_id=customer_id, reason=reason, actor=f"user:{request.user.pk}"
                )
                self.message_user(
                    request,
                    f"Customer {customer_id}: personal data of {done.orders} order(s) erased.",
                    messages.SUCCESS,
                )
            return None
        return confirmation_page(
            self,
            request,
            "admin/orders/ordersummary/erase_confirmation.html",
            title="Erase customers' personal data",
            single=False,
            back_url=request.get_full_path(),
            orders=list(queryset),
            customers=customers,
            reason_missing=confirmed(request) and not reason,
        )

    @admin.action(permissions=["cancel"], description="Cancel the selected orders")
    def cancel_orders(
        self, request: HttpRequest, queryset: QuerySet[OrderSummary]
    ) -> HttpResponse | None:
        """Confirm, then cancel each selected order (stop its placing saga, or a cancel saga)."""
        orders = list(queryset)
        if confirmed(request):
            for order in orders:
                self._cancel(request, order)
            return None
        return self._confirmation(request, orders, back_url=request.get_full_path(), single=False)

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderSummary]:
        # The newest saga acting on each order, in the list's own query (the subject index
        # answers each row with one probe).
        newest = Saga.objects.filter(
            subject=Concat(Value("order:"), Cast(OuterRef("id"), output_field=CharField()))
        ).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                saga_id=Subquery(newest.values("id")[:1]),
                saga_type=Subquery(newest.values("saga_type")[:1]),
                saga_status=Subquery(newest.values("status")[:1]),
            )
        )

    @admin.display(description="newest saga")
    def saga(self, obj: OrderSummary) -> str:
        saga_id = getattr(obj, "saga_id", None)
        if saga_id is None:
            return ""
        return format_html(
            '<a href="{}">{} <span class="backoffice-status backoffice-status-{}">{}</span></a>',
            reverse("admin:sagas_saga_change", args=[saga_id]),
            getattr(obj, "saga_type", ""),
            getattr(obj, "saga_status", ""),
            getattr(obj, "saga_status", ""),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OrderSummary], search_term: str
    ) -> tuple[QuerySet[OrderSummary], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            # An order id finds that order by its primary key; anything else is a customer.
            return queryset.filter(Q(id=UUID(term)) | Q(customer_id=term)), False
        except ValueError:
            return queryset.filter(customer_id__icontains=term), False

    @admin.display(description="total", ordering="total")
    def amount(self, obj: OrderSummary) -> str:
        return f"{obj.total} {obj.currency}"

    @admin.display(description="items")
    def items_table(self, obj: OrderSummary) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (i["sku"], i["name"], i["quantity"], i["unit_price"], i["line_total"])
                for i in obj.items
            ),
        )
        return format_html(
            '<table class="backoffice-table"><thead><tr><th>sku</th><th>name</th>'
            "<th>quantity</th><th>unit price</th><th>line total</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="correlation id")
    def correlation(self, obj: OrderSummary) -> str:
        if not obj.correlation_id:
            return ""
        return format_html(
            "{} ({})",
            obj.correlation_id,
            render_links(correlation_links(obj.correlation_id, actor=obj.placed_by)),
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<uuid:order_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="orders_ordersummary_cancel",
            ),
        ]
        return own + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        # One snapshot for the order, its events and its sagas (see infrastructure.snapshots).
        with read_snapshot():
            order = self.get_object(request, object_id)
            if order is not None and self.has_view_permission(request, order):
                context.update(self._history_context(request, order))
                if order.status in CANCELLABLE and self.has_cancel_permission(request):
                    context["cancel_url"] = reverse(
                        "admin:orders_ordersummary_cancel", args=[order.id]
                    )
            return super().change_view(request, object_id, form_url, context)

    def _history_context(self, request: HttpRequest, order: OrderSummary) -> dict[str, Any]:
        # change_view checked has_view_permission (Django's view-or-change rule) already.
        events = list(order_stream_events(order_id=order.id))
        sagas = list(sagas_for_subject(subject=order_subject(order.id)))
        names = event_actor_names(events)
        ciphers = event_ciphers(events)
        context: dict[str, Any] = {
            "sagas": sagas,
            "events": [
                {
                    "event": e,
                    "actor": names.get(
                        str(e.metadata.get("actor", "")), e.metadata.get("actor", "")
                    ),
                    "data": pretty_json(event_data_named(e, names, ciphers)),
                    "url": reverse("admin:eventstore_storedevent_change", args=[e.position]),
                }
                for e in events
            ],
            "versions": range(1, order.version + 1),
            "as_of": None,
            "as_of_error": "",
        }
        raw = request.GET.get("version", "")
        if raw:
            as_of: OrderAsOf | None = None
            try:
                as_of = order_replay(order_id=order.id, version=int(raw))
            except ValueError:
                context["as_of_error"] = "The version must be a whole number."
            except (VersionNotFound, OrderNotFound):
                context["as_of_error"] = f"This order has versions 1 to {order.version}."
            context["as_of"] = as_of
        return context

    def cancel_view(self, request: HttpRequest, order_id: UUID) -> HttpResponse:
        """Confirm, then cancel a pending or confirmed order."""
        if not (self.has_view_permission(request) and self.has_cancel_permission(request)):
            raise PermissionDenied
        order = OrderSummary.objects.filter(pk=order_id).first()
        if order is None:
            raise Http404("No order with this id.")
        back = reverse("admin:orders_ordersummary_change", args=[order.id])
        if confirmed(request):
            self._cancel(request, order)
            return HttpResponseRedirect(back)
        return self._confirmation(request, [order], back_url=back, single=True)

    def _cancel(self, request: HttpRequest, order: OrderSummary) -> None:
        try:
            saga_id = order_request_cancellation(
                order_id=order.id,
                actor=f"user:{request.user.pk}",
                acting_as_staff=True,
            )
        except (OrderAlreadyCancelled, OrderNotCancellable, OrderNotFound) as exc:
            self.message_user(request, f"Order {order.id} not cancelled: {exc}.", messages.ERROR)
            return
        saga = Saga.objects.filter(pk=saga_id).values_list("saga_type", flat=True).first()
        how = (
            "refund, restock, then CANCELLED"
            if saga == CANCEL_ORDER
            else "its placing saga stops at the next step and undoes what it did"
        )
        self.message_user(
            request,
            f"Cancellation of order {order.id} requested (saga {saga_id}): {how}.",
            messages.SUCCESS,
        )

    def _confirmation(
        self, request: HttpRequest, orders: list[OrderSummary], *, back_url: str, single: bool
    ) -> HttpResponse:
        return confirmation_page(
            self,
            request,
            "admin/orders/ordersummary/cancel_confirmation.html",
            title="Cancel order" if single else "Cancel orders",
            single=single,
            back_url=back_url,
            orders=orders,
            cancellable=[o for o in orders if o.status in CANCELLABLE],
            not_cancellable=[o for o in orders if o.status not in CANCELLABLE],
        )
