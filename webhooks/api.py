"""REST endpoints for webhooks: staff with the ``webhooks.manage_webhooks`` permission."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from infrastructure.api.errors import ERROR_RESPONSES
from infrastructure.api.pagination import PAGE_PARAMETERS, StandardPagination
from webhooks.catalogue import event_type_names
from webhooks.delivery import delivery_redeliver
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import EndpointInvalid, endpoint_create, endpoint_delete, endpoint_update

PERMISSION = "webhooks.manage_webhooks"


class CanManageWebhooks(BasePermission):
    message = "Only staff with the permission to manage webhooks can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perm(PERMISSION))


class StrictCharField(serializers.CharField):
    """A string, and only a string (no number turned into one)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class EventTypesField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=serializers.ChoiceField(choices=event_type_names()),
            allow_empty=False,
            min_length=1,  # allow_empty alone does not reach the schema
            max_length=20,
            **kwargs,
        )


class RefuseUnknownFields(serializers.Serializer):
    # infrastructure.api.schema writes `additionalProperties: false` for serializers saying this.
    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class EndpointInputSerializer(RefuseUnknownFields):
    url = serializers.URLField(max_length=2000)
    event_types = EventTypesField()
    description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class EndpointChangeSerializer(RefuseUnknownFields):
    url = serializers.URLField(max_length=2000, required=False)
    event_types = EventTypesField(required=False)
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class EndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    is_active = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class CreatedEndpointSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="whsec_…: shown in full only in this answer.")


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=DeliveryStatus.values)
    attempts = serializers.IntegerField()
    response_status = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)


def _int_id(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise NotFound(f"No {what} with this id.") from None
    if not 0 < number < 2**63:
        raise NotFound(f"No {what} with this id.")
    return number


def _endpoint(endpoint_id: str) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.get(id=_int_id(endpoint_id, "webhook endpoint"))
    except WebhookEndpoint.DoesNotExist:
        raise NotFound("No webhook endpoint with this id.") from None


def _invalid(exc: EndpointInvalid) -> ValidationError:
    return ValidationError({exc.field: [str(exc)]})


_WRITE_ERRORS = ERROR_RESPONSES(400, 401, 403, 404, 413, 415)


class WebhookListView(APIView):
    permission_classes = [CanManageWebhooks]
    pagination_class = StandardPagination

    @extend_schema(
        summary="List webhook endpoints",
        parameters=PAGE_PARAMETERS,
        responses={200: EndpointSerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(WebhookEndpoint.objects.all(), request, view=self)
        return paginator.get_paginated_response(EndpointSerializer(page or [], many=True).data)

    @extend_schema(
        summary="Register a webhook endpoint",
        request=EndpointInputSerializer,
        responses={201: CreatedEndpointSerializer, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        payload = EndpointInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            created = endpoint_create(**payload.validated_data)
        except EndpointInvalid as exc:
            raise _invalid(exc) from None
        body = dict(EndpointSerializer(created.endpoint).data, secret=created.secret)
        return Response(body, status=201)


class WebhookDetailView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(
        summary="Read a webhook endpoint",
        responses={200: EndpointSerializer, **ERROR_RESPONSES(401, 403, 404)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(EndpointSerializer(_endpoint(endpoint_id)).data)

    @extend_schema(
        summary="Change a webhook endpoint",
        request=EndpointChangeSerializer,
        responses={200: EndpointSerializer, **_WRITE_ERRORS},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(endpoint_id)
        payload = EndpointChangeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            changed = endpoint_update(endpoint_id=endpoint.id, **payload.validated_data)
        except EndpointInvalid as exc:
            raise _invalid(exc) from None
        except WebhookEndpoint.DoesNotExist:
            raise NotFound("No webhook endpoint with this id.") from None
        return Response(EndpointSerializer(changed).data)

    @extend_schema(
        summary="Remove a webhook endpoint (and its delivery log)",
        responses={204: None, **ERROR_RESPONSES(401, 403, 404)},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        try:
            endpoint_delete(endpoint_id=_endpoint(endpoint_id).id)
        except WebhookEndpoint.DoesNotExist:
            raise NotFound("No webhook endpoint with this id.") from None
        return Response(status=204)


class WebhookDeliveriesView(APIView):
    permission_classes = [CanManageWebhooks]
    pagination_class = StandardPagination

    @extend_schema(
        summary="List an endpoint's deliveries, newest first",
        parameters=PAGE_PARAMETERS,
        responses={200: DeliverySerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(endpoint_id)
        deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).order_by(
            "-created_at", "-id"
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page or [], many=True).data)


class WebhookRedeliverView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(
        summary="Send a delivery again now",
        request=None,
        responses={202: DeliverySerializer, **ERROR_RESPONSES(401, 403, 404)},
    )
    def post(self, request: Request, endpoint_id: str, delivery_id: str) -> Response:
        endpoint = _endpoint(endpoint_id)
        number = _int_id(delivery_id, "delivery")
        if not WebhookDelivery.objects.filter(id=number, endpoint=endpoint).exists():
            raise NotFound("No delivery with this id.")
        delivery = delivery_redeliver(delivery_id=number)
        return Response(DeliverySerializer(delivery).data, status=202)
