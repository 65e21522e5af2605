"""ICE stays on the configured addresses: 127.0.0.1 here, no STUN, no mDNS."""

from __future__ import annotations

import asyncio

from media import sdp
from media.contrib.client import Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack
from media.engine import MediaEngine
from tests.media.conftest import OfferFactory, Watch
from tests.support.waits import WAIT


def candidate_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("a=candidate:")]


async def test_engine_and_test_peers_gather_only_the_configured_address(
    engine: MediaEngine, offer: OfferFactory
) -> None:
    text = await offer(direction="sendonly")
    answer = await engine.publish("s1", text)

    for lines in (candidate_lines(text), candidate_lines(answer.sdp)):
        assert lines
        for line in lines:
            bits = line.split()
            assert bits[4] == "127.0.0.1" and bits[7] == "host", line


def test_trickle_fragments_drop_mdns_candidates_and_bundled_repeats() -> None:
    fragment = (  # as Eyevinn's whip-web-client sends them: every mid, the same candidates
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
        "m=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 2122260223 4c7b0c9e-1.local 54400 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 54401 typ host\r\n"
        "m=audio 9 RTP/AVP 0\r\na=mid:1\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 54401 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    session = sdp.Transports(mids=("0", "1"), bundle=("0", "1"))
    candidates, ended = sdp.trickle_candidates(fragment, session)
    assert [(c.ip, c.port, c.sdpMid) for c in candidates] == [("127.0.0.1", 54401, "0")]
    assert ended
    assert ".local" not in sdp.strip_mdns(fragment)


async def test_a_publisher_that_trickles_its_candidates_connects(
    engine: MediaEngine, watch: Watch
) -> None:
    publisher = Publisher([SyntheticVideoTrack(), SyntheticAudioTrack()])
    trickled: list[str] = []

    async def exchange(offer: str) -> str:
        trickled.extend(candidate_lines(offer))
        bare = "".join(  # as sent before setLocalDescription: no candidates at all
            line + "\r\n"
            for line in offer.splitlines()
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        answer = await engine.publish("s1", bare)
        lines = "".join(line + "\r\n" for line in trickled)
        fragment = (  # every mid, as whip-web-client sends it; mid 1 is bundled on mid 0
            "a=mid:0\r\n"
            "a=candidate:9 1 udp 2122260223 ab12cd34-5678.local 50000 typ host\r\n"
            + lines
            + "a=mid:1\r\n"
            + lines
            + "a=end-of-candidates\r\n"
        )
        await engine.add_ice_candidates(answer.session_id, fragment)
        return answer.sdp

    try:
        await asyncio.wait_for(publisher.start(exchange), WAIT)
        watching = await watch(engine)
        await watching.frames("video", 5)
    finally:
        await publisher.close()
    assert trickled
