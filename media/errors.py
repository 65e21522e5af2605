"""Named media-plane errors.

Media code never builds HTTP responses: the signalling layers catch these and
map them (BadSdp 400, UnknownStream 404, StreamAlreadyPublished 409,
CodecMismatch 406, UnknownSession 404, Overloaded 503).
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every error the media engine raises on purpose."""


class BadSdp(MediaError):
    """An SDP offer, answer or trickle fragment could not be parsed or used."""


class UnknownStream(MediaError):
    """The stream is not published (nor pulled) on this node."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} is not on this node")
        self.stream_id = stream_id


class StreamAlreadyPublished(MediaError):
    """A second publisher tried to take a stream id that is live here."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} is already published on this node")
        self.stream_id = stream_id


class CodecMismatch(MediaError):
    """The peer cannot send or receive the codecs we relay.

    Both sides are named so that a client (or its developer) can see what to change.
    """

    def __init__(self, wanted: tuple[str, ...], offered: tuple[str, ...]) -> None:
        super().__init__(
            f"codecs do not match: need {'+'.join(wanted) or 'nothing'}, "
            f"the offer has {', '.join(offered) or 'no codecs'}"
        )
        self.wanted = wanted
        self.offered = offered


class UnknownSession(MediaError):
    """No session with this id (it ended, or never existed)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no media session {session_id!r}")
        self.session_id = session_id


class Overloaded(MediaError):
    """The node has no time left for another player (see ``media.load``, ``media.admission``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"this node is overloaded ({reason}): try again shortly or another node")
        self.reason = reason
