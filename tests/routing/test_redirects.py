"""Routing between real node processes in three regions: 307 with a ticket to the right node.

Real parts: node processes on 127.0.0.1 sharing a private PostgreSQL registry,
MaxMind's GeoIP test database, real aiortc publishers and players following the
redirects. The client's city is chosen with a trusted ``X-Forwarded-For``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cluster.registry import Registry
from tests.support.antmedia import Signalling
from tests.support.nodes import NodeProcess, running
from tests.support.peers import Peers
from tests.support.regions import (
    CHANGCHUN,
    LONDON,
    MILTON,
    forwarded,
    region_node,
    wait_for_stream,
    wait_for_view,
)
from tests.support.waits import eventually

OFFER_HEADERS = {"Content-Type": "application/sdp", "Origin": "http://127.0.0.1:1"}
"""A browser's POST: the Origin makes the answer carry CORS headers."""
MAX_PLAYERS = 30
LIMIT = {"server.maxViewers": str(MAX_PLAYERS)}


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[dict[str, NodeProcess]]:
    workdir: Path = tmp_path_factory.mktemp("routing")
    started = {
        "eu-1": region_node(workdir, "eu-1", "eu", module_postgres_url, **LIMIT),
        "us-1": region_node(workdir, "us-1", "us", module_postgres_url, **LIMIT),
        "ap-1": region_node(workdir, "ap-1", "ap", module_postgres_url, **LIMIT),
        "ap-open": region_node(
            workdir, "ap-open", "ap", module_postgres_url, **LIMIT, **{"server.trustedProxies": ""}
        ),
    }
    with running(list(started.values())):
        for node in started.values():
            wait_for_view(node, len(started))
        yield started


def post(node: NodeProcess, path: str, client: str | None = None, **headers: str) -> httpx.Response:
    sent = {**OFFER_HEADERS, **(forwarded(client) if client else {}), **headers}
    return httpx.post(node.url + path, content="v=0\r\n", headers=sent, timeout=5.0)


@pytest.mark.parametrize(
    ("client", "expected"),
    [(LONDON, "eu"), (MILTON, "us"), (CHANGCHUN, "ap")],
    ids=["London publishes in eu", "Milton publishes in us", "Changchun publishes in ap"],
)
def test_a_publish_is_redirected_to_the_clients_region(
    nodes: dict[str, NodeProcess], client: str, expected: str
) -> None:
    receiving = next(n for name, n in nodes.items() if not name.startswith(expected))
    answer = post(receiving, "/LiveApp/whip/geo-publish", client)
    assert answer.status_code == 307, answer.text
    location = answer.headers["location"]
    targets = [n.url for name, n in nodes.items() if name.startswith(expected)]
    assert any(location.startswith(f"{url}/LiveApp/whip/geo-publish?ticket=") for url in targets)
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "Location" in answer.headers["access-control-expose-headers"]


def test_an_untrusted_forwarding_header_is_ignored(nodes: dict[str, NodeProcess]) -> None:
    route = nodes["ap-open"].get(
        "/LiveApp/rest/v2/route?streamId=untrusted&type=publish", headers=forwarded(LONDON)
    )
    assert route.status_code == 200, route.text
    assert route.json()["region"] == "ap"


def test_a_ticketed_request_is_never_redirected_again(nodes: dict[str, NodeProcess]) -> None:
    first = post(nodes["us-1"], "/LiveApp/whip/no-loop", LONDON)
    assert first.status_code == 307
    ticket = parse_qs(urlsplit(first.headers["location"]).query)["ticket"][0]
    # The same ticket, with a client header that would send it elsewhere, is served on eu-1.
    again = post(nodes["eu-1"], f"/LiveApp/whip/no-loop?ticket={ticket}", MILTON)
    assert again.status_code == 400, again.text  # served here: the offer "v=0" is refused
    elsewhere = post(nodes["us-1"], f"/LiveApp/whip/no-loop?ticket={ticket}", LONDON)
    assert elsewhere.status_code == 403
    assert "for node eu-1" in elsewhere.json()["message"]
    reused = post(nodes["eu-1"], f"/LiveApp/whip/no-loop?ticket={ticket}", LONDON)
    assert reused.status_code == 403  # a ticket opens one session: no second pass of its checks
    assert "used already" in reused.json()["message"]


