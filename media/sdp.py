"""Parsing what peers send us: SDP offers/answers and trickle-ICE fragments.

Everything here is untrusted input: it is parsed before any of it is used, and
whatever cannot be parsed becomes ``BadSdp`` with a plain message. ``.local``
(mDNS) candidates are dropped everywhere, because resolving them would send
multicast queries off the configured addresses.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCIceCandidate
from aiortc import sdp as aiortc_sdp

from media import aiortc_seam
from media.codecs import TrackCodec, match
from media.errors import BadSdp, CodecMismatch

_SDP_LINE = re.compile(r"[a-z]=\S")
_CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
_PARSE_ERRORS = (Exception,)
"""What aiortc's parsers raise on text they were not written for: anything (ValueError,
AttributeError on an attribute without a value, StopIteration, ...). They assume a
well-formed description; on untrusted text each of these is the text's fault."""
_MEDIA_KINDS = ("audio", "video")
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


@dataclass(frozen=True)
class MediaLine:
    """One audio or video m-line of a description, as far as we need it."""

    index: int
    kind: str
    mid: str | None
    direction: str
    codecs: tuple[str, ...]
    relayable: TrackCodec | None
    """The first offered codec we can relay, in the offer's order of preference."""
    payload_types: tuple[int, ...]
    mid_extension: int | None
    """The id of the MID RTP header extension, if negotiated."""
    rtp_codecs: tuple[Any, ...] = field(repr=False, compare=False)

    def accepts(self, codec: TrackCodec) -> bool:
        """Whether this m-line can carry ``codec``."""
        return any(aiortc_seam.codec_compatible(codec.capability, c) for c in self.rtp_codecs)

    @property
    def sends(self) -> bool:
        return self.direction in ("sendonly", "sendrecv")

    @property
    def receives(self) -> bool:
        return self.direction in ("recvonly", "sendrecv")


def parse(text: str) -> tuple[MediaLine, ...]:
    """Parse an SDP offer or answer; its audio/video m-lines, or ``BadSdp``."""
    if not text.lstrip().startswith("v=0"):
        raise BadSdp("not an SDP description (it must start with v=0)")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except _PARSE_ERRORS as exc:
        raise BadSdp(f"malformed SDP: {exc or type(exc).__name__}") from exc
    _check_usable(description)
    lines = tuple(
        MediaLine(
            index=index,
            kind=media.kind,
            mid=media.rtp.muxId or None,
            direction=str(media.direction),
            codecs=tuple(codec.mimeType for codec in media.rtp.codecs),
            relayable=next(
                (found for c in media.rtp.codecs if (found := match(media.kind, c))), None
            ),
            payload_types=tuple(c.payloadType or 0 for c in media.rtp.codecs),
            mid_extension=next(
                (x.id for x in media.rtp.headerExtensions if x.uri == _MID_URI), None
            ),
            rtp_codecs=tuple(media.rtp.codecs),
        )
        for index, media in enumerate(description.media)
        if media.kind in _MEDIA_KINDS
    )
    if not lines:
        raise BadSdp("the SDP has no audio or video m-line")
    return lines


def ingestable(lines: tuple[MediaLine, ...]) -> tuple[TrackCodec, ...]:
    """The codecs of the tracks a publisher's offer (or an upstream's answer) sends.

    One video and one audio track at most; every sending m-line must carry a
    codec we relay, else ``CodecMismatch``.
    """
    sending = tuple(line for line in lines if line.sends)
    if not sending:
        raise BadSdp(_no_direction("sends", "sendonly or sendrecv", lines))
    kinds = [line.kind for line in sending]
    if len(set(kinds)) != len(kinds):
        raise BadSdp("more than one audio or video m-line: we relay one of each")
    codecs = tuple(line.relayable for line in sending if line.relayable is not None)
    if not codecs or len(codecs) != len(sending):
        raise CodecMismatch(("video/VP8|video/H264", "audio/opus"), offered_codecs(sending))
    return codecs


def playable(
    lines: tuple[MediaLine, ...], codecs: tuple[TrackCodec, ...]
) -> tuple[TrackCodec, ...]:
    """The stream's tracks a player's offer can receive; ``CodecMismatch`` if it cannot.

    A player may leave out a kind (no audio m-line: video only), but an m-line of
    a kind we send must accept exactly the stream's codec: we never transcode.
    """
    if not any(line.receives for line in lines):
        raise BadSdp(_no_direction("receives", "recvonly or sendrecv", lines))
    chosen = []
    for codec in codecs:
        line = next((x for x in lines if x.kind == codec.kind and x.receives), None)
        if line is None:
            continue
        if not line.accepts(codec):
            raise CodecMismatch(tuple(c.mime_type for c in codecs), offered_codecs(lines))
        chosen.append(codec)
    if not chosen:
        raise CodecMismatch(tuple(c.mime_type for c in codecs), offered_codecs(lines))
    return tuple(chosen)


def _no_direction(verb: str, wanted: str, lines: tuple[MediaLine, ...]) -> str:
    found = ", ".join(sorted({line.direction for line in lines}))
    return f"the description {verb} no audio or video: an m-line must be {wanted} (found {found})"


