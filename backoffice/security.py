"""Admin login throttling: repeated failures lock a username out for the client who failed.

Failures are counted in the shared cache (Redis), so every web process sees the same counts,
under two keys:

- per username *and* client address: after ``ADMIN_LOGIN_MAX_FAILURES`` failures within
  ``ADMIN_LOGIN_LOCKOUT_SECONDS`` the form refuses that username from that address, even with
  the right password, until the window that began with the first failure has passed;
- per client address across usernames: after ``ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS``
  failures the address is refused for every username (password spraying).

Locked out, the page answers 429 with ``Retry-After``. A successful login clears the
username-and-address count (not the address's: one known password must not reset a spray).

The client address is the real client's, read through the trusted reverse proxies
(``TRUSTED_PROXIES``, infrastructure/client_address.py), with an IPv6 client counted by its /64.
There is deliberately no count per username alone: anyone on the internet can drive such a
count, so it would be a switch for locking staff out (behind a proxy, with one address for
everybody, the per-address key became exactly that). Guessing one username from many
addresses is bounded by each address's budget and the password validators instead.

When the cache cannot be reached the login is let through (and the failure logged): refusing
every login because Redis restarted would lock the operators out at the worst moment.
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

from infrastructure.client_address import rate_limit_key

logger = logging.getLogger("backoffice.security")

_LOCKED_ATTRIBUTE = "_admin_login_locked_out"


def failure_key(username: str, address: str) -> str:
    # Hashed: usernames are user input, and cache keys must stay short and printable.
    digest = hashlib.sha256(f"{username.strip().lower()}\0{address}".encode()).hexdigest()
    return f"admin-login-failures:{digest}"


def address_failure_key(address: str) -> str:
    digest = hashlib.sha256(address.encode()).hexdigest()
    return f"admin-login-failures-from:{digest}"


def is_locked_out(key: str, address_key: str) -> bool:
    """Tell whether this username from this address, or this address at all, failed too often."""
    try:
        counts = cache.get_many([key, address_key])
        return (
            int(counts.get(key, 0)) >= settings.ADMIN_LOGIN_MAX_FAILURES
            or int(counts.get(address_key, 0)) >= settings.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS
        )
    except Exception:
        logger.warning("login throttle cache unavailable; login allowed", exc_info=True)
        return False


def record_failure(*keys: str) -> None:
    """Count one failed login under each key; each window starts with its first failure."""
    for key in keys:
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
    """Django's admin login form, refusing a username locked out for this client."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": (
            "Too many failed logins for this account from your address. "
            "Try again in %(minutes)d minutes."
        ),
    }

    def clean(self) -> dict[str, Any]:
        address = rate_limit_key(self.request)
        key = failure_key(self.cleaned_data.get("username") or "", address)
        address_key = address_failure_key(address)
        if is_locked_out(key, address_key):
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
            record_failure(key, address_key)
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
