"""/readyz on a real node process: "accepting" while it has room, 503 "full" at its limit.

The node runs on the embedded registry; a real aiortc publisher and players fill it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodes import NodeProcess
from tests.support.peers import Peers

WAIT = 10.0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    registry = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    started = NodeProcess(tmp_path, "ready", "eu", registry, **{"server.maxViewers": "1"})
    started.start()
    try:
        yield started
    finally:
        started.stop()


async def ready_status(node: NodeProcess, expected: int) -> dict[str, str]:
    deadline = time.monotonic() + WAIT
    while True:
        answer = await asyncio.to_thread(node.get, "/readyz")
        if answer.status_code == expected or time.monotonic() > deadline:
            assert answer.status_code == expected, answer.text
            body: dict[str, str] = answer.json()
            return body
        await asyncio.sleep(0.1)


async def test_readyz_says_accepting_until_the_node_is_full(
    node: NodeProcess, peers: Peers
) -> None:
    body = await ready_status(node, 200)
    assert (body["status"], body["nodeId"], body["nodeGroup"]) == ("accepting", "ready", "eu")
    assert (await asyncio.to_thread(node.get, "/healthz")).status_code == 200

    await peers.publish(f"{node.url}/LiveApp/whip/filling")
    await peers.play(f"{node.url}/LiveApp/whep/filling")
    full = await ready_status(node, 503)
    assert full["status"] == "full"
    assert "accepting" not in (await asyncio.to_thread(node.get, "/readyz")).text
    assert (await asyncio.to_thread(node.get, "/healthz")).status_code == 200
