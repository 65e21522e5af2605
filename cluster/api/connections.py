"""HTTP connections that cannot be held open by slow or hostile clients.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) and the
size of a request head (``h11_max_incomplete_event_size``), but not the time a
client takes to send its head or its body: a connection that sends half a
header, or a chunked body that never ends, stays open until the file
descriptors run out. ``guarded_protocol`` is uvicorn's h11 protocol with
three bounds added:

- the request head must be complete ``header_timeout_s`` after the
  connection opened (or after its first byte, for the next request on a
  kept-alive connection): else 408 and close;
- the body must be complete ``body_timeout_s`` after the head: else the
  connection closes and the handler reading it sees a disconnect;
- one client address holds at most ``max_per_address`` connections at once:
  further ones get 503 and are closed at once.

Each is reported once, in one short line, through ``ClientFaults``.

On a TLS listener it also tells the app whether the client presented a
certificate that verified against ``server.tlsCA`` (``client_certified``): uvicorn
gives an app no TLS details, and the internal pull path needs that one.

This
subclasses uvicorn's ``H11Protocol`` and reads its connection state: uvicorn
is pinned exactly in ``pyproject.toml``, and ``tests/api/test_connections.py``
fails if an upgrade moves what is used here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cluster.api.client_faults import ClientFaults

CLIENT_CERTIFIED = "client_certified"
"""Key of ``request.state``: True when the connection's client certificate verified."""

_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds every HTTP connection of a node is held to."""

    header_timeout_s: float
    body_timeout_s: float
    max_per_address: int


def guarded_protocol(limits: ConnectionLimits, faults: ClientFaults) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with ``limits`` applied, for ``uvicorn.Config(http=...)``."""
    open_per_address: Counter[str] = Counter()

    class GuardedProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase = ""
        _address = ""
        _tls = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            tls = transport.get_extra_info("ssl_object")
            # With CERT_OPTIONAL a certificate that does not verify fails the handshake, so one
            # that is here verified. Each request's state is a copy of app_state (uvicorn).
            self._tls = tls is not None
            certified = bool(self._tls and tls.getpeercert())
            self.app_state = {**self.app_state, CLIENT_CERTIFIED: certified}
            self._address = self.client[0] if self.client else "?"
            open_per_address[self._address] += 1
            if open_per_address[self._address] > limits.max_per_address:
                faults.report(
                    self._address,
                    "too many connections",
                    f"more than {limits.max_per_address} connections at once; refused one",
                )
                transport.write(_REFUSED)
                transport.close()
                return
            self._arm("head", limits.header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._release()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self._phase != "body":
                    self._arm("body", limits.body_timeout_s)
            elif state is h11.IDLE:
                if not self._phase:  # the first bytes of the next request's head
                    self._arm("head", limits.header_timeout_s)
            else:
                self._disarm()  # the request is in; the rest is the handler's

        def shutdown(self) -> None:
            """uvicorn's graceful shutdown, but an idle TLS connection is aborted, not closed:
            a TLS close waits for the peer's close_notify, which an idle pooled client (a
            downstream node's) never reads, and would hold the node's exit for the whole
            graceful timeout. Between requests nothing can be cut short."""
            if self._tls and (self.cycle is None or self.cycle.response_complete):
                self.transport.abort()
            else:
                super().shutdown()

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            """A WebSocket leaves this protocol (and its bounds) for its own."""
            self._disarm()
            self._release()
            super().handle_websocket_upgrade(event)

        def _arm(self, phase: str, timeout_s: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(timeout_s, self._timed_out, phase, timeout_s)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._phase = None, ""

        def _release(self) -> None:
            if self._address:
                open_per_address[self._address] -= 1
                if open_per_address[self._address] <= 0:
                    del open_per_address[self._address]
                self._address = ""

        def _timed_out(self, phase: str, timeout_s: float) -> None:
            self._deadline, self._phase = None, ""
            what = "request head" if phase == "head" else "request body"
            faults.report(
                self._address,
                f"slow {what}",
                f"{what} not complete within {timeout_s:g} s; connection closed",
            )
            if phase == "head":
                self.transport.write(_TIMED_OUT)
            self.transport.close()

    return GuardedProtocol
