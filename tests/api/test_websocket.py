"""Ant Media WebSocket signalling against real node processes, with real aiortc peers.

Every command the SDK sends, every error a page reacts to, and the limits
(oversize, flood, idle), over real sockets to ``/{app}/websocket``; streams
published over the socket play over WHEP and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import websockets

from cluster.registry import Registry
from cluster.types import StreamId
from tests.support.antmedia import Signalling
from tests.support.nodes import NodeProcess, start_all
from tests.support.peers import Peers
from tests.support.waits import WAIT, eventually

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[NodeProcess]:
    workdir: Path = tmp_path_factory.mktemp("ws")
    started = NodeProcess(
        workdir, "ws-a", "eu", module_postgres_url, **{"websocket.idleTimeoutMs": "3000"}
    )
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture
async def sockets(node: NodeProcess) -> AsyncIterator[list[Signalling]]:
    opened: list[Signalling] = []
    yield opened
    for socket in reversed(opened):
        await socket.close()


async def _open(node: NodeProcess, opened: list[Signalling], **options: object) -> Signalling:
    socket = await Signalling.open(node.url, **options)  # type: ignore[arg-type]
    opened.append(socket)
    return socket


def _players(node: NodeProcess) -> int:
    metrics = node.get("/metrics").text
    line = next(line for line in metrics.splitlines() if line.startswith("tierstream_players "))
    return int(float(line.split()[1]))


def players_are(node: NodeProcess, count: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return await asyncio.to_thread(_players, node) == count

    return probe


async def test_publish_and_play_over_the_socket_with_every_notification(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    publishing = await _open(node, sockets)
    await publishing.publish("ws1")
    started = await publishing.expect("notification", "publish_started")
    assert started["streamId"] == "ws1"

    playing = await _open(node, sockets, target="edge")
    player = await playing.play("ws1")
    assert (await playing.expect("notification", "play_started"))["streamId"] == "ws1"
    async with asyncio.timeout(WAIT):
        await player.wait_for_frames("video", 10)

    await playing.send("getStreamInfo", streamId="ws1")
    info = (await playing.expect("streamInformation"))["streamInfo"][0]
    assert (info["streamWidth"], info["streamHeight"], info["videoCodec"]) == (640, 360, "VP8")
    assert info["videoBitrate"] > 0 and info["audioBitrate"] > 0  # measured: load varies
    await playing.send("getBroadcastObject", streamId="ws1")
    broadcast = json.loads((await playing.expect("notification", "broadcastObject"))["broadcast"])
    assert broadcast["status"] == "broadcasting" and broadcast["streamId"] == "ws1"
    await playing.send("getSubscriberCount", streamId="ws1")
    counted = await playing.expect("notification", "subscriberCount", timeout_s=WAIT)
    assert counted["count"] >= 0
    await playing.send("getIceServerConfig")
    assert (await playing.expect("iceServerConfig"))["stunServerUri"] == ""
    await playing.send("ping")
    await playing.expect("pong")

    await publishing.send("stop", streamId="ws1")
    assert (await publishing.expect("notification", "publish_finished"))["streamId"] == "ws1"
    assert (await playing.expect("notification", "play_finished"))["streamId"] == "ws1"


async def test_player_stop_ends_only_its_play(node: NodeProcess, sockets: list[Signalling]) -> None:
    publishing = await _open(node, sockets)
    await publishing.publish("ws2")
    await publishing.expect("notification", "publish_started")
    playing = await _open(node, sockets)
    await playing.play("ws2")
    await playing.expect("notification", "play_started")

    await playing.send("stop", streamId="ws2")

    await playing.expect("notification", "play_finished")
    await eventually(players_are(node, 0), "no player left")
    await publishing.send("getStreamInfo", streamId="ws2")
    await publishing.expect("streamInformation")
    assert not [m for m in publishing.received if m.get("definition") == "publish_finished"]


@pytest.mark.parametrize(
    ("message", "definition"),
    [
        ({"command": "play"}, "noStreamNameSpecified"),
        ({"command": "publish", "streamId": ""}, "noStreamNameSpecified"),
        ({"command": "publish", "streamId": "bad id!"}, "invalidStreamName"),
        ({"command": "play", "streamId": 42}, "invalidStreamName"),
        ({"command": "play", "streamId": "nobody-publishes-this"}, "no_stream_exist"),
        ({"command": "getStreamInfo", "streamId": "nobody-publishes-this"}, "no_stream_exist"),
        ({"command": "getBroadcastObject", "streamId": "nobody-publishes-this"}, "no_stream_exist"),
        (
            {"command": "takeConfiguration", "streamId": "x", "type": "offer", "sdp": "v=0"},
            "no_stream_exist",
        ),
        ({"command": "joinRoom", "room": "r", "streamId": "x"}, "unsupportedCommand"),
        ({"command": "sendPushNotification", "subscriberId": "x"}, "unsupportedCommand"),
        ({"command": "noSuchCommand"}, "unsupportedCommand"),
        ({"streamId": "x"}, "invalidMessage"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.get("command", "no command"),
)
async def test_each_bad_command_gets_its_error_and_the_socket_stays_usable(
    node: NodeProcess, sockets: list[Signalling], message: dict[str, object], definition: str
) -> None:
    socket = await _open(node, sockets)
    await socket.connection.send(json.dumps(message))
    error = await socket.expect("error")
    assert error["definition"] == definition, error
    if definition == "no_stream_exist" and message["command"] == "play":
        assert error["error_code"] == "404"
    if definition == "unsupportedCommand":
        assert str(message["command"]) in error["information"]
    await socket.send("ping")
    await socket.expect("pong")


async def test_text_that_is_not_json_is_an_error_not_a_drop(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    socket = await _open(node, sockets)
    await socket.connection.send("{not json")
    assert (await socket.expect("error"))["definition"] == "invalidMessage"
    await socket.connection.send(b"\x00binary")
    assert (await socket.expect("error"))["definition"] == "invalidMessage"
    await socket.send("ping")
    await socket.expect("pong")


async def test_publishing_twice_and_a_stream_live_elsewhere_are_refused(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    first = await _open(node, sockets)
    await first.publish("ws3")
    await first.send("publish", streamId="ws3")
    assert (await first.expect("error"))["definition"] == "already_publishing"
    other = await _open(node, sockets)
    await other.send("publish", streamId="ws3")
    assert (await other.expect("error"))["definition"] == "streamIdInUse"
    playing = await _open(node, sockets)
    await playing.play("ws3")
    await playing.send("play", streamId="ws3")
    assert (await playing.expect("error"))["definition"] == "already_playing"


async def test_an_unusable_offer_is_not_set_remote_description(
    node: NodeProcess, sockets: list[Signalling], module_registry: Registry
) -> None:
    socket = await _open(node, sockets)
    await socket.send("publish", streamId="ws4")
    await socket.expect("start")
    await socket.send("takeConfiguration", streamId="ws4", type="offer", sdp="v=0\r\nnonsense")
    assert (await socket.expect("error"))["definition"] == "notSetRemoteDescription"
    record = await module_registry.stream(StreamId("ws4"))
    assert record is None or record.state == "ended"
    await socket.send("publish", streamId="ws4")  # the socket and the stream id are free again
    await socket.expect("start")


async def test_socket_closed_mid_negotiation_leaves_nothing(
    node: NodeProcess, sockets: list[Signalling], module_registry: Registry
) -> None:
    publishing = await _open(node, sockets)
    await publishing.publish("ws5")
    await publishing.expect("notification", "publish_started")
    playing = await _open(node, sockets)
    await playing.send("play", streamId="ws5")
    await playing.expect("takeConfiguration")  # our offer; the answer never comes
    await eventually(players_are(node, 1), "one player")

    await playing.connection.close()
    await eventually(players_are(node, 0), "no player left")
    await publishing.connection.close()

    async def ended() -> bool:
        record = await module_registry.stream(StreamId("ws5"))
        return record is not None and record.state == "ended"

    await eventually(ended, "the stream ended in the registry")
    tree = await module_registry.relay_tree(StreamId("ws5"))
    assert tree is not None and not tree.pulls and not tree.secondary_origins


async def test_a_message_over_64_kib_closes_with_1009(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    socket = await _open(node, sockets, ping=False)
    await socket.send("ping", padding="x" * 70_000)
    code, reason = await socket.closed()
    assert code == 1009, reason
    assert not [m for m in socket.received if m["command"] == "pong"]


async def test_a_flood_is_throttled_then_closed_with_1008(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    socket = await _open(node, sockets, ping=False)
    with contextlib.suppress(websockets.ConnectionClosed):
        for _ in range(5000):
            await socket.send("ping")
    code, reason = await socket.closed()
    assert code == 1008 and "flood" in reason
    pongs = [m for m in socket.received if m["command"] == "pong"]
    assert 200 <= len(pongs) < 5000  # the burst is served, then the client is slowed down


async def test_a_silent_socket_is_closed_after_the_idle_timeout(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    socket = await _open(node, sockets, ping=False)
    code, reason = await socket.closed(timeout_s=6)
    assert code == 1001 and "no message" in reason


async def test_published_over_the_socket_plays_over_whep(
    node: NodeProcess, sockets: list[Signalling], peers: Peers
) -> None:
    socket = await _open(node, sockets)
    await socket.publish("ws6")
    await socket.expect("notification", "publish_started")
    over_whep = await peers.play(f"{node.url}/LiveApp/whep/ws6")
    await over_whep.frames(10)


async def test_published_over_whip_plays_over_the_socket(
    node: NodeProcess, sockets: list[Signalling], peers: Peers
) -> None:
    await peers.publish(f"{node.url}/LiveApp/whip/ws7")
    playing = await _open(node, sockets)
    player = await playing.play("ws7")
    await playing.expect("notification", "play_started")
    async with asyncio.timeout(WAIT):
        await player.wait_for_frames("video", 10)


async def test_draining_node_tells_its_sockets_server_will_stop(
    tmp_path: Path, module_postgres_url: str
) -> None:
    draining = NodeProcess(tmp_path, "ws-drain", "eu", module_postgres_url).start()
    try:
        socket = await Signalling.open(draining.url)
        try:
            assert draining.process is not None
            draining.process.terminate()
            await socket.expect("notification", "server_will_stop")
        finally:
            await socket.close()
    finally:
        draining.stop()


async def test_a_player_hears_play_finished_when_the_main_origin_stays_lost(
    tmp_path: Path, module_postgres_url: str, peers: Peers
) -> None:
    grace = {"cluster.originGraceMs": "1000"}
    origin = NodeProcess(tmp_path, "ws-origin", "eu", module_postgres_url, **grace)
    edge = NodeProcess(tmp_path, "ws-edge", "eu", module_postgres_url, **grace)
    start_all([origin, edge])
    try:
        await peers.publish(f"{origin.url}/LiveApp/whip/ws8")
        socket = await Signalling.open(edge.url)
        try:
            player = await socket.play("ws8")
            await socket.expect("notification", "play_started")
            async with asyncio.timeout(WAIT):
                await player.wait_for_frames("video", 5)
            origin.kill()
            finished = await socket.expect("notification", "play_finished", timeout_s=15)
            assert finished["streamId"] == "ws8"
        finally:
            await socket.close()
    finally:
        origin.stop()
        edge.stop()


async def test_a_socket_publishes_and_plays_a_bounded_number_of_streams(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    socket = await _open(node, sockets)
    for number in range(16):
        await socket.send("publish", streamId=f"many{number}")
        await socket.expect("start")
    await socket.send("publish", streamId="many16")
    error = await socket.expect("error")
    assert error["definition"] == "tooManyStreamsOnThisConnection", error
    await socket.send("stop", streamId="many0")
    await socket.expect("notification", "publish_finished")
    await socket.send("publish", streamId="many16")
    await socket.expect("start")


async def test_bad_candidates_are_errors_and_the_session_goes_on(
    node: NodeProcess, sockets: list[Signalling]
) -> None:
    publishing = await _open(node, sockets)
    await publishing.publish("ws9")
    await publishing.expect("notification", "publish_started")
    await publishing.send("takeCandidate", streamId="ws9", label=0, id="0", candidate="nonsense")
    assert (await publishing.expect("error"))["definition"] == "missingParameter"
    await publishing.send(
        "takeCandidate", streamId="ws9", label=0, id="0", candidate="candidate:1 x y"
    )
    assert (await publishing.expect("error"))["definition"] == "notSetRemoteDescription"
    await publishing.send(
        "takeCandidate", streamId="ws9", label=0, id="0",
        candidate="candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0",
    )  # fmt: skip
    await publishing.send("getStreamInfo", streamId="ws9")
    await publishing.expect("streamInformation")
    assert not [m for m in publishing.received if m.get("definition") == "publish_finished"]


async def test_a_publisher_gone_between_start_and_offer_leaves_nothing(
    node: NodeProcess, sockets: list[Signalling], module_registry: Registry
) -> None:
    socket = await _open(node, sockets)
    await socket.send("publish", streamId="ws10")
    await socket.expect("start")
    await socket.connection.close()

    again = await _open(node, sockets)
    await again.publish("ws10")  # the id was never claimed
    await again.expect("notification", "publish_started")
    record = await module_registry.stream(StreamId("ws10"))
    assert record is not None and record.origin_node == "ws-a"
