"""The client's address: the peer's, or a trusted proxy's forwarding header read right to left."""

from __future__ import annotations

import ipaddress

import pytest

from cluster.routing.clients import IpNetwork, client_address

PROXIES = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))


def client(
    peer: str | None,
    xff: list[str] | None = None,
    fwd: list[str] | None = None,
    trusted: tuple[IpNetwork, ...] = PROXIES,
) -> str | None:
    found = client_address(peer, fwd or [], xff or [], trusted)
    return str(found) if found else None


@pytest.mark.parametrize(
    ("peer", "xff", "fwd", "expected"),
    [
        ("81.2.69.142", ["216.160.83.56"], None, "81.2.69.142"),
        ("127.0.0.1", ["216.160.83.56"], None, "216.160.83.56"),
        ("127.0.0.1", ["6.6.6.6, 216.160.83.56, 10.0.0.7"], None, "216.160.83.56"),
        ("127.0.0.1", ["6.6.6.6", "216.160.83.56"], None, "216.160.83.56"),
        ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], None, "10.0.0.1"),
        ("127.0.0.1", None, ['for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'], "2001:db8::1"),
        ("127.0.0.1", ["1.1.1.1"], ["for=175.16.199.1"], "175.16.199.1"),
        ("127.0.0.1", ["81.2.69.142:5555"], None, "81.2.69.142"),
        ("127.0.0.1", None, None, "127.0.0.1"),
    ],
    ids=[
        "an untrusted peer's header is ignored",
        "a trusted proxy names the client",
        "right-most untrusted hop wins over what the client wrote",
        "several headers form one chain",
        "all hops trusted: the left-most",
        "Forwarded with quoted IPv6 and a port",
        "Forwarded wins over X-Forwarded-For",
        "an address with a port",
        "a trusted peer without a header is the client",
    ],
)
def test_client_address(
    peer: str, xff: list[str] | None, fwd: list[str] | None, expected: str
) -> None:
    assert client(peer, xff, fwd) == expected


@pytest.mark.parametrize(
    ("xff", "fwd"),
    [
        (["not-an-address"], None),
        (["216.160.83.56, , garbage%%"], None),
        (None, ["for=_hidden"]),
        (None, ["for=unknown"]),
        (None, ["proto=https"]),
        (
            None,
            ['for="[2001:db8::1'],
        ),
        (["1.2.3.4" * 1000], None),
    ],
    ids=[
        "garbage",
        "garbage right of a real hop",
        "obfuscated",
        "unknown",
        "no for=",
        "unterminated bracket",
        "huge",
    ],
)
def test_malformed_headers_stop_at_the_last_trusted_proxy(
    xff: list[str] | None, fwd: list[str] | None
) -> None:
    assert client("127.0.0.1", xff, fwd) == "127.0.0.1"


def test_without_trusted_proxies_only_the_peer_counts() -> None:
    assert client("127.0.0.1", ["216.160.83.56"], trusted=()) == "127.0.0.1"


def test_a_peer_that_is_not_an_ip_has_no_address() -> None:
    assert client("testclient", ["216.160.83.56"]) is None
