"""Where the service may send a request on a user's behalf: public addresses only.

A Web Push endpoint is a URL a user hands us and we later POST to. Without a rule, that is a
request forgery tool aimed at our own network: `https://127.0.0.1:6379/`, the cloud metadata
address `169.254.169.254`, `[::1]`, `10.0.0.1`, or `0x7f000001` (the same loopback in the
notation `inet_aton` accepts). So a URL is refused when its host is, or resolves to, a loopback,
private, link-local, multicast, reserved or otherwise non-global address (IPv4, IPv6, IPv4-mapped
IPv6 and the odd IPv4 notations alike), checked twice: when it is registered (literal addresses)
and when it is called (`PublicOnlyResolver` resolves the name and refuses if any address is not
public, so a name that later resolves inward is refused too). Hosts named in
`EGRESS_ALLOWED_HOSTS` are exempt (the test suite's local push service on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NonPublicAddress(OSError):
    """The host is, or resolves to, an address the service must not call."""


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any notation a resolver would accept: dotted,
    bracketed IPv6, and `inet_aton`'s forms (`0x7f000001`, `127.1`, `0177.0.0.1`, `2130706433`)."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except (OSError, ValueError):
        return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
        if address.teredo is not None:
            return is_public(address.teredo[1])
    return address.is_global and not address.is_multicast


def host_allowed(host: str, port: int | None, allowed: Collection[str]) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    return host in allowed or (port is not None and f"{host}:{port}" in allowed)


def check_public_url(url: str, allowed: Collection[str] = ()) -> None:
    """Raise NonPublicAddress if `url`'s host is a literal non-public address (names are
    checked when they are resolved, by PublicOnlyResolver)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError as exc:
        raise NonPublicAddress(f"bad port in {host!r}") from exc
    if host_allowed(host, port, allowed):
        return
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        raise NonPublicAddress(f"{host} is this machine")
    address = literal_address(host)
    if address is not None and not is_public(address):
        raise NonPublicAddress(f"{host} is not a public address")


class PublicOnlyResolver(AbstractResolver):
    """An aiohttp resolver that refuses a name when any address it resolves to is not public."""

    def __init__(self, allowed: Collection[str] = (), inner: AbstractResolver | None = None):
        self.allowed = frozenset(h.lower() for h in allowed)
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if host_allowed(host, port, self.allowed):
            return results
        for result in results:
            address = literal_address(str(result["host"]))
            if address is None or not is_public(address):
                raise NonPublicAddress(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self.inner.close()


def refused_by_rule(exc: BaseException) -> bool:
    """Whether an aiohttp failure is our refusal (it wraps the resolver's error)."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, NonPublicAddress):
            return True
        seen.add(id(current))
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return False
