"""REST endpoints for sagas: staff read them; operators retry or skip what needs attention."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from infrastructure.api.errors import ERROR_RESPONSES, error_response
from infrastructure.api.pagination import PAGE_PARAMETERS, StandardPagination, page_parameters
from infrastructure.api.params import choice_param, query_param
from sagas.errors import ReasonRequired, SagaNotFound, SagaStateConflict
from sagas.models import Saga
from sagas.operations import RETRY, SKIP_STEP, OperatorAction
from sagas.selectors import saga_detail, saga_list, saga_log
from sagas.statuses import SagaStatus


class StaffWith(BasePermission):
    """Allow staff users holding one permission."""

    perm = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perm(self.perm))


class CanViewSagas(StaffWith):
    perm = "sagas.view_saga"
    message = "Only staff with the permission to view sagas can see them."


class CanRetrySagas(StaffWith):
    perm = RETRY.permission
    message = RETRY.denied


class CanSkipCompensations(StaffWith):
    perm = SKIP_STEP.permission
    message = SKIP_STEP.denied


class SagaStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class SagaLogSerializer(serializers.Serializer):
    step = serializers.CharField()
    phase = serializers.CharField()
    attempt = serializers.IntegerField()
    status = serializers.CharField()
    error = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    worker = serializers.CharField(allow_blank=True)


class OperatorActionSerializer(serializers.Serializer):
    action = serializers.CharField()
    actor = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    step = serializers.CharField()
    at = serializers.DateTimeField()


class FailureSerializer(serializers.Serializer):
    step = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField(allow_blank=True)


class SagaSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField(source="saga_type")
    status = serializers.CharField()
    subject = serializers.CharField()
    correlation_id = serializers.CharField()
    current_step = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class LogPagination(StandardPagination):
    """Page the attempt log inside a saga's detail: ``log_page`` and ``log_page_size``."""

    page_query_param = "log_page"
    page_size_query_param = "log_page_size"


LOG_PAGE_PARAMETERS = page_parameters(
    "log_",
    page="Page of the attempt log",
    entries="Log entries",
    page_size=LogPagination.page_size,
)


class SagaDetailSerializer(SagaSummarySerializer):
    """A saga's detail; ``log`` is one page of its attempt log (oldest first), ``log_count``
    all its entries, ``log_next``/``log_previous`` the pages around (as the lists' links)."""

    #: The version of its type's definition the saga started under and finishes under.
    definition_version = serializers.IntegerField()
    context = serializers.JSONField()  # type: ignore[assignment]
    #: The saga's deadline (DESIGN.md's name), the model's ``finish_by``.
    deadline = serializers.DateTimeField(source="finish_by")
    failure = serializers.SerializerMethodField()
    steps = SagaStepSerializer(many=True)
    log = SagaLogSerializer(many=True, source="log_page")
    log_count = serializers.IntegerField()
    log_next = serializers.URLField(allow_null=True)
    log_previous = serializers.URLField(allow_null=True)
    operator_actions = OperatorActionSerializer(many=True)

    @extend_schema_field(FailureSerializer(allow_null=True))
    def get_failure(self, saga: Saga) -> dict[str, str] | None:
        if not saga.failure_code:
            return None
        return {
            "step": saga.failure_step,
            "code": saga.failure_code,
            "message": saga.failure_message,
        }


class StrictStringMixin:
    """Accept JSON strings only: DRF's CharField would turn 0 or true into "0" or "True"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return str(super().to_internal_value(data))  # type: ignore[misc]


class ReasonField(StrictStringMixin, serializers.CharField):
    """Read an operator's reason: a JSON string."""


class NonEmptyReasonField(StrictStringMixin, serializers.RegexField):
    """Read an operator's reason that must say something: a JSON string matching a pattern."""


class ReasonSerializer(serializers.Serializer):
    reason = ReasonField(required=False, allow_blank=True, max_length=2000)


class SkipSerializer(serializers.Serializer):
    # The pattern (some non-space character, no NUL) is the skip service's "non-empty reason"
    # rule plus DRF's NUL check, so the schema says exactly what is accepted.
    reason = NonEmptyReasonField(
        r"^[^\x00]*[^\s\x00][^\x00]*$",
        max_length=2000,
        # The pattern alone judges blankness: str.strip() and the schema's \s could disagree.
        trim_whitespace=False,
        error_messages={"invalid": "Skipping a step needs a non-empty reason (a string)."},
    )


