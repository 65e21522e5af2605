"""Running a node: the control plane and the HTTP server, started and stopped in order.

uvicorn's own signal handling would close the listening socket before the node
could tell the registry it is leaving; here SIGTERM/SIGINT first mark the node
draining (so no new work is sent its way), then stop the HTTP server, then
deregister. A second signal skips the graceful wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from cluster.api.app import build_app
from cluster.api.client_faults import ClientFaults
from cluster.api.connections import ConnectionLimits, guarded_protocol
from cluster.api.websocket import MAX_MESSAGE_BYTES
from cluster.errors import ConfigError
from cluster.node import start_node
from cluster.settings import Settings
from cluster.tls import server_context

logger = logging.getLogger(__name__)

GRACEFUL_HTTP_SHUTDOWN_S = 5
KEEP_ALIVE_S = 5
"""An idle kept-alive connection closes after this (uvicorn's own bound)."""
MAX_HEAD_BYTES = 16 * 1024
"""A request head (request line and headers) larger than this is refused (400)."""


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the node installs its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(settings: Settings) -> socket.socket:
    """Bind the HTTP port before the node joins: a node that cannot listen never registers."""
    host, port = settings.http_host, settings.http_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise ConfigError(
            "http.port", f"cannot listen on {host}:{port}: {error.strerror}"
        ) from None


async def run_node(settings: Settings) -> None:
    listener = _listen(settings)
    faults = ClientFaults()
    try:
        # Before the node joins: a certificate that does not load stops it unregistered.
        tls = server_context(
            settings,
            lambda why: faults.report("(TLS)", "refused TLS", f"refused at the handshake: {why}"),
        )
        node = await start_node(settings)
    except BaseException:
        listener.close()
        raise
    app = build_app(node, faults)
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_per_address=settings.max_connections_per_address,
    )
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits, faults),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_graceful_shutdown=GRACEFUL_HTTP_SHUTDOWN_S,
        ws_max_size=MAX_MESSAGE_BYTES,
        # The peer stays the peer: forwarding headers are read by routing, and only from
        # server.trustedProxies (uvicorn would believe X-Forwarded-For from 127.0.0.1).
        proxy_headers=False,
        ssl_context_factory=None if tls is None else lambda _config, _default: tls,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    async def stop(signame: str) -> None:
        if server.should_exit:
            logger.warning("%s again: stopping now", signame)
            server.force_exit = True
            return
        logger.info("%s received: node %s is leaving the cluster", signame, settings.node_id)
        try:
            await node.drain()
        finally:
            server.should_exit = True

    stopping: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        task = asyncio.create_task(stop(sig.name))
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await server.serve(sockets=[listener])
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await node.close()
