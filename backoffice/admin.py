"""The admin toolkit every app's staff pages share; it registers no model of its own.

- :class:`ReadOnlyAdmin` shows rows and never adds, changes or deletes them;
- :class:`RefuseUnavailableActions` answers 403 to a forged post of an action;
- :func:`confirmation_page` and :func:`confirmed` are the one way an admin action asks
  "are you sure?" before it runs;
- the subject link registry (:func:`register_subject_admin`, :func:`subject_link`) lets an app
  say which admin page a subject such as ``"order:<id>"`` opens, so the generic apps can link
  to pages they know nothing about;
- :class:`AdminLink`, :func:`render_links`, :func:`pretty_json` and :func:`actor_names` are the
  small pieces of every page.

This module imports no app of the project: the event store and the saga engine use it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from infrastructure.actors import usernames_of


@dataclass(frozen=True)
class AdminLink:
    """Name one admin page something leads to."""

    label: str
    url: str


def render_links(links: list[AdminLink], sep: str = " · ") -> SafeString:
    """Render links as anchors joined by ``sep``."""
    return format_html_join(sep, '<a href="{}">{}</a>', ((link.url, link.label) for link in links))


def pretty_json(value: Any) -> str:
    """Render a JSON value indented, for a read-only field."""
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def actor_names(actors: Iterable[str]) -> dict[str, str]:
    """Map "user:<id>" actors to their usernames, in one query (see ``infrastructure.actors``)."""
    return usernames_of(actors)


# --- links: a subject ("<kind>:<id>") to its admin page, registered by the subject's app ----

_subject_admins: dict[str, str] = {}


def register_subject_admin(kind: str, url_name: str) -> None:
    """Link subjects ``"<kind>:<id>"`` to the admin page ``url_name`` of ``id``."""
    _subject_admins[kind] = url_name


def subject_link(subject: str) -> AdminLink | None:
    """Return the admin page of a subject, when its app registered one."""
    kind, _, subject_id = subject.partition(":")
    url_name = _subject_admins.get(kind)
    if not url_name or not subject_id:
        return None
    try:
        return AdminLink(subject, reverse(url_name, args=[subject_id]))
    except NoReverseMatch:
        return None


# --- model admins ---------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Show rows; never add, change or delete them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RefuseUnavailableActions(admin.ModelAdmin):
    """Answer 403 to a posted admin action the user may not run.

    Django leaves such an action out of the form, and a forged post of it only meets "no
    action selected" (or, with no action at all available, the list again): a forged post is
    refused outright instead.
    """

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        action = request.POST.get("action") if request.method == "POST" else None
        if action and action not in self.get_actions(request):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)


# --- confirmed actions ----------------------------------------------------------------------


def confirmed(request: HttpRequest) -> bool:
    """Tell whether the request is the confirmation page's "yes" (its ``post=yes`` field)."""
    return request.method == "POST" and request.POST.get("post") == "yes"


def confirmation_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    template: str,
    *,
    title: str,
    back_url: str,
    single: bool,
    **context: Any,
) -> TemplateResponse:
    """Render the page that asks before an action runs; ``context`` names what it acts on.

    The template posts ``post=yes`` back (:func:`confirmed`), and for a bulk action (not
    ``single``) the selected rows and the action's name, the way Django's own delete
    confirmation does.
    """
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "opts": model_admin.opts,
            "single": single,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "back_url": back_url,
            **context,
        },
    )
