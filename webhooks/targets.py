"""Which URLs a webhook may be sent to: http(s), and not inside the network unless allowed.

Checked when an endpoint is registered or changed (400) and again before every send, since
what a name resolves to can change in between.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(Exception):
    """The URL is not one the back office sends webhooks to."""


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def target_check(url: str, *, allow_private: bool | None = None) -> None:
    """Raise :class:`TargetRefused` unless ``url`` is http(s) to a public address.

    ``allow_private`` defaults to ``settings.WEBHOOK_ALLOW_PRIVATE_TARGETS``.
    """
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE_TARGETS
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if _refused_address(address):
            raise TargetRefused(
                f"the host {host!r} resolves to {address}, a loopback, private or link-local "
                "address (set WEBHOOK_ALLOW_PRIVATE_TARGETS to allow it)"
            )
