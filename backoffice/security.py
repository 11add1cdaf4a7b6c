"""Admin login throttling: repeated failures for one username from one address lock it out.

Failures are counted in the shared cache (Redis) per username and client address, so every
web process sees the same count. After ``ADMIN_LOGIN_MAX_FAILURES`` failures within
``ADMIN_LOGIN_LOCKOUT_SECONDS`` the login form refuses that username from that address, even
with the right password, until the window that began with the first failure has passed; the
page then answers 429 with ``Retry-After``. A successful login clears the count.

Counting by username *and* address means an attacker cannot lock a staff member out from
everywhere by failing on purpose from elsewhere. When the cache cannot be reached the login
is let through (and the failure logged): refusing every login because Redis restarted would
lock the operators out at the worst moment.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("backoffice.security")

_LOCKED_ATTRIBUTE = "_admin_login_locked_out"


def client_address(request: HttpRequest | None) -> str:
    """Return the address the request came from (the proxy's, when behind one)."""
    if request is None:
        return "unknown"
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def failure_key(username: str, address: str) -> str:
    # Hashed: usernames are user input, and cache keys must stay short and printable.
    digest = hashlib.sha256(f"{username.strip().lower()}\0{address}".encode()).hexdigest()
    return f"admin-login-failures:{digest}"


def is_locked_out(key: str) -> bool:
    """Tell whether the username has failed too often from this address in the window."""
    try:
        failures = cache.get(key, 0)
    except Exception:
        logger.warning("login throttle cache unavailable; login allowed", exc_info=True)
        return False
    return int(failures) >= settings.ADMIN_LOGIN_MAX_FAILURES


def record_failure(key: str) -> None:
    """Count one failed login; the window starts with the first failure."""
    try:
        cache.add(key, 0, timeout=settings.ADMIN_LOGIN_LOCKOUT_SECONDS)
        cache.incr(key)
    except ValueError:
        # The key expired between add and incr: this failure starts a new window.
        cache.set(key, 1, timeout=settings.ADMIN_LOGIN_LOCKOUT_SECONDS)
    except Exception:
        logger.warning("login throttle cache unavailable; failure not counted", exc_info=True)


def clear_failures(key: str) -> None:
    try:
        cache.delete(key)
    except Exception:
        logger.warning("login throttle cache unavailable; count not cleared", exc_info=True)


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """Django's admin login form, refusing a username locked out from this address."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": (
            "Too many failed logins for this account from your address. "
            "Try again in %(minutes)d minutes."
        ),
    }

    def clean(self) -> dict[str, Any]:
        key = failure_key(self.cleaned_data.get("username") or "", client_address(self.request))
        if is_locked_out(key):
            if self.request is not None:
                setattr(self.request, _LOCKED_ATTRIBUTE, True)
            raise ValidationError(
                self.error_messages["locked_out"],
                code="locked_out",
                params={"minutes": max(1, settings.ADMIN_LOGIN_LOCKOUT_SECONDS // 60)},
            )
        try:
            cleaned: dict[str, Any] = super().clean()
        except ValidationError:
            record_failure(key)
            raise
        clear_failures(key)
        return cleaned


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """Serve the admin login page with the throttled form; 429 while locked out."""
    response = admin.site.login(request, extra_context)
    if getattr(request, _LOCKED_ATTRIBUTE, False):
        response.status_code = 429
        response["Retry-After"] = str(settings.ADMIN_LOGIN_LOCKOUT_SECONDS)
    return response


# The admin's own login URL uses the same form, should anything reach it directly.
admin.site.login_form = ThrottledAdminAuthenticationForm
