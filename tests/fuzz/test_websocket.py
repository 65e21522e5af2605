"""Ant Media WebSocket messages, fuzzed against the real node process.

Each example opens a socket, sends a few messages (any text, any JSON, and the
SDK's commands with hostile fields, mutated offers to publish and mutated
answers to the node's offer for the live stream), then ``ping``: the ``pong``
must come, on a socket still open, after replies that are all JSON objects
with a command, and no ``server_error_check_logs``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
from aiortc import RTCSessionDescription
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from cluster.api import antmedia_messages as msg
from cluster.types import APP_NAME_PATTERN
from media import ice
from tests.fuzz.conftest import LIVE_STREAM
from tests.support.fuzz import (
    HOSTILE_TEXT,
    JSON,
    Samples,
    assert_clean_log,
    budget,
    candidate_lines,
    dumps,
    mutated,
)
from tests.support.nodes import NodeProcess
from tests.support.peers import PublisherProcess
from tests.support.waits import WAIT

COMMANDS = [
    msg.PUBLISH,
    msg.PLAY,
    msg.TAKE_CONFIGURATION,
    msg.TAKE_CANDIDATE,
    msg.STOP,
    msg.PING,
    msg.GET_STREAM_INFO,
    msg.GET_ICE_SERVER_CONFIG,
    msg.GET_BROADCAST_OBJECT,
    msg.GET_SUBSCRIBER_COUNT,
    "joinRoom",
    "",
]
numbers = itertools.count()


def socket_url(node: NodeProcess, app: str = "LiveApp") -> str:
    return node.url.replace("http://", "ws://") + f"/{app}/websocket"


def receive(socket: ClientConnection) -> dict[str, Any]:
    reply = json.loads(socket.recv(timeout=WAIT))
    assert isinstance(reply, dict) and isinstance(reply.get("command"), str), reply
    return reply


async def _answer(offer: str) -> str:
    pc = ice.peer_connection(())
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        return await ice.describe(pc, "answer", ("127.0.0.1",))
    finally:
        await pc.close()


@pytest.fixture(scope="module")
def answers(fuzz_node: NodeProcess, live: PublisherProcess) -> Samples:
    """A real answer (aiortc's) to the node's offer for the live stream, to mutate."""
    with connect(socket_url(fuzz_node), open_timeout=WAIT) as socket:
        socket.send(dumps({"command": msg.PLAY, "streamId": LIVE_STREAM}))
        offer = receive(socket)
        assert offer["command"] == "takeConfiguration", offer
        with ThreadPoolExecutor(1) as thread:  # aiortc on a loop of its own, as in conftest
            return Samples([thread.submit(asyncio.run, _answer(offer["sdp"])).result()])


def messages(offers: Sequence[str], answers: Sequence[str]) -> st.SearchStrategy[list[str]]:
    stream_ids = st.one_of(
        st.sampled_from([LIVE_STREAM, "fuzz-ws"]),
        st.builds(lambda: f"fuzz-ws-{next(numbers)}"),
        HOSTILE_TEXT,
        JSON,
    )
    command = st.fixed_dictionaries(
        {"command": st.sampled_from(COMMANDS) | HOSTILE_TEXT},
        optional={
            "streamId": stream_ids,
            "token": HOSTILE_TEXT | JSON,
            "type": st.sampled_from(["offer", "answer", "pranswer"]) | JSON,
            "sdp": mutated(offers) | mutated(answers) | JSON,
            "candidate": candidate_lines() | JSON,
            "id": st.sampled_from(["0", "1", "9"]) | JSON,
            "label": st.integers(-1, 3) | JSON,
        },
    )
    publish = st.builds(
        lambda stream, offer: [
            {"command": msg.PUBLISH, "streamId": stream},
            {"command": msg.TAKE_CONFIGURATION, "streamId": stream, "type": "offer", "sdp": offer},
        ],
        st.builds(lambda: f"fuzz-ws-{next(numbers)}"),
        mutated(offers),
    )
    play = st.builds(
        lambda answer: [
            {"command": msg.PLAY, "streamId": LIVE_STREAM},
            {"command": msg.TAKE_CONFIGURATION, "streamId": LIVE_STREAM, "type": "answer",
             "sdp": answer},
        ],
        mutated(answers),
    )  # fmt: skip
    frames = st.one_of(
        st.lists(command, min_size=1, max_size=4),
        publish,
        play,
    ).map(lambda sent: [dumps(message) for message in sent])
    return st.one_of(frames, st.lists(HOSTILE_TEXT | JSON.map(dumps), min_size=1, max_size=3))


def test_signalling_messages_are_answered_or_refused_and_the_socket_stays_usable(
    fuzz_node: NodeProcess, offers: Sequence[str], answers: Samples, live: PublisherProcess
) -> None:
    @budget(30)
    @given(messages(offers, answers))
    def check(sent: list[str]) -> None:
        with connect(socket_url(fuzz_node), open_timeout=WAIT) as socket:
            for text in sent:
                socket.send(text)
            socket.send(dumps({"command": msg.PING}))
            while (reply := receive(socket))["command"] != "pong":
                if reply["command"] == "error":
                    assert reply["definition"] != msg.SERVER_ERROR, reply
                    assert isinstance(reply["definition"], str) and reply["definition"], reply

    check()
    assert live.connected, live.text()
    assert_clean_log(fuzz_node)


def test_a_socket_under_a_bad_app_name_is_refused_with_a_reason(fuzz_node: NodeProcess) -> None:
    @budget(15)
    @given(st.one_of(HOSTILE_TEXT, st.sampled_from(["LiveApp", "x" * 65, "a b", "", ".."])))
    def check(app: str) -> None:
        try:
            socket = connect(socket_url(fuzz_node, quote(app, safe="")), open_timeout=WAIT)
        except InvalidStatus as refused:  # no such route: the handshake is refused
            assert refused.response.status_code < 500, refused
            return
        with socket:
            socket.send(dumps({"command": msg.PING}))
            try:
                assert receive(socket)["command"] == "pong"
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1008, closed
                assert closed.rcvd.reason, "the close says why"
            else:
                assert APP_NAME_PATTERN.fullmatch(app), f"{app!r} is not an app name"

    check()
    assert_clean_log(fuzz_node)
