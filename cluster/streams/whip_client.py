"""The client side of WHIP/WHEP: trade an SDP offer for an answer over HTTP, end it with DELETE.

Used by ``tierstream publish``/``play``, the tests and benchmarks, and
by nodes pulling from each other. It follows redirects (a node may send a
client to the node it should use) and resolves a relative ``Location`` against
the endpoint, as RFC 9725 asks.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Mapping
from urllib.parse import urljoin

import httpx

from cluster.errors import ClusterError


class SignallingFailed(ClusterError):
    """The WHIP/WHEP endpoint refused the offer; carries its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


Token = str | Callable[[], str]
"""A bearer token, or what signs a fresh one for each request (short-lived cluster tokens)."""


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's default certificate verification, built once per process.

    httpx builds it for every client otherwise, loading the whole CA bundle:
    about 0.1 s of CPU on the event loop, several times that on a busy machine.
    A node makes a client for every pull attempt, and retries every 0.25 s while
    its upstream is unreachable; those stalls of its event loop held up the
    keepalives it owes its own downstreams, which took the silence for its death
    and took its role over (the partition tests caught it).
    """
    return httpx.create_ssl_context()


class WhipClient:
    """One WHIP or WHEP session against ``endpoint``.

    ``timeout``: httpx's, per phase (connect, read, write, pool); nodes pulling
    from each other pass short explicit ones, so an upstream that does not
    answer in time is a lost upstream, not a wait. ``verify``: httpx's, the
    context a node verifies the node it pulls from with (and presents its own
    certificate through); ``True`` means httpx's default, built once
    (``default_tls()``).
    """

    def __init__(
        self,
        endpoint: str,
        token: Token | None = None,
        timeout: httpx.Timeout | float = 10.0,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.endpoint = endpoint
        self._token = token
        self._http = httpx.AsyncClient(
            auth=self._authorize,
            timeout=timeout,
            follow_redirects=True,
            max_redirects=3,
            headers=dict(headers or {}),
            verify=default_tls() if verify is True else verify,
        )
        self.location: str | None = None
        self.redirects: list[str] = []
        """The URLs the last POST was redirected to, in order (307s from nodes)."""

    def _authorize(self, request: httpx.Request) -> httpx.Request:
        token = self._token() if callable(self._token) else self._token
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        return request

    async def exchange(self, offer_sdp: str) -> str:
        """POST the offer; return the answer and remember the session's location."""
        reply = await self._http.post(
            self.endpoint, content=offer_sdp, headers={"Content-Type": "application/sdp"}
        )
        self.redirects = [str(hop.headers.get("location", "")) for hop in reply.history]
        if reply.status_code != 201:
            raise SignallingFailed(reply.status_code, _message(reply))
        location = reply.headers.get("location")
        if not location:
            raise SignallingFailed(reply.status_code, "the reply has no Location header")
        self.location = urljoin(str(reply.url), location)
        return reply.text

    async def close(self) -> None:
        """DELETE the session (if one was made) and close the HTTP client; safe to repeat."""
        location, self.location = self.location, None
        try:
            if location is not None:
                await self._http.delete(location)
        except httpx.TransportError:
            pass  # the node is gone, and the session with it
        finally:
            await self._http.aclose()


def _message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or reply.text or reply.reason_phrase)
