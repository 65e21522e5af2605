"""The media plane's SDP parsers, fuzzed in-process with mutations of real descriptions.

Whatever the text, ``media.sdp`` answers with parsed m-lines or ``BadSdp`` /
``CodecMismatch`` (which the app turns into 400 / 406): never another
exception, which would be a 500 and a traceback in the node's log.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from media import sdp
from media.errors import BadSdp, CodecMismatch
from tests.support.fuzz import HOSTILE_TEXT, budget, candidate_lines, loopback_only, mutated


def test_offers_parse_or_are_refused_by_name(offers: Sequence[str]) -> None:
    published = sdp.ingestable(sdp.parse(offers[-2]))  # what aiortc's publisher sends

    @budget(150)
    @given(st.one_of(mutated(offers), HOSTILE_TEXT.map(lambda text: "v=0\r\n" + text)))
    def check(text: str) -> None:
        try:
            lines = sdp.parse(text)
        except BadSdp as refused:
            assert str(refused)
            return
        for use in (sdp.ingestable, lambda found: sdp.playable(found, published)):
            try:
                use(lines)
            except (BadSdp, CodecMismatch) as refused:
                assert str(refused)

    check()


def test_trickle_fragments_give_candidates_or_are_refused_by_name(offers: Sequence[str]) -> None:
    session = sdp.transports(offers[-1])
    fragment_lines = st.one_of(
        candidate_lines().map(lambda value: "a=" + value),
        st.sampled_from([f"a=mid:{mid}" for mid in session.mids] + ["a=mid:nope", "a=mid:"]),
        st.sampled_from(["a=end-of-candidates", "a=ice-ufrag:abcd", "m=audio 9 RTP/AVP 0", ""]),
        HOSTILE_TEXT,
    )

    @budget(150)
    @given(st.lists(fragment_lines, max_size=8), st.sampled_from(["\r\n", "\n"]))
    def check(lines: list[str], ending: str) -> None:
        fragment = loopback_only(ending.join(lines))
        try:
            candidates, _ = sdp.trickle_candidates(fragment, session)
        except BadSdp as refused:
            assert str(refused)
            return
        for candidate in candidates:
            assert candidate.sdpMid in session.mids
            assert candidate.ip in ("127.0.0.1", "::1") or candidate.ip.startswith("127.")

    check()
