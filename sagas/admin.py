"""Admin pages of the saga engine: sagas, the operators' queues, and the fault plan.

Sagas change only through the engine and its operator services, so the saga pages allow no
edits. An operator resolves a saga waiting in COMPENSATION_FAILED with *retry* or *skip* (with
a reason), and a saga otherwise needing attention (past its deadline, or retrying a step
forward past its point of no return) with *skip step* (with a reason): admin actions on the
changelist and the queues (one saga or many) and buttons on the saga's page, always behind a
confirmation page, each needing its permission, each calling the same service the REST API
calls. The "needs attention" queue lists every saga an operator has to move on, with why.
The fault plan is editable, and listed only while fault injection is enabled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Now
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from backoffice.admin import (
    AdminLink,
    GivenValueFilter,
    ReadOnlyAdmin,
    RefuseUnavailableActions,
    actor_names,
    confirmation_page,
    confirmed,
    pretty_json,
    subject_link,
)
from backoffice.charts import span_bar
from eventstore.admin import (
    ACTOR_PARAM,
    correlation_query,
    register_correlation_view,
    register_event_linker,
)
from eventstore.models import StoredEvent
from infrastructure.snapshots import read_snapshot
from sagas.engine import attention
from sagas.errors import ReasonRequired, SagaNotFound, SagaStateConflict, UnknownSagaType
from sagas.models import FailedCompensation, FaultRule, NeedsAttention, Saga, SagaStep
from sagas.operations import RETRY, SKIP, SKIP_STEP, OperatorAction
from sagas.recorder import saga_state
from sagas.registry import find_step, get_definition, type_names
from sagas.selectors import SagaDetail, saga_detail
from sagas.statuses import Attention, OperatorActionKind, Phase, SagaStatus

# --- links: events a saga step wrote lead to the saga --------------------------------------


def _saga_of_event(event: StoredEvent) -> AdminLink | None:
    # Events written by a saga step carry its idempotency key "<saga id>:<step>:<phase>" as
    # their causation id.
    causation = str(event.metadata.get("causation_id", ""))
    head, _, rest = causation.partition(":")
    try:
        saga_id = UUID(head)
    except ValueError:
        return None
    step = rest.replace(":", " ")
    label = f"saga ({step})" if step else "saga"
    return AdminLink(label, reverse("admin:sagas_saga_change", args=[saga_id]))


register_event_linker(_saga_of_event)
register_correlation_view("sagas", "admin:sagas_saga_changelist")


# --- the timeline shown on a saga's page ---------------------------------------------------


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


@dataclass(frozen=True)
class StepRow:
    position: int
    name: str
    status: str
    compensable: bool
    action_attempts: int
    action_started_at: datetime | None
    action_finished_at: datetime | None
    action_duration: str
    compensation_attempts: int
    compensation_started_at: datetime | None
    compensation_finished_at: datetime | None
    compensation_duration: str
    last_error: str
    current: bool


@dataclass(frozen=True)
class AttemptRow:
    at: datetime
    step: str
    phase: str
    attempt: int
    status: str
    duration: str
    error: str
    worker: str
    #: The attempt's start and end drawn to scale within the saga's span (``attempt_spans``).
    span: SafeString


@dataclass(frozen=True)
class OperatorRow:
    at: datetime
    action: str
    actor: str
    step: str
    reason: str


def attempt_spans(detail: SagaDetail) -> list[SafeString]:
    """Draw each attempt of the log as a bar placed and sized by its time in the saga's span.

    The span runs from the saga's creation to the last moment the log or the saga knows of
    (an attempt's end, the saga's finish). An attempt without a start (taken over from a lost
    worker) is drawn at the moment its outcome was recorded.
    """
    saga = detail.saga
    ends = [e.finished_at or e.at for e in detail.log]
    if saga.finished_at is not None:
        ends.append(saga.finished_at)
    first = min([saga.created_at, *(e.started_at or e.at for e in detail.log)])
    whole = (max([first, *ends]) - first).total_seconds()
    spans = []
    for e in detail.log:
        start, end = e.started_at or e.at, e.finished_at or e.at
        left = (start - first).total_seconds() / whole if whole else 0.0
        right = (end - first).total_seconds() / whole if whole else 1.0
        label = (
            f"{e.step} {e.phase} #{e.attempt} {e.status}: "
            f"+{(start - first).total_seconds():.3f} s to +{(end - first).total_seconds():.3f} s"
        )
        spans.append(span_bar(left, right, label=label, css_class=e.status))
    return spans


#: Attempt-log rows per page of a saga's admin page.
LOG_PER_PAGE = 50

_ACTION_LABELS = {
    OperatorActionKind.RETRY.value: "retry",
    OperatorActionKind.SKIP_COMPENSATION.value: "skip compensation",
    OperatorActionKind.SKIP_STEP.value: "skip step",
}


def saga_timeline(detail: SagaDetail, *, log_page: str | int | None = 1) -> dict[str, Any]:
    """Shape a saga's steps, attempt log and operator history for its admin page.

    The log is shown ``LOG_PER_PAGE`` rows at a time (page ``log_page``; a page out of range
    or not a number shows the nearest one). Its bars are drawn to the scale of the whole
    saga, so they line up from one page to the next.
    """
    resting_failed = detail.saga.status == SagaStatus.COMPENSATION_FAILED
    steps = [
        StepRow(
            position=s.position,
            name=s.name,
            status=s.status,
            compensable=s.compensable,
            action_attempts=s.action_attempts,
            action_started_at=s.action_started_at,
            action_finished_at=s.action_finished_at,
            action_duration=_duration(s.action_started_at, s.action_finished_at),
            compensation_attempts=s.compensation_attempts,
            compensation_started_at=s.compensation_started_at,
            compensation_finished_at=s.compensation_finished_at,
            compensation_duration=_duration(s.compensation_started_at, s.compensation_finished_at),
            last_error=s.last_error,
            current=resting_failed and s.name == detail.current_step,
        )
        for s in detail.steps
    ]
    rows = [
        AttemptRow(
            at=e.at,
            step=e.step,
            phase=e.phase,
            attempt=e.attempt,
            status=e.status,
            duration=_duration(e.started_at, e.finished_at),
            error=e.error,
            worker=e.worker,
            span=span,
        )
        for e, span in zip(detail.log, attempt_spans(detail), strict=True)
    ]
    page = Paginator(rows, LOG_PER_PAGE).get_page(log_page)
    names = actor_names(a.actor for a in detail.operator_actions)
    history = [
        OperatorRow(
            at=a.at,
            action=_ACTION_LABELS.get(a.action, a.action),
            actor=names.get(a.actor, a.actor),
            step=a.step,
            reason=a.reason,
        )
        for a in detail.operator_actions
    ]
    return {
        "steps": steps,
        "log": list(page.object_list),
        "log_page": page,
        "operator_history": history,
    }


# --- operator actions: retry and skip (described in sagas.operations) ----------------------


class SkipReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=SKIP.reason_help,
    )

    def __init__(self, *args: Any, action: OperatorAction = SKIP, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = action
        self.fields["reason"].help_text = action.reason_help

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data["reason"]).strip()
        if not reason:
            raise forms.ValidationError(self.action.reason_required)
        return reason


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


def _with_failing_error(sagas: QuerySet[Any]) -> QuerySet[Any]:
    # The waiting step's last error, from its step row, and whether the saga's deadline
    # passed by the database's clock (which wrote it), in the same query.
    error = SagaStep.objects.filter(saga=OuterRef("pk"), name=OuterRef("current_step"))
    return sagas.annotate(
        failing_error_text=Subquery(error.values("last_error")[:1]),
        past_deadline_now=ExpressionWrapper(Q(finish_by__lt=Now()), output_field=BooleanField()),
    )


def attention_of(saga: Saga) -> Attention | None:
    """Say why ``saga`` needs an operator (``sagas.engine.attention``), or None.

    ``saga`` comes from :func:`_with_failing_error` (it knows whether the deadline passed).
    """
    try:
        definition = get_definition(saga.saga_type, saga.definition_version)
        state = saga_state(saga, definition)
    except (UnknownSagaType, KeyError):
        return None
    return attention(
        definition,
        state,
        claimed=saga.claim_token is not None,
        past_deadline=bool(getattr(saga, "past_deadline_now", False)),
    )


def _waits_for(saga: Saga, action: OperatorAction) -> bool:
    """Tell whether ``action`` applies to ``saga`` (others are refused by its service)."""
    if action.kind is OperatorActionKind.SKIP_STEP:
        return attention_of(saga) is not None
    return saga.status == SagaStatus.COMPENSATION_FAILED


class OperatorActionsAdmin(RefuseUnavailableActions, ReadOnlyAdmin):
    """Offer retry and skip on a list of sagas, behind a confirmation page (and a reason)."""

    actions: tuple[str, ...] = (RETRY.admin_action, SKIP.admin_action)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RETRY.permission)

    def has_skip_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SKIP.permission)

    @admin.action(permissions=["retry"], description="Retry the failed compensation")
    def retry_failed_compensations(
        self, request: HttpRequest, queryset: QuerySet[Saga]
    ) -> HttpResponse | None:
        return self._confirm_or_run(request, list(_with_failing_error(queryset)), RETRY)

    @admin.action(permissions=["skip"], description="Skip the failed compensation (with a reason)")
    def skip_failed_compensations(
        self, request: HttpRequest, queryset: QuerySet[Saga]
    ) -> HttpResponse | None:
        return self._confirm_or_run(request, list(_with_failing_error(queryset)), SKIP)

    @admin.action(
        permissions=["skip"], description="Skip the step it waits at by hand (with a reason)"
    )
    def skip_steps_needing_attention(
        self, request: HttpRequest, queryset: QuerySet[Saga]
    ) -> HttpResponse | None:
        return self._confirm_or_run(request, list(_with_failing_error(queryset)), SKIP_STEP)

    def _confirm_or_run(
        self,
        request: HttpRequest,
        sagas: list[Saga],
        action: OperatorAction,
        *,
        single: bool = False,
    ) -> HttpResponse | None:
        """Show the confirmation page; once confirmed, run the service once per saga."""
        yes = confirmed(request)
        form = SkipReasonForm(request.POST if yes else None, action=action)
        if yes and (not action.needs_reason or form.is_valid()):
            reason = form.cleaned_data["reason"] if action.needs_reason else ""
            self._run(request, sagas, action, reason)
            return None
        return confirmation_page(
            self,
            request,
            "admin/sagas/saga/operator_action_confirmation.html",
            title=action.single_title if single else action.title,
            single=single,
            back_url=reverse("admin:sagas_saga_change", args=[sagas[0].pk])
            if single
            else request.get_full_path(),
            action=action,
            sagas=sagas,
            waiting=[s for s in sagas if _waits_for(s, action)],
            not_waiting=[s for s in sagas if not _waits_for(s, action)],
            form=form if action.needs_reason else None,
        )

    def _run(
        self, request: HttpRequest, sagas: list[Saga], action: OperatorAction, reason: str
    ) -> None:
        actor = _actor(request)
        for saga in sagas:
            try:
                action.run(saga_id=saga.pk, actor=actor, reason=reason)
            except (SagaStateConflict, SagaNotFound, ReasonRequired) as exc:
                self.message_user(request, f"Saga {saga.pk}: not done: {exc}.", messages.ERROR)
            else:
                done = action.done.format(step=saga.current_step, saga_id=saga.pk)
                self.message_user(request, f"Saga {saga.pk} {done}.", messages.SUCCESS)

    @admin.display(description="subject", ordering="subject")
    def subject_link(self, obj: Saga) -> str:
        link = subject_link(obj.subject)
        if link is None:
            return obj.subject
        return format_html('<a href="{}">{}</a>', link.url, link.label)


class CorrelationIdFilter(GivenValueFilter):
    """Keep the sagas of one correlation id (reached from an event's correlation links)."""

    title = "correlation id"
    parameter_name = "correlation_id"

    def keep(self, queryset: QuerySet[Any], value: str) -> QuerySet[Any]:
        return queryset.filter(correlation_id=value)


class SagaActorFilter(GivenValueFilter):
    """Keep the sagas one actor started (a correlation link's scope: eventstore.admin)."""

    title = "actor"
    parameter_name = ACTOR_PARAM

    def keep(self, queryset: QuerySet[Any], value: str) -> QuerySet[Any]:
        return queryset.filter(actor=value)


class SagaTypeFilter(admin.SimpleListFilter):
    """Offer the configured saga types (from settings, not a scan of the sagas table)."""

    title = "saga type"
    parameter_name = "saga_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in type_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(saga_type=value) if value else queryset


@admin.register(Saga)
class SagaAdmin(OperatorActionsAdmin):
    actions = (RETRY.admin_action, SKIP.admin_action, SKIP_STEP.admin_action)
    list_display = (
        "id",
        "saga_type",
        "status",
        "current_step",
        "subject_link",
        "correlation_id",
        "created_at",
        "updated_at",
    )
    list_filter = ("status", SagaTypeFilter, CorrelationIdFilter, SagaActorFilter)
    search_fields = ("subject",)  # searched in get_search_results, by exact value
    search_help_text = "An exact saga id, subject (order:<id>) or correlation id."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_per_page = 100
    change_form_template = "admin/sagas/saga/change_form.html"
    change_list_template = "admin/sagas/saga/change_list.html"
    readonly_fields = (
        "id",
        "saga_type",
        "definition_version",
        "status",
        "subject_link",
        "exclusive",
        "correlation_links",
        "actor",
        "context_pretty",
        "current_step",
        "current_phase",
        "attempt",
        "failure_step",
        "failure_code",
        "failure_message",
        "stop_code",
        "stop_actor",
        "stop_requested_at",
        "finish_by",
        "overdue_reported_at",
        "due_at",
        "dispatched_at",
        "attempt_lease_until",
        "claim_worker",
        "created_at",
        "updated_at",
        "finished_at",
    )
    fields = readonly_fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Saga], search_term: str
    ) -> tuple[QuerySet[Saga], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Exact matches on indexed columns (Django's "=field" is case-insensitive: a scan).
        match = Q(subject=term) | Q(correlation_id=term)
        with contextlib.suppress(ValueError):
            match |= Q(id=UUID(term))
        return queryset.filter(match), False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            # The queue's first address, kept for links and bookmarks: the queue's own page.
            path(
                "failed-compensations/",
                wrap(self.failed_compensations_view),
                name="sagas_saga_failed_compensations",
            ),
            path(
                "needs-attention/",
                wrap(self.needs_attention_view),
                name="sagas_saga_needs_attention",
            ),
            path("<uuid:saga_id>/retry/", wrap(self.retry_view), name="sagas_saga_retry"),
            path("<uuid:saga_id>/skip/", wrap(self.skip_view), name="sagas_saga_skip"),
            path(
                "<uuid:saga_id>/skip-step/", wrap(self.skip_step_view), name="sagas_saga_skip_step"
            ),
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "failed_queue_url": reverse("admin:sagas_saga_failed_compensations"),
            "attention_queue_url": reverse("admin:sagas_saga_needs_attention"),
        }
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def failed_compensations_view(self, request: HttpRequest) -> HttpResponse:
        """Show the failed-compensation queue (:class:`FailedCompensationAdmin`)."""
        queue = self.admin_site.get_model_admin(FailedCompensation)
        return queue.changelist_view(request)

    def needs_attention_view(self, request: HttpRequest) -> HttpResponse:
        """Show the "needs attention" queue (:class:`NeedsAttentionAdmin`)."""
        queue = self.admin_site.get_model_admin(NeedsAttention)
        return queue.changelist_view(request)

    @admin.display(description="context")
    def context_pretty(self, obj: Saga) -> str:
        return pretty_json(obj.context)

    # ``lease_until``, labelled so that nobody takes it for the saga's deadline ("finish by").
    @admin.display(description="attempt lease until")
    def attempt_lease_until(self, obj: Saga) -> datetime | None:
        return obj.lease_until

    @admin.display(description="correlation id")
    def correlation_links(self, obj: Saga) -> str:
        if not obj.correlation_id:
            return ""
        query = correlation_query(obj.correlation_id, obj.actor)
        return format_html(
            '{} (<a href="{}?{}">events</a> · <a href="{}?{}">sagas</a> sharing it)',
            obj.correlation_id,
            reverse("admin:eventstore_storedevent_changelist"),
            query,
            reverse("admin:sagas_saga_changelist"),
            query,
        )

    # --- one saga's page ---

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        # One snapshot for the timeline and the saga's own fields: a step finishing between
        # the two reads would otherwise show a saga that contradicts its timeline.
        with read_snapshot():
            try:
                detail = saga_detail(saga_id=UUID(object_id))
            except (ValueError, SagaNotFound):
                detail = None  # the admin's own "does not exist" handling takes over
            if detail is not None:
                saga_id = detail.saga.pk
                waiting = detail.saga.status == SagaStatus.COMPENSATION_FAILED
                context.update(saga_timeline(detail, log_page=request.GET.get("log_page")))
                context["failure"] = detail.failure
                context["compensation_failed"] = waiting
                if waiting and self.has_retry_permission(request):
                    context["retry_url"] = reverse("admin:sagas_saga_retry", args=[saga_id])
                if waiting and self.has_skip_permission(request):
                    context["skip_url"] = reverse("admin:sagas_saga_skip", args=[saga_id])
                facts = _with_failing_error(Saga.objects.filter(pk=saga_id)).first()
                why = attention_of(facts) if facts is not None else None
                if why is not None and not waiting:
                    context["attention"] = why.value
                    if self.has_skip_permission(request):
                        context["skip_step_url"] = reverse(
                            "admin:sagas_saga_skip_step", args=[saga_id]
                        )
            return super().change_view(request, object_id, form_url, context)

    def retry_view(self, request: HttpRequest, saga_id: UUID) -> HttpResponse:
        """Confirm, then retry one saga's failed compensation."""
        return self._single(request, saga_id, RETRY)

    def skip_view(self, request: HttpRequest, saga_id: UUID) -> HttpResponse:
        """Ask for a reason, then skip one saga's failed compensation."""
        return self._single(request, saga_id, SKIP)

    def skip_step_view(self, request: HttpRequest, saga_id: UUID) -> HttpResponse:
        """Ask for a reason, then skip by hand the step a saga needing attention waits at."""
        return self._single(request, saga_id, SKIP_STEP)

    def _single(self, request: HttpRequest, saga_id: UUID, action: OperatorAction) -> HttpResponse:
        if not (self.has_view_permission(request) and request.user.has_perm(action.permission)):
            raise PermissionDenied
        saga = _with_failing_error(Saga.objects.filter(pk=saga_id)).first()
        if saga is None:
            raise Http404("No saga with this id.")
        back = reverse("admin:sagas_saga_change", args=[saga_id])
        response = self._confirm_or_run(request, [saga], action, single=True)
        return response or HttpResponseRedirect(back)


class SagaPageChangeList(ChangeList):
    """Link each row to the saga's own page (the queue has none of its own)."""

    def url_for_result(self, result: Model) -> str:
        return reverse("admin:sagas_saga_change", args=[quote(result.pk)])


@admin.register(FailedCompensation)
class FailedCompensationAdmin(OperatorActionsAdmin):
    """List the sagas waiting for an operator, with the failing step and its error."""

    list_display = (
        "id",
        "saga_type",
        "failing_step",
        "failing_error",
        "failure_reason",
        "subject_link",
        "updated_at",
    )
    list_filter = (SagaTypeFilter,)
    ordering = ("-created_at", "-id")
    list_per_page = 100

    # A view of sagas: whoever may view sagas may view it (it has no permissions of its own).
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("sagas.view_saga") or request.user.has_perm(
            "sagas.change_saga"
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[FailedCompensation]:
        return _with_failing_error(super().get_queryset(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SagaPageChangeList

    @admin.display(description="failing step")
    def failing_step(self, obj: Saga) -> str:
        return f"{obj.current_step} (compensation)"

    @admin.display(description="error")
    def failing_error(self, obj: Saga) -> str:
        return getattr(obj, "failing_error_text", "") or ""

    @admin.display(description="compensating because")
    def failure_reason(self, obj: Saga) -> str:
        if not obj.failure_code:
            return ""
        return f"{obj.failure_step}: {obj.failure_code}"


@admin.register(NeedsAttention)
class NeedsAttentionAdmin(OperatorActionsAdmin):
    """List the sagas an operator has to move on, with why and where each waits.

    Past its deadline, retrying a step forward past its point of no return, or waiting in
    COMPENSATION_FAILED (``sagas.models.needs_attention_condition``). *Skip step* resolves
    any of them by hand; *retry* applies to failed compensations.
    """

    actions = (RETRY.admin_action, SKIP_STEP.admin_action)
    list_display = (
        "id",
        "saga_type",
        "why",
        "waiting_at",
        "failing_error",
        "deadline_display",
        "subject_link",
        "updated_at",
    )
    list_filter = (SagaTypeFilter,)
    # The longest overdue first.
    ordering = ("finish_by", "id")
    list_per_page = 100

    # A view of sagas: whoever may view sagas may view it (it has no permissions of its own).
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("sagas.view_saga") or request.user.has_perm(
            "sagas.change_saga"
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[NeedsAttention]:
        return _with_failing_error(super().get_queryset(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SagaPageChangeList

    @admin.display(description="why")
    def why(self, obj: Saga) -> str:
        found = attention_of(obj)
        return found.value if found is not None else ""

    @admin.display(description="waiting at")
    def waiting_at(self, obj: Saga) -> str:
        phase = "compensation" if obj.current_phase == Phase.COMPENSATION else "action"
        return f"{obj.current_step} ({phase}, {obj.status})"

    @admin.display(description="last error")
    def failing_error(self, obj: Saga) -> str:
        return getattr(obj, "failing_error_text", "") or ""

    @admin.display(description="deadline", ordering="finish_by")
    def deadline_display(self, obj: Saga) -> datetime:
        return obj.finish_by


# --- the fault plan ------------------------------------------------------------------------


class FaultRuleForm(forms.ModelForm):
    class Meta:
        model = FaultRule
        fields = ("saga_type", "step", "phase", "mode", "remaining")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        saga_type, step = data.get("saga_type"), data.get("step")
        if saga_type and step:
            try:
                find_step(saga_type, step)
            except UnknownSagaType as exc:
                raise forms.ValidationError({"saga_type": str(exc)}) from exc
            except KeyError as exc:
                raise forms.ValidationError({"step": f"{saga_type} has no step {step!r}"}) from exc
        return data


@admin.register(FaultRule)
class FaultRuleAdmin(RefuseUnavailableActions):
    """Edit the fault plan; invisible and refused while fault injection is off."""

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

    # Asked on every request (not once at import), so the setting alone decides.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return settings.FAULT_INJECTION_ENABLED and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return settings.FAULT_INJECTION_ENABLED and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return settings.FAULT_INJECTION_ENABLED and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return settings.FAULT_INJECTION_ENABLED and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return settings.FAULT_INJECTION_ENABLED and super().has_delete_permission(request, obj)
