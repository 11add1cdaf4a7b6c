"""The ``{% backoffice_dashboard %}`` tag the admin index shows its dashboard with."""

from __future__ import annotations

from typing import Any

from django import template

from backoffice.dashboard import dashboard

register = template.Library()


@register.inclusion_tag("admin/backoffice/dashboard.html", takes_context=True)
def backoffice_dashboard(context: template.Context) -> dict[str, Any]:
    """Render the dashboard sections the current user may see."""
    request = context["request"]
    return {"dashboard": dashboard(user=request.user)}
