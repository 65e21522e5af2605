"""What the fuzz tests share: their budget, the inputs they mutate, and what every reply must be.

Budget: each test names its number of examples; ``TIERSTREAM_FUZZ_SCALE=<n>``
multiplies them all and switches from the derandomized CI run (the same
examples every time, no example database) to a random one that remembers
failing examples in ``.hypothesis/``. A hang is caught by the clients' own
timeouts (``REPLY_TIMEOUT_S``) rather than hypothesis' deadline, which a loaded
machine would trip for no fault of the node.

Inputs are mutations of real descriptions (Chromium's, from
``tests/fuzz/samples``, and aiortc's, made at run time) and of real trickle
fragments. Every ICE candidate a mutation leaves parseable points at 127.0.0.1:
the node would otherwise run connectivity checks to whatever address a
mutation made up, and tests send traffic to loopback only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.support.nodes import NodeProcess

SCALE = int(os.environ.get("TIERSTREAM_FUZZ_SCALE", "1"))
REPLY_TIMEOUT_S = 10.0
"""A reply slower than this is a hang (the node answers each of these in milliseconds)."""

SAMPLES = Path(__file__).parent.parent / "fuzz" / "samples"


def budget(examples: int) -> settings:
    """Hypothesis settings for ``examples`` examples (times ``TIERSTREAM_FUZZ_SCALE``)."""
    # The node fixtures are shared on purpose: their state must survive every example.
    shared = settings(
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    if SCALE == 1:
        return settings(shared, max_examples=examples, derandomize=True, database=None)
    return settings(shared, max_examples=examples * SCALE)


class Samples(tuple[str, ...]):
    """Real descriptions to mutate; hypothesis' reports show their number, not their text."""

    def __repr__(self) -> str:
        return f"<{len(self)} real descriptions>"


def chromium_offers() -> list[str]:
    """Offers Chromium made (publish: sendonly camera and microphone; play: recvonly)."""
    return [path.read_text(encoding="utf-8") for path in sorted(SAMPLES.glob("*.sdp"))]


# Pieces a mutation puts into a description: real attribute lines, and hostile text.
ATTRIBUTE_LINES = [
    "a=mid:0",
    "a=mid:",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
    "a=sendrecv",
    "a=setup:actpass",
    "a=setup:nonsense",
    "a=fingerprint:sha-256 00:11",
    "a=fingerprint:md5 zz",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:0123456789abcdefghijkl",
    "a=group:BUNDLE 0 1 7",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:96 H264/90000",
    "a=rtpmap:x y",
    "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1",
    "a=rtcp-fb:96 nack pli",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:999999999999 x",
    "a=ssrc:1 cname:x",
    "a=ssrc-group:FID 1 2",
    "a=msid:- -",
    "a=rtcp-mux",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype passive",
    "a=candidate:1 1 udp 1 host.local 9 typ host",
    "a=candidate:",
    "a=end-of-candidates",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=video 0 RTP/AVP",
    "c=IN IP4 0.0.0.0",
    "v=0",
    "",
]
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "-1", "65536", "4294967296", "1e9", "NaN", "9" * 5000]),
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="ascii"), max_size=40),
    NUMBERS,
    st.sampled_from(["\x00", "\u2028", "\ufeff", " ", ":", "/", "%s%n", "\r", "\n\n"]),
)


@st.composite
def mutated(draw: st.DrawFn, samples: Sequence[str]) -> str:
    """One of ``samples`` with one to five of its lines deleted, duplicated, moved, cut,
    replaced or given another value; line endings sometimes changed."""
    lines = draw(st.sampled_from(samples)).splitlines()
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        action = draw(
            st.sampled_from(["delete", "duplicate", "move", "cut", "insert", "value", "text"])
        )
        if not lines:
            lines.append(draw(st.sampled_from(ATTRIBUTE_LINES)))
        elif action == "delete":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        elif action == "move":
            lines.insert(draw(st.integers(0, len(lines))), lines.pop(at))
        elif action == "cut":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        elif action == "insert":
            lines.insert(at, draw(st.sampled_from(ATTRIBUTE_LINES)))
        elif action == "value":
            kept = lines[at].split(":", 1)[0] + ":" if ":" in lines[at] else lines[at][:2]
            lines[at] = kept + draw(HOSTILE_TEXT)
        else:
            lines[at] = draw(HOSTILE_TEXT)
    ending = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r"]))
    return loopback_only(ending.join(lines) + ending)


def loopback_only(text: str) -> str:
    """``text`` with every candidate address that parses as an IP, but not loopback, made
    127.0.0.1, so that no mutation sends the node's connectivity checks off this machine.

    Lines are split as ``str.splitlines`` splits them and fields as ``str.split``,
    the way aiortc's parsers do, so no line escapes the check by its separators.
    """
    pieces = _LINE_BREAKS.split(text)
    for index, piece in enumerate(pieces):
        prefix, _, value = piece.strip().partition("candidate:")
        if prefix not in ("a=", "") or not value:
            continue
        bits = value.split()
        if len(bits) > 4 and _leaves_loopback(bits[4]):
            bits[4] = "127.0.0.1"
            pieces[index] = f"{prefix}candidate:{' '.join(bits)}"
    return "".join(pieces)


_LINE_BREAKS = re.compile("(\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029])")


def _leaves_loopback(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@st.composite
def candidate_lines(draw: st.DrawFn) -> str:
    """``candidate:...`` values: well-formed ones on loopback with any field made hostile."""
    fields = [
        draw(st.sampled_from(["1", "842163049", "x" * 300])),
        draw(st.sampled_from(["1", "2"])),
        draw(st.sampled_from(["udp", "tcp", "UDP"])),
        draw(st.sampled_from(["2130706431", "1"])),
        draw(st.sampled_from(["127.0.0.1", "::1", "127.0.0.2", "nowhere", "host.local"])),
        draw(st.sampled_from(["9", "50000", "1"])),
        "typ",
        draw(st.sampled_from(["host", "srflx", "relay", "prflx"])),
    ]
    if draw(st.booleans()):
        fields += ["raddr", "127.0.0.1", "rport", draw(st.sampled_from(["0", "9", "x"]))]
    if draw(st.booleans()):
        fields += ["tcptype", draw(st.sampled_from(["active", "passive", "so", "bogus"]))]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(fields) - 1))
        fields[at] = draw(HOSTILE_TEXT).replace("\r", "").replace("\n", "")
    if draw(st.booleans()) and len(fields) > 1:
        del fields[draw(st.integers(0, len(fields) - 1))]
    return loopback_only("candidate:" + " ".join(fields))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=12,
)
"""Any JSON value."""


def assert_clear_reply(reply: httpx.Response, what: str) -> None:
    """Success, or a 4xx with Ant Media's JSON failure naming the problem; never a 5xx."""
    assert reply.status_code < 500, f"{what}: {reply.status_code} {reply.text[:300]}"
    if reply.status_code >= 400:
        body = reply.json()
        assert body["success"] is False, f"{what}: {body}"
        assert isinstance(body["message"], str) and body["message"], f"{what}: {body}"


LOG_FAULTS = ("Traceback", " ERROR ", "Task exception was never retrieved", "Exception in callback")


def assert_clean_log(node: NodeProcess) -> None:
    """The node's log holds no traceback and no error line (each would be a defect)."""
    log = node.log_text()
    found = [line for line in log.splitlines() if any(fault in line for fault in LOG_FAULTS)]
    assert not found, f"the node's log has faults:\n{log[-6000:]}"


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)
