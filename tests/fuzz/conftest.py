"""The fuzz suite's shared parts: one real node process, a live stream on it, and the
descriptions the tests mutate.

The node (embedded registry, loopback only) serves every fuzz test of the
package, so that whatever one test's inputs did to it shows in the next; its
log is checked for tracebacks and error lines, and the last test plays the live
stream. The stream is published by ``tierstream publish`` in a process of its
own: hypothesis refuses to run while anything in its own process uses
``random`` (aiortc does, all the time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from media import ice
from tests.support.fuzz import REPLY_TIMEOUT_S, Samples, chromium_offers
from tests.support.nodes import NodeProcess
from tests.support.peers import PublisherProcess

LIVE_WHEP = "/LiveApp/whep/fuzz-live"
LIVE_STREAM = "fuzz-live"


@pytest.fixture(scope="package")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    node = NodeProcess(
        workdir,
        "fuzz",
        "eu",
        f"sqlite+aiosqlite:///{workdir / 'registry.db'}",
        **{
            # Offers that are accepted but never connect hold their session this long.
            "webrtc.connectTimeoutMs": "2000",
            # A loaded test machine must not turn publishers away at the default 75 %.
            "server.cpu_limit": "100",
        },
    )
    node.start()
    yield node
    # Draining after the whole suite's sessions takes its time on a loaded machine; its
    # teardown is reported against the next package's first test, so leave it room.
    node.stop(timeout_s=30.0)


@pytest.fixture(scope="package")
def live(fuzz_node: NodeProcess) -> Iterator[PublisherProcess]:
    """The stream ``fuzz-live`` in ``LiveApp``, published for the whole fuzz suite."""
    publisher = PublisherProcess(
        f"{fuzz_node.url}/LiveApp/whip/{LIVE_STREAM}", fuzz_node.dir / "publisher.out"
    )
    publisher.start()
    yield publisher
    publisher.stop()


@pytest.fixture(scope="package")
def http(fuzz_node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_node.url, timeout=REPLY_TIMEOUT_S) as client:
        yield client


async def _aiortc_offers() -> list[str]:
    """aiortc's offers as a publisher (sendonly) and as a player (recvonly) make them."""
    offers = []
    for direction in ("sendonly", "recvonly"):
        pc = ice.peer_connection(())
        try:
            for kind in ("video", "audio"):
                pc.addTransceiver(kind, direction=direction)
            offers.append(await ice.describe(pc, "offer", ("127.0.0.1",)))
        finally:
            await pc.close()
    return offers


@pytest.fixture(scope="package")
def offers() -> Samples:
    """Real offers to mutate: Chromium's (stored) and aiortc's (made now, with candidates).

    aiortc's are made on an event loop of their own, in a thread, so that the
    test loops pytest-asyncio manages are left alone.
    """
    with ThreadPoolExecutor(1) as thread:
        return Samples(chromium_offers() + thread.submit(asyncio.run, _aiortc_offers()).result())
