"""The multi-level cluster on real node processes: regions, secondary origins, trees, failover.

Every node is a real ``tierstream node`` on 127.0.0.1 against one private
PostgreSQL registry; publishers and players are real aiortc peers over WHIP and
WHEP. Heartbeats are 0.5 s and a node is dead after 2 s, so failures show fast.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from cluster.registry import Registry
from cluster.types import NodeGroup, NodeId
from media import codecs
from tests.support.cluster import S1, ClusterFactory, edges, get_json, whep, whip
from tests.support.nodes import CLUSTER_SECRET
from tests.support.peers import Peers, Playing
from tests.support.waits import eventually


def contiguous_run(sent: list[bytes], received: list[bytes]) -> list[bytes]:
    start = sent.index(received[0])
    return sent[start : start + len(received)]


async def test_stream_crosses_each_region_once_and_survives_its_secondary_origin(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2")
    published = await peers.publish(whip(nodes["eu-1"]))

    eu2 = await peers.play(whep(nodes["eu-2"]))
    us1 = await peers.play(whep(nodes["us-1"]))
    us2 = await peers.play(whep(nodes["us-2"]), keep_frames=True)
    ap1, ap2 = await asyncio.gather(
        peers.play(whep(nodes["ap-1"])), peers.play(whep(nodes["ap-2"]))
    )
    players: dict[str, Playing] = {"eu-2": eu2, "us-1": us1, "us-2": us2, "ap-1": ap1, "ap-2": ap2}
    for playing in players.values():
        await playing.frames(30)

    tree = await postgres_registry.relay_tree(S1)
    pulls = edges(tree)
    assert {("eu-2", "eu-1"), ("us-1", "eu-1"), ("us-2", "us-1")} <= pulls
    assert tree is not None
    secondaries: dict[str, str] = {o.node_group: o.node_id for o in tree.secondary_origins}
    assert secondaries["us"] == "us-1"
    ap_origin = secondaries["ap"]
    ap_edge = "ap-2" if ap_origin == "ap-1" else "ap-1"
    assert {(ap_origin, "eu-1"), (ap_edge, ap_origin)} <= pulls, "one ap secondary origin"
    assert len(pulls) == 5
    for down, up in pulls:
        if down.split("-")[0] != up.split("-")[0]:
            assert secondaries[down.split("-")[0]] == down, f"{down} pulls across regions"

    video = us2.player.tracks["video"]
    assert codecs.is_keyframe("video/VP8", video.kept[0])
    assert video.kept == contiguous_run(published.sent, video.kept), "second-level edge bytes"

    async def topology_counts_every_player() -> dict[str, Any] | None:
        found: dict[str, Any] = await get_json(f"{nodes['ap-1'].url}/rest/v2/streams/s1/topology")
        return found if found["totals"]["players"] == 5 else None

    topology = await eventually(topology_counts_every_player, "the topology counting 5 players")
    assert {r: v["players"] for r, v in topology["regions"].items()} == {"eu": 1, "us": 2, "ap": 2}
    assert {(p["downstream"], p["upstream"]) for p in topology["pulls"]} == pulls
    roles = {n["node"]: n["role"] for n in topology["nodes"]}
    assert roles == {
        "eu-1": "main-origin",
        "eu-2": "edge",
        "us-1": "secondary-origin",
        "us-2": "edge",
        ap_origin: "secondary-origin",
        ap_edge: "edge",
    }
    broadcast = await get_json(f"{nodes['us-2'].url}/LiveApp/rest/v2/broadcasts/s1")
    assert (broadcast["status"], broadcast["webRTCViewerCount"]) == ("broadcasting", 5)

    # The us secondary origin dies: us-2 takes its role, its player resumes on the same session.
    received = us2.received
    nodes["us-1"].kill()
    killed_at = time.monotonic()
    await us2.frames(received + 30, timeout_s=5.0)
    assert time.monotonic() - killed_at < 5.0
    assert us2.player.pc.connectionState == "connected", "no renegotiation"
    holder = await postgres_registry.secondary_origin(S1, NodeGroup("us"))
    assert holder is not None and (holder.node_id, holder.epoch) == ("us-2", 2)

    # The publisher leaves: every remaining player's session ends within 2 s.
    left_at = time.monotonic()
    await published.client.close()
    await published.publisher.close()
    async with asyncio.timeout(2.0):
        for name, playing in players.items():
            if name != "us-1":
                await playing.player.ended.wait()
    assert time.monotonic() - left_at < 2.0

    async def ended_without_pulls() -> bool:
        tree = await postgres_registry.relay_tree(S1)
        return tree is not None and tree.stream.state == "ended" and not tree.pulls

    await eventually(ended_without_pulls, "the registry showing s1 ended with no pulls")


async def test_full_upstreams_deepen_the_tree_and_idle_pulls_stop(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster(
        "eu-1",
        "eu-2",
        "eu-3",
        "eu-4",
        **{"cluster.maxDownstreams": "1", "cluster.idlePullTimeoutMs": "1500"},
    )
    await peers.publish(whip(nodes["eu-1"]))
    together = await asyncio.gather(*(peers.play(whep(nodes["eu-2"])) for _ in range(3)))
    for playing in together:
        await playing.frames(10)

    async def eu2_reports_its_players() -> dict[str, int] | None:
        listed = await get_json(f"{nodes['eu-2'].url}/rest/v2/cluster/nodes/0/10")
        load: dict[str, int] = {n["id"]: n["load"] for n in listed}["eu-2"]
        return load if load["players"] == 3 else None

    load = await eventually(eu2_reports_its_players, "eu-2 reporting its 3 players")
    assert load is not None
    assert load["pulls"] == 1, "concurrent first plays on one node share one pull"
    players = [together[0]]
    for name in ("eu-3", "eu-4"):
        players.append(await peers.play(whep(nodes[name])))
        await players[-1].frames(10)
    assert edges(await postgres_registry.relay_tree(S1)) == {
        ("eu-2", "eu-1"),
        ("eu-3", "eu-2"),
        ("eu-4", "eu-3"),
    }

    await players[-1].client.close()  # eu-4's only player leaves

    async def eu4_stopped_pulling() -> bool:
        return ("eu-4", "eu-3") not in edges(await postgres_registry.relay_tree(S1))

    await eventually(eu4_stopped_pulling, "eu-4's idle pull stopping")
    frames = players[1].received
    await players[1].frames(frames + 15)  # eu-3's player is unaffected


async def test_an_idle_secondary_origin_stops_pulling_and_releases_its_claim(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "us-1", **{"cluster.idlePullTimeoutMs": "1000"})
    await peers.publish(whip(nodes["eu-1"]))
    playing = await peers.play(whep(nodes["us-1"]))
    await playing.frames(10)
    holder = await postgres_registry.secondary_origin(S1, NodeGroup("us"))
    assert holder is not None and holder.node_id == "us-1"

    await playing.client.close()

    async def released() -> bool:
        tree = await postgres_registry.relay_tree(S1)
        return (
            not edges(tree)
            and await postgres_registry.secondary_origin(S1, NodeGroup("us")) is None
        )

    await eventually(released, "us-1 stopping its idle pull and releasing the us claim")


async def test_region_change_hands_the_secondary_origin_over_without_dropping_players(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "us-1", "us-2")
    await peers.publish(whip(nodes["eu-1"]))
    on_us1 = await peers.play(whep(nodes["us-1"]))
    await on_us1.frames(10)
    on_us2 = await peers.play(whep(nodes["us-2"]))
    await on_us2.frames(10)
    assert edges(await postgres_registry.relay_tree(S1)) == {("us-1", "eu-1"), ("us-2", "us-1")}

    reply = await asyncio.to_thread(
        nodes["us-1"].post, "/rest/changeServerSettings", {"nodeGroup": "ap"}
    )
    assert reply.json()["success"] is True

    async def us2_is_the_us_secondary_origin() -> bool:
        holder = await postgres_registry.secondary_origin(S1, NodeGroup("us"))
        tree = await postgres_registry.relay_tree(S1)
        return holder is not None and holder.node_id == "us-2" and ("us-2", "eu-1") in edges(tree)

    await eventually(us2_is_the_us_secondary_origin, "us-2 taking over the us secondary origin")
    for playing in (on_us1, on_us2):
        frames = playing.received
        await playing.frames(frames + 30)
        assert playing.player.pc.connectionState == "connected"
    holder = await postgres_registry.secondary_origin(S1, NodeGroup("ap"))
    assert holder is not None and holder.node_id == NodeId("us-1"), "us-1 now serves ap"


async def test_players_wait_for_a_lost_origin_and_resume_when_the_stream_returns(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "eu-2", "eu-3", **{"cluster.originGraceMs": "15000"})
    await peers.publish(whip(nodes["eu-1"]))
    playing = await peers.play(whep(nodes["eu-2"]))
    await playing.frames(10)

    nodes["eu-1"].kill()

    async def orphaned() -> bool:
        stream = await postgres_registry.stream(S1)
        return stream is not None and stream.state == "orphaned"

    await eventually(orphaned, "the stream being marked orphaned")
    assert not playing.player.ended.is_set()
    frames = playing.received
    await peers.publish(whip(nodes["eu-3"]))  # published again, on another node
    await playing.frames(frames + 30)
    assert playing.player.pc.connectionState == "connected"
    assert ("eu-2", "eu-3") in edges(await postgres_registry.relay_tree(S1))


async def test_pulls_need_a_valid_cluster_token(make_cluster: ClusterFactory, peers: Peers) -> None:
    nodes = make_cluster("eu-1")
    await peers.publish(whip(nodes["eu-1"]))
    url = f"{nodes['eu-1'].url}/internal/v1/LiveApp/pull/s1"
    now = int(time.time())
    claims = {"iss": "eu-9", "aud": "tierstream-pull", "iat": now, "exp": now + 30}
    forged = jwt.encode(
        claims | {"sub": "s1"}, "not-the-cluster-secret-at-all-but-as-long", "HS256"
    )
    other_stream = jwt.encode(claims | {"sub": "s2"}, CLUSTER_SECRET, "HS256")
    expired = jwt.encode(claims | {"sub": "s1", "iat": now - 90, "exp": now - 60}, CLUSTER_SECRET)
    sdp = {"Content-Type": "application/sdp"}
    async with httpx.AsyncClient() as http:
        replies = {
            name: await http.post(url, content="v=0", headers=sdp | auth)
            for name, auth in {
                "none": {},
                "forged": {"Authorization": f"Bearer {forged}"},
                "expired": {"Authorization": f"Bearer {expired}"},
                "other stream": {"Authorization": f"Bearer {other_stream}"},
            }.items()
        }
    assert {name: r.status_code for name, r in replies.items()} == {
        "none": 401,
        "forged": 401,
        "expired": 401,
        "other stream": 403,
    }
    assert "Signature verification failed" in replies["forged"].json()["message"]
