"""tierstream's media plane: WebRTC in, encoded frames fanned out, never transcoded.

It knows nothing of the cluster: it takes SDP strings and stream ids, and reports
events to a listener that the control plane hands it. Start at ``media.engine``;
``docs/media.md`` describes the design, the aiortc seam and the benchmark.
"""

from media.config import MediaConfig
from media.engine import MediaEngine
from media.errors import (
    BadSdp,
    CodecMismatch,
    MediaError,
    StreamAlreadyPublished,
    UnknownSession,
    UnknownStream,
)
from media.types import Exchange, MediaStats, SessionDescription, StreamListener

__all__ = [
    "BadSdp",
    "CodecMismatch",
    "Exchange",
    "MediaConfig",
    "MediaEngine",
    "MediaError",
    "MediaStats",
    "SessionDescription",
    "StreamAlreadyPublished",
    "StreamListener",
    "UnknownSession",
    "UnknownStream",
]
