"""REST endpoints for orders (thin: parse, call one service or selector, shape the answer)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID, uuid4

from django.urls import get_script_prefix, reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from eventstore.errors import VersionNotFound
from infrastructure.api.errors import ERROR_RESPONSES, error_response
from infrastructure.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from infrastructure.api.idempotency import KEY_SCHEMA
from infrastructure.api.pagination import PAGE_PARAMETERS, StandardPagination
from infrastructure.api.params import MAX_INT_PARAM, choice_param, int_param, query_param
from infrastructure.logs import log_bind
from orders.domain import (
    MAX_ORDER_TOTAL,
    InvalidOrder,
    OrderAlreadyCancelled,
    OrderNotCancellable,
    OrderStatus,
)
from orders.idempotency import order_keys
from orders.personal_data import PersonalView, event_ciphers
from orders.selectors import (
    just_placed_sagas,
    order_as_of,
    order_events,
    order_get,
    order_list,
    saga_summaries,
)
from orders.serializers import (
    CUSTOMER_ID_MAX,
    CustomerEraseInputSerializer,
    CustomerErasureSerializer,
    OrderCancelInputSerializer,
    OrderCreateInputSerializer,
    OrderEventSerializer,
    OrderSerializer,
    event_actor_names,
    order_representation,
    orders_representation,
)
from orders.services import (
    OrderAlreadyPlaced,
    OrderLineRequest,
    OrderNotFound,
    customer_erase,
    order_place,
    order_request_cancellation,
)
from payments.errors import PaymentGatewayUnavailable, PaymentMethodRejected
from privacy.models import ERASE_PERMISSION

logger = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"


def parse_order_id(raw: str) -> UUID:
    """Return the id as a UUID; a malformed id is simply an order that does not exist."""
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("No order with this id.") from None


def actor_of(request: Request) -> str:
    return f"user:{request.user.pk}"


def correlation_of(request: Request) -> str:
    raw = request.headers.get(CORRELATION_HEADER, "")
    if raw and len(raw) <= 100 and raw.isascii() and raw.isprintable():
        return raw
    return str(uuid4())


def order_body(order: Any) -> dict[str, Any]:
    """Return ``order`` as the API shows it, with its sagas read afresh."""
    return order_representation(order, saga_summaries(order_ids=[order.id])[str(order.id)])


def accepted(
    request: Request,
    order: Any,
    sagas: Sequence[Mapping[str, Any]] | None = None,
    personal: PersonalView | None = None,
) -> Response:
    """Answer 202 with the order and its ``Location`` (``sagas`` read when not given)."""
    body = order_body(order) if sagas is None else order_representation(order, sagas, personal)
    response = Response(body, status=status.HTTP_202_ACCEPTED)
    response["Location"] = request.build_absolute_uri(order_location(order.id))
    return response


def order_location(order_id: UUID) -> str:
    return _order_path(get_script_prefix()).format(order_id)


@functools.lru_cache(maxsize=16)
def _order_path(script_prefix: str) -> str:
    # Resolving the URL pattern on every POST cost as much as formatting the order's body;
    # the path only changes with the script prefix, which reverse() reads too.
    marker = "00000000-0000-0000-0000-000000000000"
    return reverse("api:order-detail", kwargs={"order_id": marker}).replace(marker, "{}")


class OrderListCreateView(APIView):
    pagination_class = StandardPagination

    @extend_schema(
        summary="List orders",
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in OrderStatus]),
            OpenApiParameter("customer_id", str),
            *PAGE_PARAMETERS,
        ],
        responses={200: OrderSerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        orders = order_list(
            user=request.user,
            status=choice_param(request, "status", [s.value for s in OrderStatus]),
            customer_id=query_param(request, "customer_id") or None,
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(orders, request, view=self) or []
        sagas = saga_summaries(order_ids=[o.id for o in page])
        return paginator.get_paginated_response(orders_representation(page, sagas))

    @extend_schema(
        summary="Place an order",
        description=(
            "Validates the order, prices it from the catalogue, creates it PENDING and "
            "starts its saga (reserve stock, charge payment, confirm). An order's total is at "
            f"most {MAX_ORDER_TOTAL} (a 400 on `items` above it). Poll the order or its "
            "saga for the outcome. With an `Idempotency-Key` header, the same key and body "
            "return the first response and create nothing; a different body gets 422; a "
            "request still in flight with the key gets 409."
        ),
        request=OrderCreateInputSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                KEY_SCHEMA,
                OpenApiParameter.HEADER,
                description="Replays of the same request with this key create nothing.",
            ),
            OpenApiParameter(CORRELATION_HEADER, str, OpenApiParameter.HEADER),
        ],
        responses={
            202: OrderSerializer,
            **ERROR_RESPONSES(400, 401, 403, 409, 413, 415, 422, 503),
        },
        examples=[
            OpenApiExample(
                "An order",
                value={
                    "customer_id": "c-42",
                    "items": [{"sku": "SKU-1", "quantity": 2}],
                    "payment_token": "tok_visa",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        payload = OrderCreateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        order = payload.validated_data

        def place(order_id: UUID | None) -> Response:
            correlation_id = correlation_of(request)
            log_bind(correlation_id=correlation_id, order_id=order_id)
            try:
                placed = order_place(
                    customer_id=order["customer_id"],
                    lines=[OrderLineRequest(i["sku"], i["quantity"]) for i in order["items"]],
                    payment_token=order["payment_token"],
                    contact=order.get("contact"),
                    actor=actor_of(request),
                    correlation_id=correlation_id,
                    order_id=order_id,
                )
            except InvalidOrder as exc:
                raise ValidationError(exc.errors) from exc
            except PaymentMethodRejected as exc:
                raise ValidationError({"payment_token": [str(exc)]}) from exc
            except PaymentGatewayUnavailable:
                # Nothing was written: the client may send the same request again.
                return error_response(503, "The payment gateway is unavailable; try again.")
            except OrderAlreadyPlaced:
                # A retry of a request whose answer was lost after its order committed.
                assert order_id is not None
                return accepted(request, order_get(user=request.user, order_id=order_id))
            log_bind(order_id=placed.order_id, saga_id=placed.saga_id)
            logger.info("order %s placed, saga %s started", placed.order_id, placed.saga_id)
            return accepted(request, placed.order, just_placed_sagas(placed), placed.personal)

        return order_keys.respond(request, place)


class OrderDetailView(APIView):
    @extend_schema(
        summary="An order, now or as of a version",
        parameters=[
            OpenApiParameter(
                "version",
                {"type": "integer", "minimum": 1, "maximum": MAX_INT_PARAM},
                description=(
                    "Replay the order's events up to this version (1 = as created); "
                    "a version past the order's last is a 404 naming its versions."
                ),
            )
        ],
        responses={200: OrderSerializer, **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request, order_id: str) -> Response:
        oid = parse_order_id(order_id)
        version = int_param(request, "version", minimum=1, below_minimum="Versions start at 1.")
        try:
            if version is None:
                order: Any = order_get(user=request.user, order_id=oid)
            else:
                order = order_as_of(user=request.user, order_id=oid, version=version)
        except OrderNotFound as exc:
            raise NotFound("No order with this id.") from exc
        except VersionNotFound as exc:
            raise NotFound(f"Order {oid} has versions 1 to {exc.current}.") from exc
        return Response(order_body(order))


class OrderEventsView(APIView):
    pagination_class = StandardPagination

    @extend_schema(
        summary="The order's events, oldest first",
        parameters=PAGE_PARAMETERS,
        responses={200: OrderEventSerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request, order_id: str) -> Response:
        oid = parse_order_id(order_id)
        try:
            events = order_events(user=request.user, order_id=oid)
        except OrderNotFound as exc:
            raise NotFound("No order with this id.") from exc
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(events, request, view=self) or []
        context = {"names": event_actor_names(page), "ciphers": event_ciphers(page)}
        shown = OrderEventSerializer(page, many=True, context=context).data
        return paginator.get_paginated_response(shown)


class OrderCancelView(APIView):
    @extend_schema(
        summary="Cancel an order that is not cancelled yet",
        description=(
            "A PENDING order: its placing saga stops at the next step boundary (a step "
            "already running finishes first) and undoes what it did: refund, release the "
            "stock, cancel the order. If it confirmed first, a cancel saga follows. A "
            "CONFIRMED order: the cancel saga refunds the payment, puts the units back in "
            "stock and marks the order CANCELLED. Either way the order ends CANCELLED, "
            "`cancelled_by_client` for your own order, `cancelled_by_staff` for staff with "
            "the cancel permission cancelling another's. A repeated request while the "
            "cancellation is under way is a 202 too; 409 only when the order is already "
            "CANCELLED."
        ),
        request=OrderCancelInputSerializer,
        responses={202: OrderSerializer, **ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request: Request, order_id: str) -> Response:
        oid = parse_order_id(order_id)
        OrderCancelInputSerializer(data=request.data).is_valid(raise_exception=True)
        user = request.user
        try:
            order_get(user=user, order_id=oid)
            order_request_cancellation(
                order_id=oid,
                actor=actor_of(request),
                acting_as_staff=bool(user.is_staff and user.has_perm("orders.cancel_order")),
                correlation_id=correlation_of(request),
            )
        except OrderNotFound as exc:
            raise NotFound("No order with this id.") from exc
        except (OrderAlreadyCancelled, OrderNotCancellable) as exc:
            return error_response(409, str(exc))
        return accepted(request, order_get(user=user, order_id=oid))


class CanEraseCustomers(BasePermission):
    """Allow staff holding the erasure permission."""

    message = "Only staff with the permission to erase customers' personal data can."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user and user.is_authenticated and user.is_staff and user.has_perm(ERASE_PERMISSION)
        )


class CustomerEraseView(APIView):
    permission_classes = [CanEraseCustomers]

    @extend_schema(
        summary="Erase a customer's personal data",
        description=(
            "Destroys the customer's data key: every order of theirs placed so far answers "
            "`contact: null` and `personal_data_erased: true`, its events all kept with the "
            "personal fields unreadable. Recorded (who, when, why), without the data. "
            "Idempotent: a repeat answers the same. Orders placed afterwards start a new key."
        ),
        request=CustomerEraseInputSerializer,
        responses={
            200: CustomerErasureSerializer,
            **ERROR_RESPONSES(400, 401, 403, 404, 413, 415),
        },
    )
    def post(self, request: Request, customer_id: str) -> Response:
        if not 1 <= len(customer_id) <= CUSTOMER_ID_MAX or not customer_id.isprintable():
            raise NotFound(f"A customer id is 1 to {CUSTOMER_ID_MAX} printable characters.")
        payload = CustomerEraseInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        done = customer_erase(
            customer_id=customer_id,
            reason=payload.validated_data["reason"],
            actor=actor_of(request),
        )
        if done.erased_now:
            logger.info("customer %s erased: %d orders", customer_id, done.orders)
        return Response(CustomerErasureSerializer(done).data)
