"""The dashboard of a running demo, in real headless Chromium.

One demo (two regions of two nodes, a player per node) serves every test of
this module; the failover test runs last because it kills a node. What the
page draws is compared with the topology REST of the same cluster, the
in-page player must decode frames, and the feed's bounds and bad input get
clear answers while media keeps flowing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from playwright.async_api import Page

from tests.support.browser import screenshot
from tests.support.demo import DemoProcess
from tests.support.nodes import NodeProcess, start_all
from tests.support.peers import Peers
from tests.support.postgres import PostgresServer
from tests.support.waits import eventually

LIMIT = 50
"""dashboard.maxEventStreams, as the demo's nodes run with the default."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    running = DemoProcess(tmp_path_factory.mktemp("dashboard") / "demo").start()
    try:
        yield running
    finally:
        assert running.stop() == 0, running.text()
        assert running.leftovers() == []


def topology(demo: DemoProcess) -> dict[str, Any]:
    reply = httpx.get(f"{demo.node_url('eu-1')}/rest/v2/streams/demo/topology", timeout=5)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def drawn(page: Page) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """The graph as the page drew it: node → role, and (upstream, downstream) edges."""
    nodes = await page.eval_on_selector_all(
        "#tree g.node", "gs => gs.map(g => [g.dataset.node, g.dataset.role])"
    )
    edges = await page.eval_on_selector_all(
        "#tree path.edge", "ps => ps.map(p => [p.dataset.upstream, p.dataset.downstream])"
    )
    return dict(nodes), {(a, b) for a, b in edges}


def expected(body: dict[str, Any]) -> tuple[dict[str, str], set[tuple[str, str]]]:
    return (
        {n["node"]: n["role"] for n in body["nodes"]},
        {(p["upstream"], p["downstream"]) for p in body["pulls"]},
    )


async def test_the_graph_draws_the_topology_of_the_rest_api(
    demo: DemoProcess, page: Page, artifacts: Path
) -> None:
    await page.goto(f"{demo.node_url('eu-1')}/dashboard?stream=demo")
    await page.wait_for_selector("#tree g.node")

    async def agree() -> bool:  # the two reads may straddle a heartbeat; a steady tree agrees
        return await drawn(page) == expected(topology(demo))

    await eventually(agree, "the drawn graph equals the topology REST's")
    page_view, api_view = await drawn(page), expected(topology(demo))
    await screenshot(page, artifacts, "relay-tree")
    assert page_view == api_view
    assert sorted(page_view[0]) == ["eu-1", "eu-2", "us-1", "us-2"]
    assert list(page_view[0].values()).count("secondary-origin") == 1
    assert await page.text_content("#registry") == "registry reachable"
    rows = await page.eval_on_selector_all(
        "#nodes tr[data-node]", "rs => rs.map(r => r.dataset.node)"
    )
    assert sorted(rows) == ["eu-1", "eu-2", "us-1", "us-2"]
    log = await page.text_content("#events")
    assert log is not None


async def test_the_in_page_player_decodes_frames(
    demo: DemoProcess, page: Page, artifacts: Path
) -> None:
    await page.goto(f"{demo.node_url('eu-1')}/dashboard?stream=demo")
    await page.wait_for_selector("#tree g.node")
    await page.select_option("#player-node", demo.node_url("us-2"))
    await page.click("#play")
    await page.wait_for_function(
        "Number(document.getElementById('player-stats').dataset.framesDecoded) > 30",
        timeout=20_000,
    )
    await screenshot(page, artifacts, "player")
    fps = float(await page.get_attribute("#player-stats", "data-fps") or 0)
    assert fps > 1  # the rate the demo's publisher reaches on this machine, decoded
    await page.click("#stop")


def admin_token(config: Path) -> str:
    lines = config.read_text("utf-8").splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith("server.adminToken="))


