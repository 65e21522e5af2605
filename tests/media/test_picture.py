"""Picture size from keyframe headers, checked against frames PyAV encodes at known sizes."""

from __future__ import annotations

from fractions import Fraction
from typing import cast

import av
import pytest

from media.picture import picture_size


def _keyframe(codec: str, width: int, height: int) -> bytes:
    encoder = cast(av.VideoCodecContext, av.CodecContext.create(codec, "w"))
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    frame = av.VideoFrame(width, height, "yuv420p")
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    return bytes(packets[0])


@pytest.mark.parametrize(
    ("codec", "mime_type", "size"),
    [
        ("libvpx", "video/VP8", (640, 360)),
        ("libvpx", "video/VP8", (320, 180)),
        ("libx264", "video/H264", (640, 360)),
        ("libx264", "video/H264", (1280, 718)),
    ],
    ids=["VP8 640x360", "VP8 320x180", "H.264 640x360", "H.264 with cropping 1280x718"],
)
def test_size_is_read_from_the_keyframe(codec: str, mime_type: str, size: tuple[int, int]) -> None:
    assert picture_size(mime_type, _keyframe(codec, *size)) == size


def test_what_is_not_a_keyframe_header_has_no_size() -> None:
    assert picture_size("video/VP8", b"\x01\x02\x03") is None
    assert picture_size("video/H264", b"\x00\x00\x01\x65rest") is None
    assert picture_size("video/H264", b"\x00\x00\x01\x67\x64") is None  # truncated SPS
    assert picture_size("audio/opus", b"anything") is None