def test_a_forged_ticket_is_refused(nodes: dict[str, NodeProcess]) -> None:
    answer = post(nodes["eu-1"], "/LiveApp/whip/forged?ticket=not.a.ticket", LONDON)
    assert answer.status_code == 401
    assert "ticket" in answer.json()["message"]


def test_an_unknown_stream_is_404_not_a_redirect(nodes: dict[str, NodeProcess]) -> None:
    answer = post(nodes["ap-1"], "/LiveApp/whep/nobody-publishes-this", LONDON)
    assert answer.status_code == 404, answer.text


@pytest.mark.parametrize(
    "header",
    ["garbage", "81.2.69.142, , ::::", "for=", "1.2.3.4" * 500, "[::1", "999.1.1.1"],
    ids=["garbage", "empty hop", "Forwarded syntax in XFF", "huge", "bracket", "bad octet"],
)
def test_malformed_forwarding_headers_route_as_the_proxy(
    nodes: dict[str, NodeProcess], header: str
) -> None:
    route = nodes["us-1"].get(
        "/LiveApp/rest/v2/route?streamId=malformed&type=publish",
        headers={"X-Forwarded-For": header, "Forwarded": header},
    )
    assert route.status_code == 200, route.text
    assert route.json()["region"] == "us"


def test_bad_route_queries_are_400(nodes: dict[str, NodeProcess]) -> None:
    for query in ("streamId=s1&type=watch", "streamId=&type=play", "type=play", "streamId=a b"):
        answer = nodes["eu-1"].get(f"/LiveApp/rest/v2/route?{query}")
        assert answer.status_code == 400, (query, answer.text)


def test_only_the_initial_post_is_redirected(nodes: dict[str, NodeProcess]) -> None:
    options = httpx.options(
        nodes["us-1"].url + "/LiveApp/whip/preflight", headers=forwarded(LONDON)
    )
    assert options.status_code == 204
    patch = httpx.patch(
        nodes["us-1"].url + "/LiveApp/whip/preflight/nosession",
        headers={"Content-Type": "application/trickle-ice-sdpfrag", **forwarded(LONDON)},
    )
    assert patch.status_code == 404
    delete = httpx.delete(nodes["us-1"].url + "/LiveApp/whip/preflight/nosession",
                          headers=forwarded(LONDON))  # fmt: skip
    assert delete.status_code == 404