def _detail(saga_id: UUID, request: Request, *, with_context: bool = True) -> dict[str, Any]:
    """Return the saga's detail as the API shows it (404 for an unknown id, or a log page
    past the last).

    ``with_context`` False leaves out the context: what the steps carry (customer and order
    data) is for staff who may view sagas, not for an operator allowed only to retry or skip.
    """
    try:
        detail = saga_detail(saga_id=saga_id, with_log=False)
    except SagaNotFound:
        raise NotFound("No saga with this id.") from None
    # The selector's saga carries its steps and operator actions, prefetched in order; the
    # log, which a step retrying for long makes the longest part, comes a page at a time.
    saga = detail.saga
    paginator = LogPagination()
    saga.log_page = paginator.paginate_queryset(saga_log(saga_id=saga_id), request) or []  # type: ignore[attr-defined]
    page = paginator.page
    saga.log_count = page.paginator.count if page is not None else 0  # type: ignore[attr-defined]
    saga.log_next = paginator.get_next_link()  # type: ignore[attr-defined]
    saga.log_previous = paginator.get_previous_link()  # type: ignore[attr-defined]
    body: dict[str, Any] = SagaDetailSerializer(saga).data
    if not with_context:
        body.pop("context", None)
    return body


def _parse_id(saga_id: str) -> UUID:
    try:
        return UUID(saga_id)
    except ValueError:
        raise NotFound("No saga with this id.") from None


def _actor(request: Request) -> str:
    return f"user:{request.user.pk}"


class SagaListView(APIView):
    permission_classes = [CanViewSagas]
    pagination_class = StandardPagination

    @extend_schema(
        summary="List sagas",
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in SagaStatus]),
            OpenApiParameter("type", str),
            *PAGE_PARAMETERS,
        ],
        responses={200: SagaSummarySerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        sagas = saga_list(
            status=choice_param(request, "status", [s.value for s in SagaStatus]),
            saga_type=query_param(request, "type") or None,
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(sagas, request, view=self) or []
        return paginator.get_paginated_response(SagaSummarySerializer(page, many=True).data)


class SagaDetailView(APIView):
    permission_classes = [CanViewSagas]

    @extend_schema(
        summary="A saga with its steps, attempt log (a page of it) and operator actions",
        parameters=LOG_PAGE_PARAMETERS,
        responses={200: SagaDetailSerializer, **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request, saga_id: str) -> Response:
        return Response(_detail(_parse_id(saga_id), request))


class OperatorActionView(APIView):
    """Run one operator action (``sagas.operations``) on a saga; answer with its detail."""

    operator_action: ClassVar[OperatorAction]
    reason_serializer: ClassVar[type[serializers.Serializer]]

    def post(self, request: Request, saga_id: str) -> Response:
        uid = _parse_id(saga_id)
        payload = self.reason_serializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            self.operator_action.run(
                saga_id=uid,
                actor=_actor(request),
                reason=payload.validated_data.get("reason", ""),
            )
        except ReasonRequired as exc:
            raise ValidationError({"reason": [str(exc)]}) from exc
        except SagaNotFound as exc:
            raise NotFound("No saga with this id.") from exc
        except SagaStateConflict as exc:
            return error_response(409, str(exc))
        may_view = request.user.has_perm(CanViewSagas.perm)
        return Response(_detail(uid, request, with_context=may_view), status=202)


_OPERATOR_ERRORS = ERROR_RESPONSES(400, 401, 403, 404, 409, 413, 415)


@extend_schema_view(
    post=extend_schema(
        summary="Resume a saga from its failed compensation",
        description=(
            "Starts a new round of attempts at the failed compensation. 409 unless the saga "
            "is COMPENSATION_FAILED."
        ),
        request=ReasonSerializer,
        responses={202: SagaDetailSerializer, **_OPERATOR_ERRORS},
    )
)
class SagaRetryView(OperatorActionView):
    permission_classes = [CanRetrySagas]
    operator_action = RETRY
    reason_serializer = ReasonSerializer


@extend_schema_view(
    post=extend_schema(
        summary="Resolve by hand the step a saga needing attention waits at, then continue",
        description=(
            "A COMPENSATION_FAILED saga: marks the failed compensation SKIPPED and carries on "
            "compensating. A saga past its deadline, or retrying a step forward past its "
            "point of no return: the step it waits at counts as done by hand (an action "
            "SUCCEEDED, a compensation SKIPPED) and the saga carries on. The reason is "
            "recorded. 409 when the saga needs no attention or an attempt of the step is "
            "running."
        ),
        request=SkipSerializer,
        responses={202: SagaDetailSerializer, **_OPERATOR_ERRORS},
    )
)
class SagaSkipView(OperatorActionView):
    permission_classes = [CanSkipCompensations]
    operator_action = SKIP_STEP
    reason_serializer = SkipSerializer
