"""Each way a request can be wrong gets its own named error, and leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from media.engine import MediaEngine
from media.errors import (
    BadSdp,
    CodecMismatch,
    StreamAlreadyPublished,
    UnknownSession,
    UnknownStream,
)
from tests.media.conftest import OfferFactory, Publish


def assert_nothing_left(engine: MediaEngine) -> None:
    stats = engine.stats()
    assert (stats.players, stats.publishers, stats.pulls) == (0, 0, 0)


async def test_playing_an_unknown_stream(engine: MediaEngine, offer: OfferFactory) -> None:
    with pytest.raises(UnknownStream, match="'nope'"):
        await engine.play("nope", await offer())
    with pytest.raises(UnknownStream):
        await engine.offer_play("nope")
    with pytest.raises(UnknownStream):
        engine.stream_codecs("nope")
    assert not engine.has_stream("nope")


async def test_ending_an_unknown_stream(engine: MediaEngine) -> None:
    with pytest.raises(UnknownStream, match="'nope'"):
        await engine.end_stream("nope")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "v=0\r\nm=video x y\r\n",
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:abc VP8/90000\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
    ],
    ids=[
        "empty body",
        "not SDP at all",
        "broken m-line",
        "broken rtpmap",
        "no audio or video m-line",
    ],
)
async def test_malformed_sdp_is_bad_sdp(engine: MediaEngine, text: str) -> None:
    with pytest.raises(BadSdp):
        await engine.publish("s1", text)
    assert_nothing_left(engine)


async def test_offer_without_ice_credentials_is_bad_sdp(
    engine: MediaEngine, offer: OfferFactory
) -> None:
    text = await offer(direction="sendonly")
    stripped = "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("a=ice-ufrag")
    )
    with pytest.raises(BadSdp):
        await engine.publish("s1", stripped)
    assert_nothing_left(engine)
    assert not engine.has_stream("s1")


async def test_publisher_codec_we_do_not_relay(engine: MediaEngine, offer: OfferFactory) -> None:
    text = (await offer(direction="sendonly", audio=False)).replace("VP8/90000", "VP9/90000")
    with pytest.raises(CodecMismatch, match="video/VP9") as raised:
        await engine.publish("s1", text)
    assert raised.value.offered == ("video/VP9",)
    assert not engine.has_stream("s1")


async def test_player_that_cannot_take_the_stream_codec(
    engine: MediaEngine, publish: Publish, offer: OfferFactory
) -> None:
    await publish(engine, mime_type="video/VP8")
    with pytest.raises(CodecMismatch) as raised:
        await engine.play("s1", await offer(video="video/H264"))
    assert raised.value.wanted == ("video/VP8", "audio/opus")
    assert "video/H264" in raised.value.offered
    assert engine.stats().players == 0


async def test_publishing_a_stream_twice(engine: MediaEngine, offer: OfferFactory) -> None:
    first = await engine.publish("s1", await offer(direction="sendonly"))
    with pytest.raises(StreamAlreadyPublished):
        await engine.publish("s1", await offer(direction="sendonly"))
    assert engine.stats().publishers == 1
    await engine.close_session(first.session_id)


async def test_unknown_session(engine: MediaEngine, offer: OfferFactory) -> None:
    with pytest.raises(UnknownSession):
        await engine.close_session("nope")
    with pytest.raises(UnknownSession):
        await engine.accept_answer("nope", await offer())
    with pytest.raises(UnknownSession):
        await engine.add_ice_candidates("nope", "a=end-of-candidates\r\n")


async def test_malformed_trickle_fragment(engine: MediaEngine, offer: OfferFactory) -> None:
    session = await engine.publish("s1", await offer(direction="sendonly"))
    with pytest.raises(BadSdp):
        await engine.add_ice_candidates(session.session_id, "a=candidate:1 1 udp\r\n")
    with pytest.raises(BadSdp):
        await engine.add_ice_candidates(session.session_id, "a=mid:7\r\n")


async def test_an_answer_for_a_session_that_made_no_offer(
    engine: MediaEngine, offer: OfferFactory
) -> None:
    session = await engine.publish("s1", await offer(direction="sendonly"))
    with pytest.raises(BadSdp, match="not waiting for an answer"):
        await engine.accept_answer(session.session_id, await offer())
    assert engine.has_stream("s1"), "a stray answer does not end the session"


@pytest.mark.parametrize(
    "damage",
    [
        lambda sdp: sdp.replace("a=mid:0\r\n", ""),
        lambda sdp: sdp.replace("a=sendonly\r\n", ""),
        lambda sdp: sdp.replace("a=rtpmap:97 VP8/90000\r\n", "a=fmtp:55 x=1\r\n"),
        lambda sdp: sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 7"),
        lambda sdp: sdp.replace("a=setup:actpass", "a=setup:sideways"),
        lambda sdp: "\r\n".join(x for x in sdp.split("\r\n") if not x.startswith("a=ice-pwd")),
        lambda sdp: sdp.replace("a=rtpmap:97 VP8/90000\r\n", "a=rtpmap:97 VP8/90000\r\na=fmtp\r\n"),
        lambda sdp: sdp.replace(
            "a=rtpmap:97 VP8/90000\r\n", "a=rtpmap:97 VP8/90000\r\na=rtcp-fb\r\n"
        ),
    ],
    ids=[
        "an m-line without a mid",
        "an m-line without a direction",
        "fmtp for a payload type that has no rtpmap",
        "BUNDLE naming a mid that does not exist",
        "an unknown DTLS setup role",
        "no ICE password",
        "an fmtp attribute without a value",
        "an rtcp-fb attribute without a value",
    ],
)
async def test_offers_aiortc_would_choke_on_are_bad_sdp(
    engine: MediaEngine, offer: OfferFactory, damage: Callable[[str], str]
) -> None:
    text = await offer(direction="sendonly")
    damaged = damage(text)
    assert damaged != text
    with pytest.raises(BadSdp):
        await engine.publish("s1", damaged)
    assert_nothing_left(engine)


def without_fingerprints(text: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("a=fingerprint")
    )


async def test_offers_without_a_dtls_fingerprint_are_bad_sdp_before_any_session(
    engine: MediaEngine, publish: Publish, offer: OfferFactory
) -> None:
    with pytest.raises(BadSdp, match="no DTLS fingerprint"):
        await engine.publish("s0", without_fingerprints(await offer(direction="sendonly")))
    await publish(engine)
    with pytest.raises(BadSdp, match="no DTLS fingerprint"):
        await engine.play("s1", without_fingerprints(await offer()))
    stats = engine.stats()
    assert (stats.publishers, stats.players) == (1, 0)


async def test_a_publisher_offer_that_sends_nothing_is_bad_sdp_naming_the_direction(
    engine: MediaEngine, publish: Publish, offer: OfferFactory
) -> None:
    with pytest.raises(BadSdp, match=r"sends no audio or video.*\(found recvonly\)"):
        await engine.publish("s0", await offer(direction="recvonly"))
    await publish(engine)
    with pytest.raises(BadSdp, match=r"receives no audio or video.*\(found sendonly\)"):
        await engine.play("s1", await offer(direction="sendonly"))
    assert not engine.has_stream("s0")


@pytest.mark.parametrize(
    "fragment",
    [
        "hello world\r\n",
        "a=candidate:1 1 udp 2130706431 not-an-ip 5000 typ host\r\n",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 99999 typ host\r\n",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ whatever\r\n",
        "a=candidate:1 1 sctp 2130706431 127.0.0.1 5000 typ host\r\n",
        "a=candidate:1 0 udp 2130706431 127.0.0.1 5000 typ host\r\n",
    ],
    ids=[
        "not SDP lines at all",
        "an address that is not an IP",
        "a port past 65535",
        "an unknown candidate type",
        "an unknown transport",
        "component 0",
    ],
)
async def test_garbage_trickle_candidates_are_bad_sdp(
    engine: MediaEngine, offer: OfferFactory, fragment: str
) -> None:
    session = await engine.publish("s1", await offer(direction="sendonly"))
    with pytest.raises(BadSdp):
        await engine.add_ice_candidates(session.session_id, fragment)
    assert engine.has_stream("s1"), "a bad fragment does not end the session"
