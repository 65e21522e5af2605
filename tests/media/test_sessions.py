"""Session lifecycles: who ends when, and what the control plane hears."""

from __future__ import annotations

import asyncio

from media.contrib.client import Player
from media.engine import MediaEngine
from tests.media.conftest import EngineFactory, Events, OfferFactory, Publish, Watch
from tests.support.waits import WAIT


async def test_publisher_leaving_ends_its_player_and_the_stream(
    engine: MediaEngine, events: Events, publish: Publish, watch: Watch
) -> None:
    published = await publish(engine)
    watchers = [await watch(engine) for _ in range(2)]
    for watching in watchers:
        await watching.frames("video", 5)

    await published.publisher.close()

    await events.wait_for("stream_ended", "s1")
    for watching in watchers:
        assert ("session_ended", watching.session_id) in events.history
        await asyncio.wait_for(watching.player.ended.wait(), WAIT)
    assert ("session_ended", published.session_id) in events.history
    assert not engine.has_stream("s1")
    assert engine.stats().players == 0


async def test_closing_a_player_session_ends_that_player_only(
    engine: MediaEngine, events: Events, publish: Publish, watch: Watch
) -> None:
    await publish(engine)
    leaving, staying = await watch(engine), await watch(engine)
    await staying.frames("video", 5)

    await engine.close_session(leaving.session_id)

    await asyncio.wait_for(leaving.player.ended.wait(), WAIT)
    seen = staying.player.tracks["video"].frames
    await staying.frames("video", seen + 10)
    assert events.history[-2:] == [
        ("players_changed", "s1", 1),
        ("session_ended", leaving.session_id),
    ]
    assert engine.stats().players_per_stream == (("s1", 1),)


async def test_closing_the_publisher_session_ends_the_stream(
    engine: MediaEngine, events: Events, publish: Publish, watch: Watch
) -> None:
    published = await publish(engine)
    watching = await watch(engine)
    await watching.frames("video", 1)

    await engine.close_session(published.session_id)

    assert events.history[-3:] == [
        ("session_ended", watching.session_id),
        ("session_ended", published.session_id),
        ("stream_ended", "s1"),
    ]
    await asyncio.wait_for(watching.player.ended.wait(), WAIT)


async def test_listener_hears_start_player_and_codecs_in_order(
    engine: MediaEngine, events: Events, publish: Publish, watch: Watch
) -> None:
    await publish(engine, mime_type="video/H264")
    await events.wait_for("stream_started", "s1", ("video/H264", "audio/opus"))
    watching = await watch(engine)
    await watching.frames("video", 1)

    assert events.history == [
        ("stream_started", "s1", ("video/H264", "audio/opus")),
        ("players_changed", "s1", 1),
    ]
    stats = engine.stats()
    assert (stats.publishers, stats.players, stats.pulls) == (1, 1, 0)


async def test_server_offer_play_delivers_the_stream(engine: MediaEngine, publish: Publish) -> None:
    published = await publish(engine)
    player = Player(keep_frames=True)
    try:
        offer = await engine.offer_play("s1")
        answer = await player.answer(offer.sdp)
        await engine.accept_answer(offer.session_id, answer)
        video = await asyncio.wait_for(player.wait_for_frames("video", 20), WAIT)
        await asyncio.wait_for(player.wait_for_frames("audio", 10), WAIT)
    finally:
        await player.close()
    start = published.sent.index(video.kept[0])
    assert video.kept == published.sent[start : start + len(video.kept)]
    summary = player.summary("video")
    assert summary.keyframes >= 1 and summary.fps > 0 and summary.kbps > 0
    assert summary.latency_p50_ms is not None and summary.latency_p50_ms >= 0


async def test_pulled_stream_reaches_a_downstream_player_byte_for_byte(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    origin, edge_events = make_engine(), Events()
    edge = make_engine(edge_events)
    published = await publish(origin, mime_type="video/H264")

    async def exchange(offer: str) -> str:
        return (await origin.play("s1", offer, downstream=True)).sdp

    pull_id = await asyncio.wait_for(edge.pull("s1", exchange), WAIT)
    watching = await watch(edge, keep_frames=True)
    video = await watching.frames("video", 30)
    await watching.frames("audio", 10)

    start = published.sent.index(video.kept[0])
    assert video.kept == published.sent[start : start + len(video.kept)]
    assert edge.stream_codecs("s1") == ("video/H264", "audio/opus")
    assert edge.stats().pulls == 1 and origin.stats().downstreams == 1

    await published.publisher.close()  # the origin ends the stream and closes our pull
    await edge_events.wait_for("upstream_lost", "s1")
    assert ("session_ended", pull_id) in edge_events.history
    assert edge.has_stream("s1") and not watching.player.ended.is_set(), "the player is held"


async def test_engine_close_is_idempotent_and_ends_everything(
    make_engine: EngineFactory, events: Events, publish: Publish, watch: Watch
) -> None:
    engine = make_engine()
    published = await publish(engine)
    watching = await watch(engine)
    await watching.frames("video", 1)

    await engine.close()
    await engine.close()

    assert ("stream_ended", "s1") in events.history
    assert ("session_ended", published.session_id) in events.history
    await asyncio.wait_for(watching.player.ended.wait(), WAIT)


async def test_a_publisher_that_never_connects_releases_the_stream(
    make_engine: EngineFactory, events: Events, offer: OfferFactory
) -> None:
    engine = make_engine(connect_timeout_s=0.5)
    silent = "".join(  # a trickle client that then never trickles
        line + "\r\n"
        for line in (await offer(direction="sendonly")).splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    )
    session = await engine.publish("s1", silent)

    await events.wait_for("stream_ended", "s1")
    assert ("session_ended", session.session_id) in events.history
    assert not engine.has_stream("s1")
