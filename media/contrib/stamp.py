"""Frame stamps: a sequence number and send time carried inside the encoded frame.

Test, bench and demo receivers never decode, so the stamp must be readable from
the encoded bytes, and it must survive the relay untouched (which also makes it
a check that the relay forwards frames byte for byte). It is 40 ASCII bytes: a
16-byte marker, the sequence number (8 hex digits) and the send time in
microseconds of the wall clock (16 hex digits). ASCII has no zero bytes, so no
H.264 emulation prevention can alter it.

- H.264: an SEI "user data unregistered" NAL unit (the marker is its UUID), put
  before the first slice; decoders skip it.
- VP8: appended after the frame; VP8's last partition runs to the end of the
  frame, and decoders stop reading once the picture is complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from media import aiortc_seam

MARKER = b"tierstream:stamp"
_SIZE = len(MARKER) + 24
_START = b"\x00\x00\x00\x01"
_SEI, _SEI_USER_DATA_UNREGISTERED = 6, 5
_SLICES = (1, 5)


@dataclass(frozen=True)
class Stamp:
    seq: int
    sent_at: float
    """Wall-clock seconds (``time.time()``) at which the frame was sent."""


def stamp(mime_type: str, frame: bytes, seq: int, sent_at: float | None = None) -> bytes:
    """``frame`` carrying a stamp; H.264 comes back with 4-byte start codes."""
    sent_us = round((time.time() if sent_at is None else sent_at) * 1_000_000)
    body = MARKER + b"%08x%016x" % (seq & 0xFFFFFFFF, sent_us)
    if mime_type != "video/H264":
        return frame + body
    sei = bytes([_SEI, _SEI_USER_DATA_UNREGISTERED, len(body)]) + body + b"\x80"
    nals = aiortc_seam.split_annexb(frame)
    first_slice = next((i for i, nal in enumerate(nals) if nal[0] & 0x1F in _SLICES), 0)
    nals.insert(first_slice, sei)
    return b"".join(_START + nal for nal in nals)


def read(frame: bytes) -> Stamp | None:
    """The stamp of a frame, if it carries one."""
    at = frame.find(MARKER)
    if at < 0 or len(frame) < at + _SIZE:
        return None
    digits = frame[at + len(MARKER) : at + _SIZE]
    try:
        return Stamp(int(digits[:8], 16), int(digits[8:], 16) / 1_000_000)
    except ValueError:
        return None
