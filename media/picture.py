"""A video stream's picture size, read from a keyframe's headers without decoding it.

Ant Media's ``getStreamInfo`` reports width and height; a relay that never
decodes learns them from the bitstream: the VP8 keyframe header (RFC 6386
§9.1) or the H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1).
"""

from __future__ import annotations

_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def picture_size(mime_type: str, keyframe: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 or H.264 keyframe; None when its headers do not say."""
    try:
        if mime_type == "video/VP8":
            return _vp8(keyframe)
        if mime_type == "video/H264":
            return _h264(keyframe)
    except IndexError:  # a truncated header
        return None
    return None


def _vp8(frame: bytes) -> tuple[int, int] | None:
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(
        frame[8:10], "little"
    ) & 0x3FFF


class _Bits:
    """Big-endian bit reader with Exp-Golomb codes, over an RBSP (emulation bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def bit(self) -> int:
        byte = self._data[self._at >> 3]
        value = (byte >> (7 - (self._at & 7))) & 1
        self._at += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise IndexError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _rbsp(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _h264(frame: bytes) -> tuple[int, int] | None:
    for nal in frame.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01"):
        if nal and nal[0] & 0x1F == 7:
            return _sps(_Bits(_rbsp(nal[1:])))
    return None


def _sps(bits: _Bits) -> tuple[int, int] | None:
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in _HIGH_PROFILES:
        chroma = bits.ue()
        if chroma == 3:
            bits.bit()
        bits.ue()  # bit depths
        bits.ue()
        bits.bit()
        if bits.bit():  # scaling matrices: rare in WebRTC, not worth walking
            return None
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()
    bits.bit()  # direct_8x8_inference
    left = right = top = bottom = 0
    if bits.bit():
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
    crop_x = 2 if chroma in (1, 2) else 1
    crop_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (left + right)
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (top + bottom)
    return width, height
