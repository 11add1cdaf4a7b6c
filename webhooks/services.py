"""Writes on webhook endpoints: register, change, remove, re-enable. One transaction each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from webhooks.catalogue import event_type_names
from webhooks.models import WebhookEndpoint
from webhooks.signing_secrets import secret_encrypt, secret_generate
from webhooks.targets import TargetRefused, target_check


class EndpointInvalid(Exception):
    """The endpoint's fields are refused; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check(url: str | None, event_types: Sequence[str] | None) -> None:
    if url is not None:
        try:
            target_check(url)
        except TargetRefused as exc:
            raise EndpointInvalid("url", str(exc)) from None
    if event_types is not None:
        known = event_type_names()
        unknown = [t for t in event_types if t not in known]
        if unknown or not event_types:
            raise EndpointInvalid(
                "event_types", f"choose one or more of {', '.join(known)} (unknown: {unknown})"
            )


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


def endpoint_create(
    *, url: str, event_types: Sequence[str], description: str = "", now: datetime | None = None
) -> CreatedEndpoint:
    """Register an endpoint; return it with its secret (shown this once)."""
    _check(url, event_types)
    now = now or timezone.now()
    secret = secret_generate()
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.create(
            url=url,
            event_types=list(dict.fromkeys(event_types)),
            description=description,
            secret_encrypted=secret_encrypt(secret),
            active_since=now,
            created_at=now,
        )
    return CreatedEndpoint(endpoint, secret)


def endpoint_update(
    *,
    endpoint_id: int,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    now: datetime | None = None,
) -> WebhookEndpoint:
    """Change an endpoint; turning it on (again) or changing its types starts a new period."""
    _check(url, event_types)
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.select_for_update().get(id=endpoint_id)
        if url is not None:
            endpoint.url = url
        if description is not None:
            endpoint.description = description
        if event_types is not None:
            types = list(dict.fromkeys(event_types))
            if set(types) != set(endpoint.event_types):
                endpoint.active_since = now
            endpoint.event_types = types
        if is_active is not None and is_active != endpoint.is_active:
            endpoint.is_active = is_active
            if is_active:
                endpoint.active_since = now
                endpoint.consecutive_failures = 0
                endpoint.disabled_reason = ""
            else:
                endpoint.disabled_reason = "turned off by staff"
        endpoint.save()
    return endpoint


def endpoint_reenable(*, endpoint_id: int, now: datetime | None = None) -> WebhookEndpoint:
    """Turn a disabled endpoint back on: its waiting deliveries are sent again."""
    return endpoint_update(endpoint_id=endpoint_id, is_active=True, now=now)


def endpoint_delete(*, endpoint_id: int) -> None:
    with transaction.atomic(durable=True):
        deleted, _ = WebhookEndpoint.objects.filter(id=endpoint_id).delete()
    if not deleted:
        raise WebhookEndpoint.DoesNotExist(endpoint_id)