async def test_a_region_change_needs_the_admin_token(
    demo: DemoProcess, page: Page, artifacts: Path
) -> None:
    url = demo.node_url("eu-2")
    await page.goto(f"{url}/dashboard?stream=demo")
    await page.wait_for_selector("#tree g.node")
    await page.select_option("#move-node", url)
    await page.fill("#move-region", "ap")
    await page.fill("#move-token", "not-the-token")
    await page.click("#move button")
    await page.wait_for_function(
        "document.getElementById('move-result').textContent.startsWith('401')"
    )
    assert (await page.text_content("#move-result")) == "401: the admin token is wrong"
    token = admin_token(Path(demo.state()["nodes"][1]["config"]))
    await page.fill("#move-token", token)
    await page.click("#move button")
    await page.wait_for_function(
        "document.getElementById('move-result').textContent.startsWith('200')"
    )
    await page.wait_for_selector("#events li.node-moved")
    await screenshot(page, artifacts, "moved")
    await page.fill("#move-region", "eu")
    await page.click("#move button")
    await page.wait_for_function(
        "document.getElementById('move-result').textContent === '200: changed nodeGroup=eu'"
    )


async def test_an_unknown_stream_is_named_on_the_page(demo: DemoProcess, page: Page) -> None:
    await page.goto(f"{demo.node_url('eu-1')}/dashboard?stream=nobody-publishes-this")
    await page.wait_for_selector("#tree-notice:not([hidden])")
    notice = await page.text_content("#tree-notice")
    assert notice == "stream nobody-publishes-this is not live on this cluster (unknown or ended)"
    assert await page.eval_on_selector_all("#nodes tr[data-node]", "rs => rs.length") == 4


@pytest.mark.parametrize(
    "path",
    ["/dashboard?stream=a%2Fb", "/dashboard?stream=%3Cscript%3E", "/dashboard/events?stream=a%20b",
     f"/dashboard/events?stream={'x' * 129}"],
    ids=["slash", "markup", "space", "too long"],
)  # fmt: skip
def test_odd_stream_ids_are_refused_by_name(demo: DemoProcess, path: str) -> None:
    reply = httpx.get(demo.node_url("eu-1") + path, timeout=5)
    assert reply.status_code == 400
    assert reply.json() == {
        "success": False,
        "message": "the stream id must be 1 to 128 of A-Z a-z 0-9 _ -",
    }


async def test_a_hundred_event_streams_are_bounded_and_media_keeps_flowing(
    demo: DemoProcess, peers: Peers
) -> None:
    url = demo.node_url("eu-2")
    playing = await peers.play(f"{url}/LiveApp/whep/demo")
    await playing.frames(10)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=200)) as http:
        opened = []
        refused = []
        for _ in range(100):
            request = http.build_request("GET", f"{url}/dashboard/events?stream=demo")
            reply = await http.send(request, stream=True)
            if reply.status_code == 200:
                opened.append(reply)
            else:
                refused.append((reply.status_code, (await reply.aread()).decode()))
                await reply.aclose()
        try:
            assert len(opened) == LIMIT
            assert {status for status, _ in refused} == {503}
            assert "at most 50 dashboard event streams (dashboard.maxEventStreams)" in refused[0][1]
            before = playing.received
            await playing.frames(before + 10, timeout_s=10)  # video goes on while all are open
            metrics = (await http.get(f"{url}/metrics")).text.splitlines()
            assert "tierstream_dashboard_feeds 50.0" in metrics
            assert "tierstream_dashboard_feeds_refused_total 50.0" in metrics
            first = opened[0].aiter_text()
            assert "event: view" in await asyncio.wait_for(anext(first), 5)
        finally:
            for reply in opened:
                await reply.aclose()

        async def accepted_again() -> bool:  # closed feeds are counted out at their next write
            again = await http.send(
                http.build_request("GET", f"{url}/dashboard/events"), stream=True
            )
            await again.aclose()
            return again.status_code == 200

        await eventually(accepted_again, "a feed accepted again once the others closed")
        assert (await http.get(f"{url}/healthz")).status_code == 200


