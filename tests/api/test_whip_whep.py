"""WHIP publish and WHEP play against real node processes, with real aiortc peers on 127.0.0.1.

Two nodes of one region share a private PostgreSQL registry, so a stream live on
one is refused on the other. The peers are the media plane's own clients
(``media.contrib.client``) behind the same ``WhipClient`` that ``tierstream publish``
and ``play`` use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.registry import Registry
from cluster.streams.whip_client import SignallingFailed, WhipClient
from cluster.types import StreamId
from media import codecs, ice
from media.contrib.client import Player, Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from tests.support.nodes import NodeProcess
from tests.support.peers import Peers, trickling
from tests.support.waits import WAIT, eventually


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[dict[str, NodeProcess]]:
    workdir: Path = tmp_path_factory.mktemp("whip")
    started = {
        name: NodeProcess(
            workdir, name, "eu", module_postgres_url, **{"webrtc.connectTimeoutMs": "3000"}
        )
        for name in ("a", "b")
    }
    try:
        for node in started.values():
            node.start()
        yield started
    finally:
        for node in started.values():
            node.stop()


def load_of(node: NodeProcess, name: str) -> dict[str, int]:
    listed = {n["id"]: n for n in node.get("/rest/v2/cluster/nodes/0/10").json()}
    load: dict[str, int] = listed[name]["load"]
    return load


async def wait_for_load(node: NodeProcess, **expected: int) -> None:
    def reached() -> bool:
        load = load_of(node, node.name)
        return all(load[key] == value for key, value in expected.items())

    await eventually(reached, f"{node.name} reporting {expected}")


async def test_published_stream_plays_to_several_player_and_ends_with_its_publisher(
    nodes: dict[str, NodeProcess], peers: Peers, module_registry: Registry
) -> None:
    a = nodes["a"]
    publishing = (await peers.publish(f"{a.url}/LiveApp/whip/lifecycle")).client
    assert publishing.location is not None and "/LiveApp/whip/lifecycle/" in publishing.location
    first_playing = await peers.play(f"{a.url}/LiveApp/whep/lifecycle")
    first, first_session = first_playing.player, first_playing.client
    second = (await peers.play(f"{a.url}/LiveApp/whep/lifecycle")).player
    async with asyncio.timeout(WAIT):
        for player in (first, second):
            video = await player.wait_for_frames("video", 30)
            await player.wait_for_frames("audio", 20)
            assert video.keyframes >= 1
    await wait_for_load(a, publishers=1, players=2)
    metrics = (await asyncio.to_thread(a.get, "/metrics")).text
    for line in (
        "tierstream_publishers 1.0",
        "tierstream_players 2.0",
        'tierstream_stream_players{stream="lifecycle"} 2.0',
    ):
        assert line in metrics.splitlines(), line
    stream = await module_registry.stream(StreamId("lifecycle"))
    assert stream is not None and (stream.origin_node, stream.state) == ("a", "live")
    assert "video/VP8" in stream.codecs

    await first_session.close()  # DELETE ends that player only
    await wait_for_load(a, publishers=1, players=1)
    frames = second.tracks["video"].frames
    async with asyncio.timeout(WAIT):
        await second.wait_for_frames("video", frames + 15)

    await publishing.close()  # the publisher leaves
    async with asyncio.timeout(2.0):
        await second.ended.wait()
    await wait_for_load(a, publishers=0, players=0)
    ended = await module_registry.stream(StreamId("lifecycle"))
    assert ended is not None and ended.state == "ended"


async def test_stream_live_on_one_node_is_refused_on_another(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    await peers.publish(f"{nodes['a'].url}/LiveApp/whip/taken")
    with pytest.raises(SignallingFailed) as refused:
        await peers.publish(f"{nodes['b'].url}/LiveApp/whip/taken")
    assert refused.value.status == 409
    assert "a" in str(refused.value)
    with pytest.raises(SignallingFailed) as again:
        await peers.publish(f"{nodes['a'].url}/LiveApp/whip/taken")
    assert again.value.status == 409


async def test_player_that_cannot_take_the_codec_gets_406_naming_it(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    a = nodes["a"]
    await peers.publish(f"{a.url}/LiveApp/whip/vp8only", mime_type="video/VP8")
    pc = ice.peer_connection(())
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        transceiver.setCodecPreferences(
            [c for c in codecs.preferences("video") if c.mimeType == "video/H264"]
        )
        offer = await ice.describe(pc, "offer", ("127.0.0.1",))
        async with httpx.AsyncClient() as http:
            reply = await http.post(
                f"{a.url}/LiveApp/whep/vp8only",
                content=offer,
                headers={"Content-Type": "application/sdp"},
            )
    finally:
        await pc.close()
    assert reply.status_code == 406
    assert "VP8" in reply.json()["message"]


def test_options_advertises_trickle_and_cors(nodes: dict[str, NodeProcess]) -> None:
    reply = httpx.options(
        f"{nodes['a'].url}/LiveApp/whip/anything", headers={"Origin": "http://page.example"}
    )
    assert reply.status_code == 204
    assert reply.headers["accept-patch"] == "application/trickle-ice-sdpfrag"
    assert "POST" in reply.headers["allow"]
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "Location" in reply.headers["access-control-expose-headers"]


async def test_trickle_patch_checks_the_etag_and_the_session(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    a = nodes["a"]
    session = (await peers.publish(f"{a.url}/LiveApp/whip/trickle")).client
    assert session.location is not None
    fragment = (
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
        "m=audio 9 RTP/AVP 0\r\na=mid:0\r\na=end-of-candidates\r\n"
    )
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    async with httpx.AsyncClient() as http:
        tagged = frag | {"If-Match": '"other"'}
        wrong_tag = await http.patch(session.location, content=fragment, headers=tagged)
        elsewhere = f"{a.url}/LiveApp/whip/trickle/nosuchsession"
        unknown = await http.patch(elsewhere, content=fragment, headers=frag)
        plain = {"Content-Type": "text/plain"}
        wrong_type = await http.patch(session.location, content=fragment, headers=plain)
    assert wrong_tag.status_code == 412
    assert unknown.status_code == 404
    assert wrong_type.status_code == 415


def sdp(text: str, content_type: str = "application/sdp") -> dict[str, Any]:
    return {"content": text, "headers": {"Content-Type": content_type}}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "message"),
    [
        pytest.param("POST", "/LiveApp/whip/s1", sdp("hello"), 400, "", id="malformed SDP"),
        pytest.param(
            "POST",
            "/LiveApp/whep/s1",
            sdp("v=0", "text/plain"),
            415,
            "application/sdp",
            id="wrong content type",
        ),
        pytest.param(
            "POST",
            "/LiveApp/whip/s1",
            sdp("v" * 70_000),
            413,
            "65536 byte limit",
            id="body over 64 KiB",
        ),
        pytest.param(
            "POST", "/LiveApp/whip/bad.name", sdp("v=0"), 400, "stream id", id="bad stream id"
        ),
        pytest.param("POST", "/Live%20App/whip/s1", sdp("v=0"), 400, "app name", id="bad app name"),
        pytest.param(
            "DELETE",
            "/LiveApp/whep/s1/nosuchsession",
            {},
            404,
            "no such session",
            id="DELETE of an unknown session",
        ),
    ],
)
async def test_bad_requests_get_a_clear_status_and_the_node_keeps_serving(
    nodes: dict[str, NodeProcess],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    a = nodes["a"]
    async with httpx.AsyncClient(base_url=a.url) as http:
        reply = await http.request(method, path, **kwargs)
        assert reply.status_code == status, reply.text
        assert message in reply.json()["message"]
        assert (await http.get("/healthz")).status_code == 200


async def test_unknown_stream_is_404(nodes: dict[str, NodeProcess]) -> None:
    player = Player()
    client = WhipClient(f"{nodes['a'].url}/LiveApp/whep/nobody-here")
    try:
        with pytest.raises(SignallingFailed) as missing:
            await player.play(client.exchange)
    finally:
        await client.close()
        await player.close()
    assert missing.value.status == 404
    assert "nobody-here" in str(missing.value)


async def test_publisher_that_trickles_its_candidates_over_patch_is_played(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    """As Medooze and Eyevinn clients do: POST an offer without candidates, then PATCH them."""
    a = nodes["a"]
    client = WhipClient(f"{a.url}/LiveApp/whip/trickled")
    patched: list[int] = []

    video = SyntheticVideoTrack(VideoSettings(keyframe_interval_s=1.0))
    publisher = Publisher([video, SyntheticAudioTrack()])
    try:
        await publisher.start(trickling(client, patched, {"ETag": "*"}))
        playing = await peers.play(f"{a.url}/LiveApp/whep/trickled")
        await playing.frames(30)
    finally:
        await client.close()
        await publisher.close()
    assert patched == [204]


async def test_a_session_url_reaches_its_session_only_under_its_own_path(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    a = nodes["a"]
    published = await peers.publish(f"{a.url}/LiveApp/whip/bound")
    playing = await peers.play(f"{a.url}/LiveApp/whep/bound")
    await playing.frames(5)
    assert published.client.location is not None
    session = published.client.location.rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=a.url) as http:
        replies = {
            path: (await http.delete(path)).status_code
            for path in (
                f"/OtherApp/whep/x/{session}",
                f"/OtherApp/whip/bound/{session}",
                f"/LiveApp/whep/bound/{session}",
                f"/LiveApp/whip/other/{session}",
            )
        }
        internal = await http.delete(f"/internal/v1/LiveApp/pull/bound/{session}")
    assert set(replies.values()) == {404}, replies
    assert internal.status_code == 401, "the internal DELETE needs a cluster token"
    before = playing.received
    await playing.frames(before + 5)
    assert published.publisher.pc.connectionState == "connected"


async def test_an_offer_without_fingerprints_is_400_before_any_session(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    a = nodes["a"]
    await peers.publish(f"{a.url}/LiveApp/whip/nofp")
    pc = ice.peer_connection(())
    try:
        for kind in ("video", "audio"):
            pc.addTransceiver(kind, direction="recvonly")
        offer = await ice.describe(pc, "offer", ("127.0.0.1",))
    finally:
        await pc.close()
    stripped = "".join(
        line for line in offer.splitlines(True) if not line.startswith("a=fingerprint")
    )
    async with httpx.AsyncClient(base_url=a.url) as http:
        reply = await http.post("/LiveApp/whep/nofp", **sdp(stripped))
        recvonly = await http.post("/LiveApp/whip/recvonly", **sdp(offer))
    assert reply.status_code == 400
    assert "no DTLS fingerprint" in reply.json()["message"]
    assert recvonly.status_code == 400
    assert "sends no audio or video" in recvonly.json()["message"]
    assert "Task exception was never retrieved" not in a.log_text()


async def test_an_offer_aiortc_refuses_after_parsing_is_400_and_the_id_stays_free(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    """The engine ends the stream it began for the offer; the node must not trip over that."""
    a = nodes["a"]
    pc = ice.peer_connection(())
    try:
        for kind in ("video", "audio"):
            pc.addTransceiver(kind, direction="sendonly")
        offer = await ice.describe(pc, "offer", ("127.0.0.1",))
    finally:
        await pc.close()
    without_mux = offer.replace("a=rtcp-mux\r\n", "")
    async with httpx.AsyncClient(base_url=a.url) as http:
        reply = await http.post("/LiveApp/whip/nomux", **sdp(without_mux))
    assert reply.status_code == 400, reply.text
    assert "RTCP mux" in reply.json()["message"]
    await peers.publish(f"{a.url}/LiveApp/whip/nomux")
    playing = await peers.play(f"{a.url}/LiveApp/whep/nomux")
    await playing.frames(5)
    assert "Traceback" not in a.log_text()


async def test_garbage_trickle_candidates_are_400(
    nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    session = (await peers.publish(f"{nodes['a'].url}/LiveApp/whip/garbage")).client
    assert session.location is not None
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    async with httpx.AsyncClient() as http:
        for garbage in ("garbage\r\n", "a=candidate:1 1 udp 1 nowhere 1 typ host\r\n"):
            reply = await http.patch(session.location, content=garbage, headers=frag)
            assert reply.status_code == 400, garbage


async def test_an_offer_that_never_connects_holds_its_stream_id_only_briefly(
    nodes: dict[str, NodeProcess], peers: Peers, module_registry: Registry
) -> None:
    a, b = nodes["a"], nodes["b"]
    pc = ice.peer_connection(())
    for kind in ("video", "audio"):
        transceiver = pc.addTransceiver(kind, direction="sendonly")
        transceiver.setCodecPreferences(codecs.preferences(kind))
    offer = await ice.describe(pc, "offer", ("127.0.0.1",))
    await pc.close()  # the squatter never connects
    async with httpx.AsyncClient() as http:
        squat = await http.post(f"{a.url}/LiveApp/whip/squat", **sdp(offer))
    assert squat.status_code == 201
    squatted_at = asyncio.get_running_loop().time()

    published = None
    while published is None:
        try:
            published = await peers.publish(f"{b.url}/LiveApp/whip/squat")
        except SignallingFailed as refused:
            assert refused.status == 409
            assert asyncio.get_running_loop().time() - squatted_at < 6, "the id is held too long"
            await asyncio.sleep(0.25)
    held_for = asyncio.get_running_loop().time() - squatted_at
    assert held_for < 6
    stream = await module_registry.stream(StreamId("squat"))
    assert stream is not None and stream.origin_node == "b"