def offered_codecs(lines: tuple[MediaLine, ...]) -> tuple[str, ...]:
    """The distinct media codecs named by some m-lines, for error messages."""
    names = (c for line in lines for c in line.codecs if c != "video/rtx")
    return tuple(dict.fromkeys(names))


def strip_mdns(text: str) -> str:
    """The description without ``.local`` candidates (never resolved: multicast)."""
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not (line.startswith("a=candidate:") and _is_mdns(line[len("a=candidate:") :]))
    )


@dataclass(frozen=True)
class Transports:
    """Which mids a session has, and which of them share one transport (BUNDLE)."""

    mids: tuple[str, ...]
    bundle: tuple[str, ...]
    """The BUNDLE group; its first mid names the transport all of them use."""

    def carrier(self, mid: str) -> str:
        """The mid whose transport carries ``mid``'s media."""
        return self.bundle[0] if mid in self.bundle else mid


def transports(text: str) -> Transports:
    """The mids and BUNDLE group of a description we made (no checks needed)."""
    description = aiortc_sdp.SessionDescription.parse(text)
    bundle = next((g.items for g in description.group if g.semantic == "BUNDLE"), [])
    return Transports(
        mids=tuple(str(m.rtp.muxId) for m in description.media if m.rtp.muxId),
        bundle=tuple(str(item) for item in bundle),
    )


def trickle_candidates(fragment: str, session: Transports) -> tuple[list[RTCIceCandidate], bool]:
    """Candidates of an ``application/trickle-ice-sdpfrag`` body (RFC 8840).

    Each candidate belongs to the m-line section it appears in (by ``a=mid``), or
    to the first m-line of the session when the fragment names none; a mid in
    the BUNDLE group means the group's transport (clients repeat candidates for
    every mid), and repeats are dropped. The flag says whether the fragment ends
    the candidates (``a=end-of-candidates``).
    """
    if not session.mids:
        raise BadSdp("the session has no m-line to add candidates to")
    candidates: dict[tuple[str, str, str, int, str], RTCIceCandidate] = {}
    ended = False
    mid = session.mids[0]
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
            if mid not in session.mids:
                raise BadSdp(f"trickle fragment names unknown mid {mid!r}")
        elif line.startswith("a=candidate:"):
            value = line[len("a=candidate:") :]
            if _is_mdns(value):
                continue
            try:
                candidate = aiortc_sdp.candidate_from_sdp(value)
            except _PARSE_ERRORS as exc:
                raise BadSdp(f"malformed candidate line {_shown(line)}") from exc
            _check_candidate(candidate, line)
            candidate.sdpMid = session.carrier(mid)
            key = (
                candidate.sdpMid,
                candidate.protocol,
                candidate.ip,
                candidate.port,
                candidate.type,
            )
            candidates.setdefault(key, candidate)
        elif line == "a=end-of-candidates":
            ended = True
        elif line and not _SDP_LINE.match(line):
            raise BadSdp(f"not a line of an SDP fragment: {_shown(line)}")
    return list(candidates.values()), ended


def _check_candidate(candidate: RTCIceCandidate, line: str) -> None:
    """What aiortc's candidate parser lets through and its ICE agent would trip on later."""
    try:
        ipaddress.ip_address(candidate.ip)
    except ValueError:
        raise BadSdp(f"candidate address is not an IP address: {_shown(line)}") from None
    if not (
        0 <= candidate.port <= 65535
        and 1 <= candidate.component <= 256
        and 0 <= candidate.priority < 2**32
        and candidate.protocol.lower() in ("udp", "tcp")
        and candidate.type in _CANDIDATE_TYPES
    ):
        raise BadSdp(f"candidate line out of range: {_shown(line)}")


def _shown(line: str) -> str:
    """An untrusted line as error messages quote it: short."""
    return repr(line if len(line) <= 100 else line[:97] + "...")


def _check_usable(description: Any) -> None:
    """What aiortc assumes of a description without checking it (it would crash)."""
    mids: list[str] = []
    for index, media in enumerate(description.media):
        where = f"m-line {index} ({media.kind})"
        if not media.rtp.muxId:
            raise BadSdp(f"{where} has no a=mid")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadSdp(f"{where} has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
        if media.dtls is None:
            raise BadSdp(f"{where} has no usable DTLS setup and fingerprint")
        if not media.dtls.fingerprints:
            raise BadSdp(
                f"{where} has no DTLS fingerprint (a=fingerprint): media cannot be secured"
            )
        if media.kind in _MEDIA_KINDS and media.direction is None:
            raise BadSdp(f"{where} has no direction (a=sendrecv, a=sendonly, ...)")
        mids.append(media.rtp.muxId)
    if len(set(mids)) != len(mids):
        raise BadSdp("two m-lines share a mid")
    for group in description.group:
        unknown = [str(item) for item in group.items if str(item) not in mids]
        if unknown:
            raise BadSdp(f"a=group:{group.semantic} names unknown mids {', '.join(unknown)}")


def _is_mdns(candidate: str) -> bool:
    bits = candidate.split()
    return len(bits) > 4 and bits[4].lower().endswith(".local")
