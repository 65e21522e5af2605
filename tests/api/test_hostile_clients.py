"""Slow, stalled and vanishing HTTP clients against a real node process.

The node runs with short deadlines (1 s for a request head or body) and a bound
of 40 connections per client address, so every fault shows within seconds.
Each fault costs the node one short log line at most (rate-limited), never a
traceback, and the node keeps serving.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.nodes import NodeProcess

PER_ADDRESS = 40


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    started = NodeProcess(
        workdir,
        "hostile",
        "eu",
        f"sqlite+aiosqlite:///{workdir / 'registry.db'}",
        **{
            "http.headerTimeoutMs": "1000",
            "http.bodyTimeoutMs": "1000",
            "http.maxConnectionsPerAddress": str(PER_ADDRESS),
        },
    )
    started.start()
    yield started
    started.stop()


def connect(node: NodeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    sock.settimeout(5)
    return sock


def closed_within(sock: socket.socket, timeout_s: float) -> tuple[bool, bytes]:
    """Whether the node closed ``sock`` within ``timeout_s``, and what it sent before."""
    sock.settimeout(timeout_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def open_fds(node: NodeProcess) -> int:
    assert node.process is not None
    return psutil.Process(node.process.pid).num_fds()


def wait_for_fds(node: NodeProcess, at_most: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while (count := open_fds(node)) > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def test_a_half_sent_request_head_gets_408_and_is_closed(node: NodeProcess) -> None:
    sock = connect(node)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Slow: ")
    closed, received = closed_within(sock, 4)
    sock.close()
    assert closed, "the node still holds a connection whose head never ended"
    assert received.startswith(b"HTTP/1.1 408")


def test_a_connection_that_sends_nothing_is_closed(node: NodeProcess) -> None:
    sock = connect(node)
    closed, _ = closed_within(sock, 4)
    sock.close()
    assert closed


def test_a_chunked_body_that_never_ends_is_closed_without_a_traceback(node: NodeProcess) -> None:
    sock = connect(node)
    sock.sendall(
        b"POST /LiveApp/whip/slow HTTP/1.1\r\nHost: node\r\nContent-Type: application/sdp\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nv=0\r\n\r\n"
    )
    closed, _ = closed_within(sock, 4)
    sock.close()
    assert closed, "the node still holds a body that never ends"
    assert "request body not complete within 1 s" in node.log_text()
    assert "Traceback" not in node.log_text()
    assert node.get("/healthz").status_code == 200


def test_stalled_connections_are_bounded_per_address_and_all_closed(node: NodeProcess) -> None:
    before = open_fds(node)
    socks = [connect(node) for _ in range(200)]
    for index, sock in enumerate(socks):
        half = b"GET /healthz HTTP/1.1\r\nHost: node\r\n"
        body = b"POST /rest/changeServerSettings HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"
        sock.sendall(half if index % 2 else body)
    held = wait_for_fds(node, before + PER_ADDRESS + 5, 0.5)
    assert held <= before + PER_ADDRESS + 5, "connections past the bound are refused at once"
    replies = [closed_within(sock, 5) for sock in socks]
    assert all(closed for closed, _ in replies), "stalled connections linger"
    refused = sum(1 for _, received in replies if received.startswith(b"HTTP/1.1 503"))
    assert refused >= 100, "connections past the bound are refused"
    assert wait_for_fds(node, before + 2, 5) <= before + 2, "the node holds no fd for them"
    for sock in socks:
        sock.close()
    assert node.get("/healthz").status_code == 200
    assert "Traceback" not in node.log_text()


def test_clients_leaving_mid_body_cost_a_few_short_lines(node: NodeProcess) -> None:
    lines_before = node.log_text().count("disconnected during")
    for _ in range(60):
        sock = connect(node)
        sock.sendall(
            b"POST /LiveApp/whip/gone HTTP/1.1\r\nHost: node\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: 5000\r\n\r\nv=0\r\n"
        )
        time.sleep(0.02)
        sock.close()
    time.sleep(0.5)
    log = node.log_text()
    lines = log.count("disconnected during")
    assert 1 <= lines - lines_before <= 20, "client faults are rate-limited"
    assert "Traceback" not in log
    assert "500" not in log
    with httpx.Client() as http:
        assert http.get(node.url + "/healthz").status_code == 200
