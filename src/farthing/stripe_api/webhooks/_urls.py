"""Server-side request forgery guard for webhook URLs.

Live mode: https only. Test mode: http allowed too. Never to loopback, private, link-local
(cloud metadata at 169.254.169.254), shared, multicast, reserved or unspecified addresses — except
loopback in test mode when FARTHING_WEBHOOK_ALLOW_LOOPBACK=1 (the test suite's receivers). Checked
at creation and again at delivery, on the addresses the name resolves to then.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from farthing.stripe_api._params import invalid

__all__ = ["URL_LENGTH_MAX", "check_url", "forbidden_address"]

URL_LENGTH_MAX = 2048
ADDRESSES_MAX = 16
# Ranges the ipaddress flags do not all cover: carrier-grade NAT, IPv4-mapped IPv6.
_EXTRA_FORBIDDEN = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("::ffff:0:0/96"),
    ipaddress.ip_network("64:ff9b::/96"),
)


def forbidden_address(text: str, *, allow_loopback: bool) -> str | None:
    """Why an address may not receive webhooks, or None when it may."""
    address = ipaddress.ip_address(text.split("%", maxsplit=1)[0])
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    for reason, flag in (
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    ):
        if flag:
            return reason
    if any(address in network for network in _EXTRA_FORBIDDEN):
        return "private"
    return None


def _addresses(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos[:ADDRESSES_MAX]]


def check_url(url: str, *, livemode: bool, allow_loopback: bool, must_resolve: bool) -> None:
    """400 ``url_invalid`` unless webhooks may go to ``url``. ``must_resolve``: at delivery a
    name that resolves to nothing is refused; at creation it is accepted and checked later."""
    if len(url) > URL_LENGTH_MAX:
        raise invalid(f"url has at most {URL_LENGTH_MAX} characters.", "url")
    try:
        parts = urlsplit(url)
        _ = parts.port  # A port that is no number (or out of range) is no URL either.
    except ValueError:  # Such as "http://[abc": a bracketed host that is not an IPv6 address.
        parts = urlsplit("")
    allowed = {"https"} if livemode else {"https", "http"}
    if parts.scheme not in allowed or not parts.hostname:
        raise invalid(
            "url must be an absolute https URL" + ("" if livemode else " (or http in test mode)"),
            "url",
        )
    if parts.username or parts.password:
        raise invalid("url must not contain credentials.", "url")
    addresses = _addresses(parts.hostname)
    if not addresses and must_resolve:
        raise invalid("url's host does not resolve.", "url")
    loopback_ok = allow_loopback and not livemode
    for address in addresses:
        reason = forbidden_address(address, allow_loopback=loopback_ok)
        if reason is not None:
            raise invalid(
                f"url resolves to a {reason} address, which cannot receive webhooks.", "url"
            )
