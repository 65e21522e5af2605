"""Node-to-node pulls and failover: a lost upstream costs players a short gap, nothing more.

Continuity rule checked across a switch of upstream, per track, on the RTP
headers the player receives: the first packet after the switch has the next
sequence number (+1, modulo 2^16) on the same SSRC, and its timestamp advances
by the wall-clock time between the two packets' arrivals, to within 0.5 s of
the track's clock (45 000 ticks at 90 kHz); the first video frame after the
switch is a keyframe; the player's session is never renegotiated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection

from media import aiortc_seam, codecs
from media.engine import MediaEngine
from media.errors import CodecMismatch, UnknownStream
from media.types import Exchange
from tests.media.conftest import EngineFactory, Events, OfferFactory, Publish, Watch
from tests.support import REPO
from tests.support.waits import WAIT

CONTINUITY_S = 0.5  # how far a timestamp may stray from the wall clock across a switch


@dataclass(frozen=True)
class Packet:
    """The clear RTP header fields of one packet a player received, and when."""

    arrived: float
    ssrc: int
    seq: int
    timestamp: int


def record_rtp(pc: RTCPeerConnection) -> list[Packet]:
    """Every RTP packet ``pc`` receives from now on, read off the socket (and still delivered)."""
    packets: list[Packet] = []

    def arrived(data: bytes) -> None:
        seq, timestamp, ssrc = struct.unpack_from("!HII", data, 2)
        packets.append(Packet(time.monotonic(), ssrc, seq, timestamp))

    aiortc_seam.count_rtp(pc, arrived, consume=False)
    return packets


def assert_continuous(
    pc: RTCPeerConnection, packets: list[Packet], switched_at: float, kind: str, clock: int
) -> int:
    """The continuity rule (module docstring) for one track across the switch at
    ``switched_at``; returns the timestamp advance across it."""
    receiver = next(t.receiver for t in pc.getTransceivers() if t.kind == kind)
    ssrcs = {source.source for source in receiver.getSynchronizationSources()}
    assert len(ssrcs) == 1, f"{kind}: one SSRC throughout, got {ssrcs}"
    track = [p for p in packets if p.ssrc in ssrcs]
    last = [p for p in track if p.arrived < switched_at][-1]
    first = next(p for p in track if p.arrived >= switched_at)
    assert (first.seq - last.seq) % 0x10000 == 1, (kind, last, first)
    advance = (first.timestamp - last.timestamp) % 0x1_0000_0000
    gap = first.arrived - last.arrived
    assert abs(advance / clock - gap) <= CONTINUITY_S, f"{kind}: {advance} ticks in {gap:.3f} s"
    return advance


def downstream_to(engine: MediaEngine, stream_id: str, downstream_ids: list[str]) -> Exchange:
    """An in-process internal WHEP exchange: a downstream session on ``engine``, its id kept."""

    async def exchange(offer: str) -> str:
        answer = await engine.play(stream_id, offer, downstream=True)
        downstream_ids.append(answer.session_id)
        return answer.sdp

    return exchange


async def pull_from(upstream: MediaEngine, edge: MediaEngine, stream_id: str = "s1") -> list[str]:
    """``edge`` pulls ``stream_id`` from ``upstream``; the ids of its downstream sessions there."""
    downstream_ids: list[str] = []
    exchange = downstream_to(upstream, stream_id, downstream_ids)
    await asyncio.wait_for(edge.pull(stream_id, exchange), WAIT)
    return downstream_ids


async def test_a_downstream_is_counted_as_a_downstream_not_a_player(
    make_engine: EngineFactory, events: Events, publish: Publish, watch: Watch
) -> None:
    engine = make_engine()
    await publish(engine)
    player, downstream = await watch(engine), await watch(engine, downstream=True)
    await player.frames("video", 5)
    await downstream.frames("video", 5)

    stats = engine.stats()
    assert (stats.players, stats.downstreams, stats.players_per_stream) == (1, 1, (("s1", 1),))
    assert (engine.players("s1"), engine.downstreams("s1")) == (1, 1)
    assert (engine.players("nope"), engine.downstreams("nope")) == (0, 0)

    await engine.close_session(downstream.session_id)
    assert (engine.players("s1"), engine.downstreams("s1"), engine.stats().downstreams) == (1, 0, 0)
    changes = [event for event in events.history if event[0] == "players_changed"]
    assert changes == [("players_changed", "s1", 1)], "downstreams do not change the player count"


async def test_a_lost_pull_holds_the_player_and_a_new_pull_continues_its_rtp(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, middle, edge_events = make_engine(), make_engine(), Events()
    edge = make_engine(edge_events)
    await publish(origin)
    downstreams_on_origin: list[str] = []
    first_pull = await asyncio.wait_for(
        edge.pull("s1", downstream_to(origin, "s1", downstreams_on_origin)), WAIT
    )
    watching = await watch(edge, keep_frames=True)
    pc = watching.player.pc
    packets = record_rtp(pc)
    await watching.frames("video", 20)
    negotiated = pc.remoteDescription.sdp

    await origin.close_session(downstreams_on_origin[0])  # the upstream drops us
    await edge_events.wait_for("upstream_lost", "s1")
    await asyncio.sleep(0.5)
    assert pc.connectionState == "connected" and not watching.player.ended.is_set()
    assert edge.has_stream("s1") and edge.players("s1") == 1 and edge.stats().pulls == 0
    frames = watching.player.tracks["video"].frames
    switched_at = time.monotonic()

    # the new upstream is a node that itself pulls from the origin
    await asyncio.wait_for(
        middle.pull("s1", downstream_to(origin, "s1", downstreams_on_origin)), WAIT
    )
    second_pull = await asyncio.wait_for(edge.pull("s1", downstream_to(middle, "s1", [])), WAIT)
    video = await watching.frames("video", frames + 20)
    await watching.frames("audio", watching.player.tracks["audio"].frames + 10)

    assert pc.remoteDescription.sdp == negotiated and pc.signalingState == "stable"
    advance = assert_continuous(pc, packets, switched_at, "video", 90_000)
    assert_continuous(pc, packets, switched_at, "audio", 48_000)
    # the receiver completes a frame only when the next one starts, so the last frame
    # before the switch may arrive after it: find the switch by its timestamp step
    steps = [b - a for a, b in itertools.pairwise(video.timestamps)]
    assert codecs.is_keyframe("video/VP8", video.kept[steps.index(advance) + 1])
    started = ("stream_started", "s1", ("video/VP8", "audio/opus"))
    assert sorted(map(str, edge_events.history[:2])) == sorted(
        map(str, [started, ("players_changed", "s1", 1)])
    )
    assert edge_events.history[2:] == [
        ("session_ended", first_pull),
        ("upstream_lost", "s1"),
        started,
    ]
    assert edge.stats().pulls == 1 and second_pull != first_pull


async def test_pulling_a_stream_that_has_a_live_pull_replaces_it_quietly(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, edge_events = make_engine(), Events()
    edge = make_engine(edge_events)
    await publish(origin)
    first_pull = await asyncio.wait_for(edge.pull("s1", downstream_to(origin, "s1", [])), WAIT)
    watching = await watch(edge)
    await watching.frames("video", 10)

    await asyncio.wait_for(edge.pull("s1", downstream_to(origin, "s1", [])), WAIT)
    await watching.frames("video", watching.player.tracks["video"].frames + 20)

    assert ("session_ended", first_pull) in edge_events.history
    assert ("upstream_lost", "s1") not in edge_events.history
    assert edge.stats().pulls == 1 and origin.stats().downstreams == 1


@contextlib.asynccontextmanager
async def origin_in_process() -> AsyncIterator[tuple[asyncio.subprocess.Process, Exchange]]:
    """An origin node in its own process (``tests.media.origin_process``), and the exchange
    that pulls ``s1`` from it; killed by its PID at the end."""
    origin = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.media.origin_process",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stdin, stdout = origin.stdin, origin.stdout
    assert stdin is not None and stdout is not None

    async def exchange(offer: str) -> str:
        stdin.write(json.dumps({"offer": offer}).encode() + b"\n")
        await stdin.drain()
        return str(json.loads(await asyncio.wait_for(stdout.readline(), WAIT))["answer"])

    try:
        assert json.loads(await asyncio.wait_for(stdout.readline(), WAIT))["ready"]
        yield origin, exchange
    finally:
        if origin.returncode is None:
            origin.kill()
        await asyncio.wait_for(origin.wait(), WAIT)


async def test_a_frozen_upstream_is_lost_after_the_silence_interval(
    make_engine: EngineFactory, watch: Watch
) -> None:
    edge_events = Events()
    edge = make_engine(edge_events, upstream_silence_s=1.0)
    async with origin_in_process() as (origin, exchange):
        pull_id = await asyncio.wait_for(edge.pull("s1", exchange), WAIT)
        watching = await watch(edge)
        await watching.frames("video", 10)

        os.kill(origin.pid, signal.SIGSTOP)  # a frozen node sends nothing at all
        frozen_at = time.monotonic()
        await edge_events.wait_for("upstream_lost", "s1")
        waited = time.monotonic() - frozen_at

    assert 0.9 <= waited <= 1.0 + 1.0, f"lost after {waited:.2f} s of silence"
    assert ("session_ended", pull_id) in edge_events.history
    assert edge.has_stream("s1") and edge.players("s1") == 1
    assert watching.player.pc.connectionState == "connected"


async def test_a_killed_upstream_is_lost_when_its_port_refuses_without_waiting_for_silence(
    make_engine: EngineFactory, watch: Watch, caplog: pytest.LogCaptureFixture
) -> None:
    edge_events = Events()
    edge = make_engine(edge_events, upstream_silence_s=60.0)  # silence cannot be what ends it
    async with origin_in_process() as (origin, exchange):
        await asyncio.wait_for(edge.pull("s1", exchange), WAIT)
        watching = await watch(edge)
        await watching.frames("video", 10)

        with caplog.at_level(logging.INFO, logger="media.sessions"):
            origin.kill()  # SIGKILL: its host is up, its sockets are gone
            await edge_events.wait_for("upstream_lost", "s1")

    assert any("its address refuses packets (port unreachable)" in m for m in caplog.messages)
    assert edge.has_stream("s1") and edge.players("s1") == 1
    assert watching.player.pc.connectionState == "connected"


async def test_a_pull_sends_its_upstream_a_keepalive_each_interval(
    make_engine: EngineFactory, publish: Publish
) -> None:
    origin, edge = make_engine(), make_engine(keepalive_interval_s=0.05)
    await publish(origin)
    downstream_id = (await pull_from(origin, edge))[0]
    downstream = origin._sessions[downstream_id]  # the origin's side of the pull

    async def received() -> int:
        stats = await downstream.pc.getStats()
        return sum(s.packetsReceived for s in stats.values() if s.type == "transport")

    await asyncio.sleep(0.5)
    before = await received()
    await asyncio.sleep(2.0)
    # 40 keepalives in 2 s; without them, a receiver report per track each 0.5-1.5 s (at most 8)
    assert await received() - before >= 16


async def test_a_held_upstream_keeps_its_downstream_nodes_waiting_quietly(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, middle_events, edge_events = make_engine(), Events(), Events()
    middle, edge = make_engine(middle_events), make_engine(edge_events)  # 0.6 s of silence
    await publish(origin)
    downstreams_on_origin = await pull_from(origin, middle)
    await asyncio.wait_for(edge.pull("s1", downstream_to(middle, "s1", [])), WAIT)
    watching = await watch(edge)
    await watching.frames("video", 5)

    await origin.close_session(downstreams_on_origin[0])
    await middle_events.wait_for("upstream_lost", "s1")
    await asyncio.sleep(2.5)  # past the edge's silence interval, without media

    assert ("upstream_lost", "s1") not in edge_events.history, "its keepalives still come"
    await asyncio.wait_for(middle.pull("s1", downstream_to(origin, "s1", [])), WAIT)
    await watching.frames("video", watching.player.tracks["video"].frames + 10)
    assert edge.stats().pulls == 1 and middle.downstreams("s1") == 1


async def test_ending_a_held_stream_ends_its_players_and_downstreams(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, edge_events = make_engine(), Events()
    edge = make_engine(edge_events)
    await publish(origin)
    downstreams_on_origin = await pull_from(origin, edge)
    player, downstream = await watch(edge), await watch(edge, downstream=True)
    await player.frames("video", 5)
    await origin.close_session(downstreams_on_origin[0])
    await edge_events.wait_for("upstream_lost", "s1")

    await edge.end_stream("s1")

    assert edge_events.history[-3:] == [
        ("session_ended", player.session_id),
        ("session_ended", downstream.session_id),
        ("stream_ended", "s1"),
    ]
    assert not edge.has_stream("s1")
    stats = edge.stats()
    assert (stats.players, stats.downstreams, stats.pulls) == (0, 0, 0)
    for watching in (player, downstream):
        await asyncio.wait_for(watching.player.ended.wait(), WAIT)
    with pytest.raises(UnknownStream):
        await edge.end_stream("s1")


async def test_a_new_upstream_with_other_codecs_is_refused_and_the_stream_stays_held(
    make_engine: EngineFactory, publish: Publish, watch: Watch, offer: OfferFactory
) -> None:
    origin, edge_events = make_engine(), Events()
    edge = make_engine(edge_events)
    await publish(origin, "s1", mime_type="video/VP8")
    await publish(origin, "s2", mime_type="video/H264")
    downstreams_on_origin = await pull_from(origin, edge)
    watching = await watch(edge)
    await watching.frames("video", 5)
    await origin.close_session(downstreams_on_origin[0])
    await edge_events.wait_for("upstream_lost", "s1")

    with pytest.raises(CodecMismatch) as raised:
        await asyncio.wait_for(
            edge.pull("s1", downstream_to(origin, "s2", downstreams_on_origin)), WAIT
        )
    with pytest.raises(CodecMismatch):
        await edge.publish("s1", await offer(direction="sendonly", video="video/H264"))

    assert raised.value.wanted == ("video/VP8", "audio/opus")
    assert raised.value.offered == ("video/H264", "audio/opus")
    assert edge.has_stream("s1") and edge.stream_codecs("s1") == ("video/VP8", "audio/opus")
    assert edge.players("s1") == 1 and edge.stats().pulls == 0
    assert edge_events.history.count(("upstream_lost", "s1")) == 1
    assert watching.player.pc.connectionState == "connected"


async def test_a_publisher_takes_a_held_stream_over_and_its_players_continue(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, edge_events = make_engine(), Events()
    edge = make_engine(edge_events)
    await publish(origin)
    downstreams_on_origin = await pull_from(origin, edge)
    watching = await watch(edge)
    await watching.frames("video", 5)
    await origin.close_session(downstreams_on_origin[0])
    await edge_events.wait_for("upstream_lost", "s1")
    held_at = watching.player.tracks["video"].frames

    republished = await publish(edge)

    await watching.frames("video", held_at + 10)
    assert watching.player.pc.connectionState == "connected", "the player was never renegotiated"
    stats = edge.stats()
    assert (stats.publishers, stats.pulls, stats.players) == (1, 0, 1)
    assert ("stream_ended", "s1") not in edge_events.history
    await edge.close_session(republished.session_id)
    await asyncio.wait_for(watching.player.ended.wait(), WAIT)
    assert ("stream_ended", "s1") in edge_events.history, "the new publisher owns the stream"


async def test_a_publisher_takes_over_a_stream_whose_pull_is_live(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, edge = make_engine(), make_engine(Events())
    await publish(origin)
    await asyncio.wait_for(edge.pull("s1", downstream_to(origin, "s1", [])), WAIT)
    watching = await watch(edge)
    await watching.frames("video", 5)

    await publish(edge)

    stats = edge.stats()
    assert (stats.publishers, stats.pulls) == (1, 0)
    await watching.frames("video", watching.player.tracks["video"].frames + 10)