async def test_publish_and_play_follow_the_redirects_and_play(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    published = await peers.publish(
        f"{nodes['ap-1'].url}/LiveApp/whip/travels", headers=forwarded(LONDON)
    )
    client = published.client
    assert client.redirects and client.redirects[0].startswith(nodes["eu-1"].url)
    assert client.location is not None and client.location.startswith(
        nodes["eu-1"].url + "/LiveApp/whip/travels/"
    )
    await asyncio.to_thread(wait_for_stream, nodes["us-1"], "travels")
    playing = await peers.play(
        f"{nodes['eu-1'].url}/LiveApp/whep/travels", headers=forwarded(MILTON)
    )
    assert playing.client.redirects[0].startswith(nodes["us-1"].url)
    assert playing.client.location is not None
    assert playing.client.location.startswith(nodes["us-1"].url + "/LiveApp/whep/travels/")
    report = await playing.frames(20)
    assert report.keyframes >= 1


def test_regions_report_capacity_and_use(nodes: dict[str, NodeProcess]) -> None:
    regions = {r["region"]: r for r in nodes["eu-1"].get("/rest/v2/cluster/regions").json()}
    assert set(regions) == {"eu", "us", "ap"}
    assert regions["ap"]["serving"] == 2
    assert regions["eu"]["capacity"] == MAX_PLAYERS
    assert regions["eu"]["accepting"] is True
    assert 0.0 <= regions["us"]["free"] <= 1.0


def test_route_names_the_node_in_ant_medias_shape(nodes: dict[str, NodeProcess]) -> None:
    answer = nodes["ap-1"].get("/LiveApp/rest/v2/route?streamId=shape&type=publish",
                               headers=forwarded(MILTON))  # fmt: skip
    assert answer.status_code == 200
    body = answer.json()
    us = nodes["us-1"]
    assert (body["node"], body["region"], body["fqdn"]) == ("us-1", "us", "127.0.0.1")
    assert body["http_url"] == f"{us.url}/LiveApp/"
    assert body["websocket_url"].startswith(f"ws://127.0.0.1:{us.port}/LiveApp/websocket?ticket=")
    assert body["whip_url"].startswith(f"{us.url}/LiveApp/whip/shape?ticket=")
    tickets = {
        parse_qs(urlsplit(body[url]).query)["ticket"][0] for url in ("whip_url", "websocket_url")
    }
    assert len(tickets) == 1  # one reservation, one ticket: whichever door is taken spends it
    assert httpx.head(body["http_url"]).status_code == 200


async def test_a_websocket_client_routed_to_a_node_spends_its_reservation_there(
    nodes: dict[str, NodeProcess], module_registry: Registry
) -> None:
    """A WebSocket cannot follow a redirect: ``/route``'s ``websocket_url`` carries the
    ticket instead, and the publish on that socket replaces the reservation at once
    (not ``cluster.reservationMs`` later); a second socket with the same URL is refused."""

    async def reserved_on_us() -> int:
        return next(n.reserved for n in await module_registry.live_nodes() if n.id == "us-1")

    async def none_reserved() -> bool:
        return await reserved_on_us() == 0

    sockets: list[Signalling] = []
    try:
        await eventually(none_reserved, "earlier tests' reservations on us-1 lapsing")
        answer = nodes["ap-1"].get("/LiveApp/rest/v2/route?streamId=ws-routed&type=publish",
                                   headers=forwarded(MILTON))  # fmt: skip
        assert answer.status_code == 200, answer.text
        url = answer.json()["websocket_url"]
        assert await reserved_on_us() == 1
        sockets.append(await Signalling.connect(url))
        await sockets[0].publish("ws-routed")
        await eventually(none_reserved, "the publisher's arrival replacing its reservation",
                         timeout_s=6.0)  # fmt: skip
        sockets.append(await Signalling.connect(url))
        await sockets[1].send("publish", streamId="ws-routed", token="", video=True, audio=True)
        refused = await sockets[1].expect("error")
        assert "used already" in str(refused), refused
    finally:
        for signalling in sockets:
            await signalling.close()


async def test_a_burst_of_plays_at_every_node_never_overfills_one(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    """200 plays decided at once by four nodes from the same view: reservations hold."""
    await peers.publish(f"{nodes['eu-1'].url}/LiveApp/whip/burst", headers=forwarded(LONDON))
    await asyncio.to_thread(wait_for_stream, nodes["us-1"], "burst")
    receivers = list(nodes.values())
    cities = (LONDON, MILTON, CHANGCHUN)
    async with httpx.AsyncClient(timeout=30.0) as http:
        answers = await asyncio.gather(*(
            http.get(
                f"{receivers[i % len(receivers)].url}/LiveApp/rest/v2/route",
                params={"streamId": "burst", "type": "play"},
                headers=forwarded(cities[i % len(cities)]),
            )
            for i in range(200)
        ))  # fmt: skip
    routed: dict[str, int] = {}
    for answer in answers:
        if answer.status_code == 200:
            name = answer.json()["node"]
            routed[name] = routed.get(name, 0) + 1
        else:
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) >= 1
    assert max(routed.values()) <= MAX_PLAYERS, routed
    assert sum(routed.values()) >= 3 * MAX_PLAYERS, routed  # the room was used, not refused
    listed = {n["id"]: n for n in nodes["eu-1"].get("/rest/v2/cluster/nodes/0/10").json()}
    regions = nodes["eu-1"].get("/rest/v2/cluster/regions").json()
    assert all(r["used"] <= r["capacity"] for r in regions), regions
    assert set(routed) <= set(listed)