async def test_sigkill_of_a_secondary_origin_shows_the_new_holder_within_5_s(
    demo: DemoProcess, page: Page, artifacts: Path
) -> None:
    await page.goto(f"{demo.node_url('eu-1')}/dashboard?stream=demo")
    await page.wait_for_selector("#tree g.node[data-role='secondary-origin']")
    holder = await page.get_attribute("#tree g.node[data-role='secondary-origin']", "data-node")
    epoch = int(await page.get_attribute(f"#tree g.node[data-node='{holder}']", "data-epoch") or 0)
    assert holder in ("us-1", "us-2")
    pid = next(n["pid"] for n in demo.state()["nodes"] if n["name"] == holder)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    await page.wait_for_selector(
        f"#tree g.node[data-role='secondary-origin']:not([data-node='{holder}'])", timeout=5_000
    )
    took = time.monotonic() - killed_at
    await screenshot(page, artifacts, "failover")
    new = await page.get_attribute("#tree g.node[data-role='secondary-origin']", "data-node")
    assert new in ("us-1", "us-2") and new != holder
    assert (
        int(await page.get_attribute(f"#tree g.node[data-node='{new}']", "data-epoch") or 0) > epoch
    )
    assert took < 5
    await page.wait_for_selector("#events li.secondary-origin-reclaimed")
    await page.wait_for_selector(f"#nodes tr[data-node='{holder}'] td.state-dead", timeout=5_000)


@pytest.mark.postgres
async def test_a_registry_outage_shows_a_banner_keeps_the_view_and_recovers(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str, page: Page, artifacts: Path
) -> None:
    node = NodeProcess(tmp_path, "eu-1", "eu", postgres_url).start()
    assert postgres_server.pid is not None
    server = psutil.Process(postgres_server.pid)
    database = [server, *server.children(recursive=True)]
    try:
        await page.goto(f"{node.url}/dashboard")
        await page.wait_for_selector("#nodes tr[data-node='eu-1']")
        assert await page.text_content("#registry") == "registry reachable"
        for process in database:  # the registry stops answering (not refusing: hanging)
            process.suspend()
        await page.wait_for_selector("#registry.unreachable", timeout=20_000)
        assert await page.is_visible("#banner")
        assert "registry unreachable" in (await page.text_content("#banner") or "")
        assert await page.eval_on_selector_all("#nodes tr[data-node]", "rs => rs.length") == 1
        await screenshot(page, artifacts, "registry-unreachable")
    finally:
        for process in database:
            process.resume()
    try:
        await page.wait_for_selector("#registry.reachable", timeout=20_000)
        assert await page.is_hidden("#banner")
    finally:
        node.stop()


@pytest.mark.postgres
async def test_a_deeper_tree_is_drawn_level_by_level(
    tmp_path: Path, postgres_url: str, peers: Peers, page: Page, artifacts: Path
) -> None:
    """With cluster.maxDownstreams=1 each full node passes the next edge one level down."""
    names = ("eu-1", "eu-2", "eu-3", "eu-4")
    nodes = [NodeProcess(tmp_path, n, "eu", postgres_url, **{"cluster.maxDownstreams": "1"})
             for n in names]  # fmt: skip
    start_all(nodes)
    try:
        await peers.publish(f"{nodes[0].url}/LiveApp/whip/deep")
        for node in nodes[1:]:  # one after the other, so each finds the one before it full
            await (await peers.play(f"{node.url}/LiveApp/whep/deep")).frames(5)
        await page.goto(f"{nodes[0].url}/dashboard?stream=deep")

        async def chain_drawn() -> bool:
            _, edges = await drawn(page)
            return edges == {("eu-1", "eu-2"), ("eu-2", "eu-3"), ("eu-3", "eu-4")}

        await eventually(chain_drawn, "the chain eu-1 → eu-2 → eu-3 → eu-4 drawn")
        await screenshot(page, artifacts, "deeper-tree")
        levels = await page.eval_on_selector_all(
            "#tree g.node", "gs => gs.map(g => [g.dataset.node, g.transform.baseVal[0].matrix.f])"
        )
        tops = dict(levels)
        assert tops["eu-1"] < tops["eu-2"] < tops["eu-3"] < tops["eu-4"]
        async with httpx.AsyncClient(timeout=5) as http:
            api = (await http.get(f"{nodes[0].url}/rest/v2/streams/deep/topology")).json()
        assert await drawn(page) == expected(api)
    finally:
        for node in nodes:
            node.stop()
