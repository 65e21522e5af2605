"""Stream security on every entry point (WHIP, WHEP, WebSocket), on real node processes.

JWT stream tokens (valid, expired, wrong stream, wrong type), one-time tokens
(spent once, refused on another node), the publish webhook (allow, deny,
timeout) against a real HTTP server on 127.0.0.1, and the wall between cluster
tokens and stream tokens.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from cluster.registry.migrate import migrate
from cluster.streams.whip_client import WhipClient
from cluster.tokens import sign_pull_token, sign_stream_token
from cluster.types import NodeId, SessionKind
from media.contrib.client import Player, Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from tests.support.antmedia import Signalling
from tests.support.local_http import local_http
from tests.support.nodes import ADMIN_TOKEN, CLUSTER_SECRET, NodeProcess, start_all
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres
KEY = "jwt-stream-secret-for-tests-0123456789"
ENTRIES = ["whip", "websocket"]
PLAY_ENTRIES = ["whep", "websocket"]


class _Webhook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stream_id = body["streamId"]
        if stream_id.startswith("slow"):
            time.sleep(2.0)
        self.send_response(200 if stream_id.startswith("allow") else 403)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    with local_http(_Webhook) as url:
        yield f"{url}/auth"


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, webhook: str
) -> Iterator[list[NodeProcess]]:
    url = asyncio.run(postgres_server.create_database(f"security_{os.getpid()}"))
    asyncio.run(migrate(url))
    apps = {
        "app.Jwt.publishJwtControlEnabled": "true",
        "app.Jwt.playJwtControlEnabled": "true",
        "app.Jwt.jwtStreamSecretKey": KEY,
        "app.Once.publishTokenControlEnabled": "true",
        "app.Once.playTokenControlEnabled": "true",
        "app.Hooked.webhookAuthenticateURL": webhook,
        "app.Hooked.webhookAuthenticateTimeoutMs": "500",
    }
    workdir: Path = tmp_path_factory.mktemp("security")
    started = [NodeProcess(workdir, name, "eu", url, **apps) for name in ("sec-a", "sec-b")]
    try:
        start_all(started)
        yield started
    finally:
        for node in started:
            node.stop()


Opened = list[Publisher | Player | WhipClient | Signalling]


@pytest.fixture
async def opened() -> AsyncIterator[Opened]:
    items: Opened = []
    yield items
    for item in reversed(items):
        await item.close()


def _jwt(stream_id: str, kind: SessionKind, expires_in_s: int = 60) -> str:
    return sign_stream_token(KEY, stream_id, kind, int(time.time()) + expires_in_s)


async def _publish(
    entry: str, node: NodeProcess, app: str, stream_id: str, token: str, opened: Opened
) -> str:
    """'ok', or the refusal: an HTTP status or an Ant Media error definition."""
    if entry == "websocket":
        socket = await Signalling.open(node.url, app)
        opened.append(socket)
        await socket.send("publish", streamId=stream_id, token=token)
        async with asyncio.timeout(10):
            while True:
                await asyncio.sleep(0.05)
                for message in socket.received:
                    if message["command"] == "start":
                        return "ok"
                    if message["command"] == "error":
                        return str(message["definition"])
    publisher = Publisher([SyntheticVideoTrack(VideoSettings()), SyntheticAudioTrack()])
    client = WhipClient(f"{node.url}/{app}/whip/{stream_id}", token or None)
    opened += [publisher, client]
    try:
        await publisher.start(client.exchange)
    except Exception as error:
        return str(getattr(error, "status", error))
    return "ok"


async def _play(
    entry: str, node: NodeProcess, app: str, stream_id: str, token: str, opened: Opened
) -> str:
    if entry == "websocket":
        socket = await Signalling.open(node.url, app)
        opened.append(socket)
        await socket.send("play", streamId=stream_id, token=token)
        async with asyncio.timeout(10):
            while True:
                await asyncio.sleep(0.05)
                for message in socket.received:
                    if message["command"] == "takeConfiguration":
                        return "ok"
                    if message["command"] == "error":
                        return str(message["definition"])
    player = Player()
    client = WhipClient(f"{node.url}/{app}/whep/{stream_id}", token or None)
    opened += [player, client]
    try:
        await player.play(client.exchange)
    except Exception as error:
        return str(getattr(error, "status", error))
    return "ok"


REFUSED = {"401", "403", "unauthorized_access"}


@pytest.mark.parametrize("entry", ENTRIES)
async def test_jwt_publish_tokens(entry: str, nodes: list[NodeProcess], opened: Opened) -> None:
    node = nodes[0]
    assert await _publish(entry, node, "Jwt", f"j-none-{entry}", "", opened) in REFUSED
    assert (
        await _publish(
            entry, node, "Jwt", f"j-exp-{entry}", _jwt(f"j-exp-{entry}", "publish", -60), opened
        )
        in REFUSED
    )
    assert (
        await _publish(entry, node, "Jwt", f"j-other-{entry}", _jwt("another", "publish"), opened)
        in REFUSED
    )
    assert (
        await _publish(
            entry, node, "Jwt", f"j-type-{entry}", _jwt(f"j-type-{entry}", "play"), opened
        )
        in REFUSED
    )
    pull = sign_pull_token(CLUSTER_SECRET, NodeId("sec-b"), f"j-cl-{entry}")
    assert await _publish(entry, node, "Jwt", f"j-cl-{entry}", pull, opened) in REFUSED
    assert (
        await _publish(
            entry, node, "Jwt", f"j-ok-{entry}", _jwt(f"j-ok-{entry}", "publish"), opened
        )
        == "ok"
    )


@pytest.mark.parametrize("entry", PLAY_ENTRIES)
async def test_jwt_play_tokens(entry: str, nodes: list[NodeProcess], opened: Opened) -> None:
    node = nodes[0]
    stream = f"jp-{entry}"
    assert await _publish("whip", node, "Jwt", stream, _jwt(stream, "publish"), opened) == "ok"
    assert await _play(entry, node, "Jwt", stream, "", opened) in REFUSED
    assert await _play(entry, node, "Jwt", stream, _jwt(stream, "play", -60), opened) in REFUSED
    assert await _play(entry, node, "Jwt", stream, _jwt("another", "play"), opened) in REFUSED
    assert await _play(entry, node, "Jwt", stream, _jwt(stream, "publish"), opened) in REFUSED
    pull = sign_pull_token(CLUSTER_SECRET, NodeId("sec-b"), stream)
    assert await _play(entry, node, "Jwt", stream, pull, opened) in REFUSED
    assert await _play(entry, node, "Jwt", stream, _jwt(stream, "play"), opened) == "ok"


async def test_whip_and_whep_take_the_token_in_the_query_too(
    nodes: list[NodeProcess], opened: Opened
) -> None:
    node = nodes[0]
    publisher = Publisher([SyntheticVideoTrack(VideoSettings()), SyntheticAudioTrack()])
    whip = WhipClient(f"{node.url}/Jwt/whip/jq?token={_jwt('jq', 'publish')}")
    opened += [publisher, whip]
    await publisher.start(whip.exchange)
    player = Player()
    whep = WhipClient(f"{node.url}/Jwt/whep/jq?token={_jwt('jq', 'play')}")
    opened += [player, whep]
    await player.play(whep.exchange)


def _one_time(
    node: NodeProcess, app: str, stream_id: str, kind: str, expires_in_s: int = 60
) -> str:
    reply = httpx.get(
        f"{node.url}/{app}/rest/v2/broadcasts/{stream_id}/token",
        params={"expireDate": int(time.time()) + expires_in_s, "type": kind},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5,
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["tokenId"])


def test_one_time_tokens_need_the_admin_and_a_future_expiry(nodes: list[NodeProcess]) -> None:
    url = f"{nodes[0].url}/Once/rest/v2/broadcasts/s/token"
    assert (
        httpx.get(url, params={"expireDate": int(time.time()) + 60, "type": "play"}).status_code
        == 401
    )
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    past = httpx.get(url, params={"expireDate": 1, "type": "play"}, headers=admin)
    assert past.status_code == 400
    bad_type = httpx.get(
        url, params={"expireDate": int(time.time()) + 60, "type": "x"}, headers=admin
    )
    assert bad_type.status_code == 400


@pytest.mark.parametrize("entry", ENTRIES)
async def test_one_time_publish_token_works_once_on_any_node(
    entry: str,
    nodes: list[NodeProcess],
    opened: Opened,
) -> None:
    a, b = nodes
    stream = f"o-{entry}"
    token = _one_time(a, "Once", stream, "publish")
    assert await _publish(entry, b, "Once", f"o-wrong-{entry}", token, opened) in REFUSED
    assert await _publish(entry, b, "Once", stream, token, opened) == "ok"
    assert await _publish(entry, a, "Once", stream + "x", token, opened) in REFUSED
    for item in reversed(opened):
        await item.close()
    opened.clear()
    assert await _publish(entry, a, "Once", stream, token, opened) in REFUSED  # spent on b


@pytest.mark.parametrize("entry", PLAY_ENTRIES)
async def test_one_time_play_token_is_refused_when_reused_on_another_node(
    entry: str,
    nodes: list[NodeProcess],
    opened: Opened,
) -> None:
    a, b = nodes
    stream = f"op-{entry}"
    assert (
        await _publish("whip", a, "Once", stream, _one_time(a, "Once", stream, "publish"), opened)
        == "ok"
    )
    token = _one_time(b, "Once", stream, "play")
    expiring = _one_time(a, "Once", stream, "play", expires_in_s=2)
    await asyncio.sleep(3)
    assert await _play(entry, a, "Once", stream, expiring, opened) in REFUSED
    assert await _play(entry, a, "Once", stream, token, opened) == "ok"
    assert await _play(entry, b, "Once", stream, token, opened) in REFUSED


@pytest.mark.parametrize("entry", ENTRIES)
async def test_publish_webhook_allows_denies_and_times_out(
    entry: str,
    nodes: list[NodeProcess],
    opened: Opened,
) -> None:
    node = nodes[0]
    assert await _publish(entry, node, "Hooked", f"allow-{entry}", "", opened) == "ok"
    assert await _publish(entry, node, "Hooked", f"deny-{entry}", "", opened) in REFUSED
    started = time.monotonic()
    assert await _publish(entry, node, "Hooked", f"slow-{entry}", "", opened) in REFUSED
    assert time.monotonic() - started < 2.0


async def test_stream_token_never_opens_the_internal_pull_path(nodes: list[NodeProcess]) -> None:
    url = f"{nodes[0].url}/internal/v1/Jwt/pull/anything"
    headers = {
        "Authorization": f"Bearer {_jwt('anything', 'play')}",
        "Content-Type": "application/sdp",
    }
    async with httpx.AsyncClient() as http:
        reply = await http.post(url, content="v=0\r\n", headers=headers, timeout=5)
    assert reply.status_code == 401
