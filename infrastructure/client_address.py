"""The address a request came from, believing ``X-Forwarded-For`` only from trusted proxies.

Behind the reverse proxy production requires, ``REMOTE_ADDR`` is the proxy's address for every
client, while ``X-Forwarded-For`` is whatever the client wrote plus what each proxy appended.
Only the entries appended by proxies we run can be believed, so the header is read from the
right: starting at ``REMOTE_ADDR``, each hop that is a trusted proxy (``TRUSTED_PROXIES``, a
list of addresses and CIDR networks) vouches for the entry to its left; the first address
that is not a trusted proxy is the client. Without trusted proxies the header is ignored.
This is nginx's ``set_real_ip_from`` with ``real_ip_recursive on``. (python-ipware, the
maintained library for this, matches trusted proxies by position and string prefix rather
than by network, and does not anchor on ``REMOTE_ADDR``.)

The admin login lockout and the API's throttles key on :func:`rate_limit_key`, which groups an
IPv6 client by its /64 network: one host usually holds a whole /64, and counting each of its
addresses apart would give it billions of tries.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"
IPV6_CLIENT_PREFIX = 64


def parse_networks(entries: list[str] | tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """Parse addresses and CIDR networks; raise ValueError naming a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"not an IP address or CIDR network: {entry!r}") from error
    return tuple(networks)


@lru_cache(maxsize=8)
def _trusted(entries: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return parse_networks(entries)


def _parse(value: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the same client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(meta: dict[str, Any]) -> IpAddress | None:
    """Return the client's address from a request's META, or None when it is not an address."""
    remote = _parse(str(meta.get("REMOTE_ADDR") or ""))
    if remote is None:
        return None
    trusted = _trusted(tuple(settings.TRUSTED_PROXIES))
    if not trusted:
        return remote
    address = remote
    hops = str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")
    for hop in reversed(hops):
        if not any(address in network for network in trusted):
            break
        previous = _parse(hop)
        if previous is None:
            # A trusted proxy passed on something that is no address: the last address a
            # trusted hop vouched for is all that is known.
            break
        address = previous
    return address


def client_address(request: Any) -> str:
    """Return the address the request came from, as text (``"unknown"`` when none)."""
    address = client_ip(request.META) if request is not None else None
    return UNKNOWN if address is None else str(address)


def rate_limit_key(request: Any) -> str:
    """Return what rate limits count a client by: its address, or its /64 for IPv6."""
    address = client_ip(request.META) if request is not None else None
    if address is None:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)
