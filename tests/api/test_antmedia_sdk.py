"""Ant Media's own JS SDK (``@antmedia/webrtc_adaptor`` 2.16.2, unmodified) in real Chromium.

A test page served on 127.0.0.1 (``tests/browser_assets/antmedia.html``) publishes
or plays exactly as Ant Media's sample pages do, against real node processes
sharing a private PostgreSQL registry. Each play decodes frames in the page and
gets ``play_started``; stopping the publisher brings ``publish_finished`` and
``play_finished``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from cluster.registry.migrate import migrate
from tests.support import REPO
from tests.support.browser import open_page, screenshot
from tests.support.local_http import QuietHandler, local_http
from tests.support.nodes import NodeProcess, start_all
from tests.support.peers import Peers
from tests.support.postgres import PostgresServer

pytest_plugins = ["tests.support.browser"]
pytestmark = pytest.mark.postgres

ASSETS = REPO / "tests" / "browser_assets"
SDK = ASSETS / "node_modules" / "@antmedia" / "webrtc_adaptor" / "dist" / "browser"
WAIT_MS = 20_000
FRAMES = 30


@pytest.fixture(scope="module")
def pages_url() -> Iterator[str]:
    """The test page and the SDK, served from tests/browser_assets on 127.0.0.1."""
    if not (SDK / "webrtc_adaptor.js").exists():
        pytest.fail(
            "Ant Media's SDK is missing: run bash .ci/install (npm ci in tests/browser_assets)"
        )
    with local_http(functools.partial(QuietHandler, directory=str(ASSETS))) as url:
        yield f"{url}/antmedia.html"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[dict[str, NodeProcess]]:
    """eu-1 (main origins), us-1 (the us secondary origin), us-2 (a us edge)."""
    url = asyncio.run(postgres_server.create_database(f"sdk_{os.getpid()}"))
    asyncio.run(migrate(url))
    workdir: Path = tmp_path_factory.mktemp("sdk")
    nodes = {
        "eu-1": NodeProcess(workdir, "eu-1", "eu", url),
        "us-1": NodeProcess(workdir, "us-1", "us", url),
        "us-2": NodeProcess(workdir, "us-2", "us", url),
    }
    try:
        start_all(list(nodes.values()))
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[list[Page]]:
    opened: list[Page] = []
    yield opened
    for page in opened:
        await page.context.close()


async def _sdk(
    browser: Browser, opened: list[Page], pages_url: str, node: NodeProcess, mode: str, stream: str
) -> Page:
    page = await open_page(browser)
    opened.append(page)
    ws = node.url.replace("http://", "ws://") + "/LiveApp/websocket"
    await page.goto(f"{pages_url}?mode={mode}&stream={stream}&ws={ws}")
    return page


async def _wait(page: Page, condition: str, artifacts: Path, name: str) -> None:
    try:
        await page.wait_for_function(condition, timeout=WAIT_MS)
    except Exception:
        await screenshot(page, artifacts, name)
        state = await page.evaluate(
            "({events: window.events, errors: window.errors, frames: window.frames})"
        )
        pytest.fail(f"{condition} did not hold within {WAIT_MS} ms: {state}")


async def _published(page: Page, artifacts: Path) -> None:
    await _wait(page, "window.events.includes('publish_started')", artifacts, "publisher")


async def _playing(page: Page, artifacts: Path) -> None:
    await _wait(
        page,
        f"window.events.includes('play_started') && window.frames > {FRAMES}"
        " && document.getElementById('remote').videoWidth > 0",
        artifacts,
        "player",
    )


async def _stop_publisher(publisher: Page, stream: str, artifacts: Path) -> None:
    await publisher.evaluate(f"window.adaptor.stop('{stream}')")
    await _wait(publisher, "window.events.includes('publish_finished')", artifacts, "publisher")


def _topology(node: NodeProcess, stream: str) -> dict[str, Any]:
    reply: dict[str, Any] = httpx.get(f"{node.url}/rest/v2/streams/{stream}/topology").json()
    return reply


async def test_sdk_publishes_and_plays_over_the_socket_on_one_node(
    browser: Browser, pages: list[Page], pages_url: str, cluster: dict[str, NodeProcess],
    artifacts: Path,
) -> None:  # fmt: skip
    node = cluster["eu-1"]
    publisher = await _sdk(browser, pages, pages_url, node, "publish", "sdk1")
    await _published(publisher, artifacts)
    player = await _sdk(browser, pages, pages_url, node, "play", "sdk1")
    await _playing(player, artifacts)

    await _stop_publisher(publisher, "sdk1", artifacts)
    await _wait(player, "window.events.includes('play_finished')", artifacts, "player")


async def test_sdk_publishes_in_eu_and_plays_on_a_us_edge_through_the_secondary_origin(
    browser: Browser, pages: list[Page], pages_url: str, cluster: dict[str, NodeProcess],
    artifacts: Path, peers: Peers,
) -> None:  # fmt: skip
    publisher = await _sdk(browser, pages, pages_url, cluster["eu-1"], "publish", "sdk2")
    await _published(publisher, artifacts)
    first = await peers.play(f"{cluster['us-1'].url}/LiveApp/whep/sdk2")  # us-1 claims
    await first.frames(5, timeout_s=20)

    player = await _sdk(browser, pages, pages_url, cluster["us-2"], "play", "sdk2")
    await _playing(player, artifacts)
    tree = _topology(cluster["us-2"], "sdk2")
    assert [o["node"] for o in tree["secondaryOrigins"] if o["nodeGroup"] == "us"] == ["us-1"], tree
    assert {(p["downstream"], p["upstream"]) for p in tree["pulls"]} >= {
        ("us-1", "eu-1"),
        ("us-2", "us-1"),
    }, tree

    await _stop_publisher(publisher, "sdk2", artifacts)
    await _wait(player, "window.events.includes('play_finished')", artifacts, "player")


async def test_whip_publish_plays_in_the_sdk_over_the_socket(
    browser: Browser, pages: list[Page], pages_url: str, cluster: dict[str, NodeProcess],
    artifacts: Path, peers: Peers,
) -> None:  # fmt: skip
    node = cluster["eu-1"]
    published = await peers.publish(f"{node.url}/LiveApp/whip/sdk3")
    player = await _sdk(browser, pages, pages_url, node, "play", "sdk3")
    await _playing(player, artifacts)

    await published.client.close()  # the publisher leaves (WHIP DELETE)
    await published.publisher.close()
    await _wait(player, "window.events.includes('play_finished')", artifacts, "player")


async def test_sdk_publish_plays_over_whep(
    browser: Browser, pages: list[Page], pages_url: str, cluster: dict[str, NodeProcess],
    artifacts: Path, peers: Peers,
) -> None:  # fmt: skip
    node = cluster["eu-1"]
    publisher = await _sdk(browser, pages, pages_url, node, "publish", "sdk4")
    await _published(publisher, artifacts)
    playing = await peers.play(f"{node.url}/LiveApp/whep/sdk4")
    await playing.frames(FRAMES, timeout_s=20)
    await _stop_publisher(publisher, "sdk4", artifacts)
    async with asyncio.timeout(10):
        await playing.player.ended.wait()
