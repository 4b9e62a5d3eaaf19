"""Server-side request forgery guard for webhook URLs.

Live mode: https only. Test mode: http allowed too. Never to loopback, private, link-local
(cloud metadata at 169.254.169.254), shared, multicast, reserved or unspecified addresses — except
loopback in test mode when FARTHING_WEBHOOK_ALLOW_LOOPBACK=1 (the test suite's receivers). Checked
at creation and again at delivery, on every address the name resolves to then; a delivery then
connects to one of exactly those addresses (`pinned`), for a second look-up by the HTTP client
could answer otherwise (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from farthing.stripe_api._params import invalid

__all__ = ["URL_LENGTH_MAX", "PinnedRequest", "check_url", "forbidden_address", "pinned"]

URL_LENGTH_MAX = 2048
# A name with more addresses is refused: each one is checked, and any may be connected to.
ADDRESSES_MAX = 16
# Ranges the ipaddress flags do not all cover: carrier-grade NAT, IPv6 forms that carry an IPv4
# address (mapped, NAT64, 6to4), site-local IPv6 and the old 6to4 relay anycast.
_EXTRA_FORBIDDEN = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("192.88.99.0/24"),
    ipaddress.ip_network("::ffff:0:0/96"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002::/16"),
    ipaddress.ip_network("fec0::/10"),
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


def _addresses(host: str) -> tuple[str, ...]:
    try:
        return (str(ipaddress.ip_address(host.strip("[]"))),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return ()
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if len(addresses) > ADDRESSES_MAX:
        raise invalid(f"url's host resolves to more than {ADDRESSES_MAX} addresses.", "url")
    return addresses


def check_url(
    url: str, *, livemode: bool, allow_loopback: bool, must_resolve: bool
) -> tuple[str, ...]:
    """The addresses ``url``'s host resolves to now, every one of them allowed; else 400
    ``url_invalid``. ``must_resolve``: at delivery a name that resolves to nothing is refused;
    at creation it is accepted and checked later."""
    if len(url) > URL_LENGTH_MAX:
        raise invalid(f"url has at most {URL_LENGTH_MAX} characters.", "url")
    if not url.isprintable() or any(character.isspace() for character in url):
        # What no HTTP client would send (a control character, a space): refused here, not
        # found at every delivery.
        raise invalid("url must not contain control characters or spaces.", "url")
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
    return addresses


@dataclass(frozen=True, slots=True)
class PinnedRequest:
    """A request to ``url`` that connects to one checked address and no other."""

    url: httpx.URL
    host_header: str
    extensions: dict[str, str]


def pinned(url: str, address: str) -> PinnedRequest:
    """``url`` with its host replaced by ``address``: the client connects there without a look-up
    of its own. The Host header keeps the name, and so does TLS (SNI and the certificate check)."""
    original = httpx.URL(url)
    name = original.raw_host.decode("ascii")  # IDNA-encoded, as TLS wants it.
    assert name
    extensions = {"sni_hostname": name} if original.scheme == "https" else {}
    return PinnedRequest(
        # No zone suffix: link-local addresses, the only ones that need one, are refused.
        url=original.copy_with(host=address.split("%", maxsplit=1)[0]),
        host_header=original.netloc.decode("ascii"),
        extensions=extensions,
    )
