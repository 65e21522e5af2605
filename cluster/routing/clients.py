"""Which address a request comes from: the peer, or what a trusted proxy says it forwarded.

Only a peer inside ``server.trustedProxies`` is believed about who is behind
it. The forwarding chain (``Forwarded`` per RFC 7239 when present, else
``X-Forwarded-For``) is read right to left, skipping trusted proxies; the first
address that is not one is the client (anything left of it could be forged by
the client itself). A malformed or obfuscated hop ends the walk there: the
client is then the last proxy we trust, since nothing it forwarded can be read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from cluster.routing.geoip import IpAddress

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32
"""Longer chains are cut from the left: nobody has 32 proxies of their own."""

_FOR = re.compile(r'(?:^|[;\s])for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def parse_address(text: str) -> IpAddress | None:
    """An address as forwarding headers write it: bare, ``[v6]``, with a port, or quoted."""
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def forwarded_hops(forwarded: Sequence[str], x_forwarded_for: Sequence[str]) -> list[str]:
    """The chain of addresses as written, left (client side) to right (nearest proxy)."""
    if forwarded:
        hops: list[str] = []
        for header in forwarded:
            for element in header.split(","):
                match = _FOR.search(element)
                hops.append(match.group(1) if match else "")
        return hops[-MAX_HOPS:]
    return [hop for header in x_forwarded_for for hop in header.split(",")][-MAX_HOPS:]


def _trusted(address: IpAddress, proxies: Iterable[IpNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(
    peer: str | None,
    forwarded: Sequence[str],
    x_forwarded_for: Sequence[str],
    trusted_proxies: Sequence[IpNetwork],
) -> IpAddress | None:
    """The client's address, or None when even the peer's is unknown (not an IP socket)."""
    current = parse_address(peer) if peer else None
    if current is None or not trusted_proxies:
        return current
    for hop in reversed(forwarded_hops(forwarded, x_forwarded_for)):
        if not _trusted(current, trusted_proxies):
            return current
        address = parse_address(hop)
        if address is None:
            return current
        current = address
    return current
