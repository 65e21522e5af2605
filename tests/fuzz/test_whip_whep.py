"""WHIP and WHEP offers and trickle PATCHes, mutated from real ones, against a real node process.

Every request gets its answer (201, 204) or a 4xx with a message, never a 500
or a hang; a session an accepted offer made is ended again; and the stream the
fuzzing ran against (published by ``tierstream publish`` in its own process) is
still published and played afterwards, by a real aiortc player, with nothing in
the node's log but plain lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import httpx
from hypothesis import given
from hypothesis import strategies as st

from cluster.streams.pulls import internal_pull_path
from cluster.tokens import sign_pull_token
from cluster.types import NodeId
from tests.fuzz.conftest import LIVE_STREAM, LIVE_WHEP
from tests.support.fuzz import (
    HOSTILE_TEXT,
    assert_clean_log,
    assert_clear_reply,
    budget,
    candidate_lines,
    loopback_only,
    mutated,
)
from tests.support.nodes import CLUSTER_SECRET, NodeProcess
from tests.support.peers import Peers, PublisherProcess

SDP = {"Content-Type": "application/sdp"}
FRAGMENT = {"Content-Type": "application/trickle-ice-sdpfrag"}


def post_offer(
    http: httpx.Client, path: str, offer: str, headers: dict[str, str] | None = None
) -> None:
    """POST ``offer``; a session it made is deleted again, so examples do not add up."""
    reply = http.post(path, content=offer.encode(), headers=SDP | (headers or {}))
    assert_clear_reply(reply, f"POST {path}")
    if reply.status_code == 201:
        ended = http.delete(reply.headers["location"], headers=headers)
        assert ended.status_code == 200, ended.text


def test_whip_offers_are_answered_or_refused_clearly(
    http: httpx.Client, offers: Sequence[str]
) -> None:
    numbers = itertools.count()

    @budget(50)
    @given(mutated(offers))
    def check(offer: str) -> None:
        post_offer(http, f"/LiveApp/whip/fuzz-offer-{next(numbers)}", offer)

    check()


def test_whep_offers_for_a_live_stream_are_answered_or_refused_clearly(
    http: httpx.Client, offers: Sequence[str], live: PublisherProcess
) -> None:
    @budget(40)
    @given(mutated(offers))
    def check(offer: str) -> None:
        post_offer(http, LIVE_WHEP, offer)

    check()


def test_pull_offers_from_another_node_are_answered_or_refused_clearly(
    http: httpx.Client, offers: Sequence[str], live: PublisherProcess
) -> None:
    """Internal WHEP, past its cluster token: a node's offer is as untrusted as a player's."""

    @budget(30)
    @given(mutated(offers))
    def check(offer: str) -> None:
        token = sign_pull_token(CLUSTER_SECRET, NodeId("fuzz-downstream"), LIVE_STREAM)
        pulling = {"Authorization": f"Bearer {token}"}
        post_offer(http, internal_pull_path("LiveApp", LIVE_STREAM), offer, pulling)

    check()


def fragments(mids: list[str]) -> st.SearchStrategy[str]:
    """Trickle fragments (RFC 8840) of real lines, candidates and hostile text."""
    line = st.one_of(
        candidate_lines().map(lambda value: "a=" + value),
        st.sampled_from([f"a=mid:{mid}" for mid in mids] + ["a=mid:9", "a=mid:"]),
        st.sampled_from(
            ["a=end-of-candidates", "a=ice-ufrag:abcd", "a=ice-pwd:x", "m=audio 9 RTP/AVP 0", ""]
        ),
        HOSTILE_TEXT,
    )
    return st.builds(
        lambda lines, ending: loopback_only(ending.join(lines) + ending),
        st.lists(line, max_size=8),
        st.sampled_from(["\r\n", "\n"]),
    )


def test_trickle_patches_to_a_live_session_are_taken_or_refused_clearly(
    http: httpx.Client, live: PublisherProcess
) -> None:
    tag = live.location.rsplit("/", 1)[1]

    @budget(60)
    @given(fragments(["0", "1"]), st.sampled_from([None, "*", f'"{tag}"', '"other"', "", "W/x"]))
    def check(fragment: str, if_match: str | None) -> None:
        headers = FRAGMENT | ({"If-Match": if_match} if if_match is not None else {})
        reply = http.patch(live.location, content=fragment.encode(), headers=headers)
        assert_clear_reply(reply, f"PATCH {fragment!r}")

    check()


async def test_the_live_stream_is_still_published_and_plays(
    fuzz_node: NodeProcess, live: PublisherProcess, peers: Peers
) -> None:
    """The last test of the suite: after everything, the node still serves the stream that was
    live throughout, and a new publisher and its player."""
    assert live.connected, live.text()
    playing = await peers.play(fuzz_node.url + LIVE_WHEP)
    await playing.frames(10)
    await peers.publish(f"{fuzz_node.url}/LiveApp/whip/fuzz-after")
    await (await peers.play(f"{fuzz_node.url}/LiveApp/whep/fuzz-after")).frames(10)
    assert_clean_log(fuzz_node)
