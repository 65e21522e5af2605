"""The one module that reaches into aiortc's private internals.

aiortc decodes everything it receives and encodes everything it sends; its public
API cannot hand out or take in encoded frames. A relay needs exactly that, so we
hook the narrowest places, all of them here, and nowhere else in tierstream:

- **receive**: ``RTCRtpReceiver.__decoder_queue``. The receiver puts every
  reassembled encoded frame there as ``(codec, JitterFrame)``. We swap it for a
  ``FrameTap`` before ``receive()`` starts the decoder thread; the thread's first
  ``get()`` returns ``None``, so it exits at once and no decoder ever runs.
- **frame release**: ``RTCRtpReceiver.__jitter_buffer`` becomes a
  ``FrameAssembler``, aiortc's ``JitterBuffer`` (its ``_origin``, ``_packets``,
  ``_capacity``, ``_is_video``, ``remove`` and ``_remove_frame``) releasing each
  frame as soon as it is complete rather than one frame later; the tap takes
  any further complete frames, unwrapping their timestamps with the receiver's
  ``__timestamp_mapper`` as the receiver does.
- **keyframe request upstream**: ``RTCRtpReceiver._send_rtcp_pli`` (and
  ``__rtx_ssrc`` to tell the media SSRC from the retransmission one).
- **send**: the native fan-out (``media._fanout``) protects and sends RTP itself,
  so it needs two things aiortc keeps private. The player's outbound SRTP keys:
  ``RTCDtlsTransport._ssl`` (the pyOpenSSL connection, whose keying material
  export aiortc's ``_setup_srtp`` already used, repeated here), ``_role`` and
  ``_srtp_profiles``. And the socket: aioice's ``Connection._nominated`` pair,
  its ``StunProtocol`` transport's socket and the remote address. ICE, DTLS and
  RTCP (SRTCP with aiortc's own ``_tx_srtp``) stay aiortc's. A player reached
  through a TURN relay gets its packets protected natively and sent with
  ``RTCIceTransport._send`` (the TURN send path awaits).
- **player feedback**: ``RTCRtpSender._handle_rtcp_packet`` is wrapped per
  instance to take PLI/FIR and NACK; receiver reports still reach aiortc.
- **sender reports**: ``RTCRtpSender.__ntp_timestamp``, ``__rtp_timestamp``,
  ``__packet_count`` and ``__octet_count`` become properties reading the native
  slot's counters (the sender's class is swapped for a subclass), so that
  aiortc's own RTCP loop sends sender reports that count what we forwarded,
  with no per-frame work in Python.
- **packetisers**: ``Vp8Encoder._packetize``, ``H264Encoder._split_bitstream``
  and ``H264Encoder._packetize``, pure functions, run once per frame per stream.
- **ICE**: ``RTCIceGatherer._connection``, the aioice ``Connection`` behind a
  transport, so ``media.ice`` can name the host candidate addresses.
- **bitrate estimators**: ``rtcrtpreceiver.RemoteBitrateEstimator``, the class
  every video ``RTCRtpReceiver`` builds one of in ``__init__`` (a 1,000-bucket
  rate window, about 2.5 ms of the event loop), is swapped for one that builds
  aiortc's on its first packet: a player's send-only transceiver has a receiver
  that never receives, and each join paid for an estimator it never used.
- **connecting**: ``RTCPeerConnection.__connect``, the task aiortc starts (and
  never awaits) to bring up ICE and DTLS, is wrapped per instance: once the
  connection is closed (a client that DELETEs its session while it connects),
  its failure on the closed transports is expected and dropped, instead of
  reaching the log as "Task exception was never retrieved" with a traceback.
- **refusals** (pulls only): the nominated pair's ``StunProtocol.error_received``
  is wrapped per instance, and its socket asked for ICMP errors
  (``IP_RECVERR``), so that a pull hears at once when its upstream's port
  answers "port unreachable" (the upstream process is gone).
- **counting receive** (benchmark players only): aioice's
  ``Connection.data_received`` gets every non-STUN datagram; ``count_rtp`` takes
  the SRTP ones before DTLS does, and decrypts with ``RTCDtlsTransport._rx_srtp``.

aiortc is pinned ``==1.16.0`` in ``pyproject.toml`` because of this module.
``check()`` verifies every hook; ``tests/media/test_aiortc_seam.py`` runs it and
the engine calls it at start-up, so an upgrade that moves any of these fails
loudly, naming what moved, instead of silently decoding or dropping media.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import socket
import struct
import sys
from asyncio import selector_events
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiortc
from aioice import Connection
from aioice.ice import CandidatePair, StunProtocol
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    rtcpeerconnection,
    rtcrtpreceiver,
)
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpreceiver import TimestampMapper
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSourceInfo,
)

PINNED_AIORTC = "1.16.0"

_CONNECT = "_RTCPeerConnection__connect"
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_SENDER_COUNTERS = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)

IP_RECVERR = 11
IPV6_RECVERR = 25
"""Linux's socket options (``<linux/in.h>``, ``<linux/in6.h>``) that queue ICMP errors on a
UDP socket that is not connected; Python's ``socket`` module does not name them."""
_EXTENDED_ERROR = struct.Struct("=IBBBBII")
"""The head of Linux's ``struct sock_extended_err``: errno, origin, type, code, pad, info, data."""

FrameSink = Callable[[str, bytes, int], None]
"""Called with (codec mime type, encoded frame bytes, unwrapped RTP timestamp)."""


class SeamBroken(RuntimeError):
    """aiortc's internals no longer look the way this module expects."""


class FrameAssembler(JitterBuffer):
    """aiortc's jitter buffer, releasing each frame as soon as its last packet is in.

    aiortc's ``JitterBuffer`` feeds a decoder: it releases a frame only when a
    packet of the next frame (a new RTP timestamp) arrives, and holds four more
    audio frames as a decoder prefetch. A relay has no decoder to feed, and that
    wait cost every hop one video frame interval (33 ms at 30 fps) and 80 ms of
    Opus. Here the frame at the origin (the oldest packet not yet released) is
    complete once every packet from the origin up to the one ending the frame is
    in: a video frame ends at the marker bit (VP8's last packet, the last packet
    of an H.264 access unit), and every audio packet is a frame (Opus, G.711).
    Anything else (a hole, a frame whose sender sets no marker) takes aiortc's
    path unchanged: a frame with a hole waits for the NACKed packet or is
    dropped whole when the buffer overflows (which asks for a keyframe), and a
    frame without a marker goes when the next one starts.
    """

    def __init__(self, replaced: JitterBuffer) -> None:
        """The same capacity and kind as aiortc chose for ``replaced``, never a prefetch."""
        super().__init__(replaced.capacity, is_video=replaced._is_video)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        complete = self.pop_complete()
        if complete is not None:
            return complete
        return super()._remove_frame(sequence_number)

    def pop_complete(self) -> JitterFrame | None:
        """Take the frame at the origin out of the buffer if all of it is here.

        Padding-only packets at the origin (bandwidth probes, which carry the
        timestamp of the frame before them) are dropped first: aiortc's rule
        would otherwise release them as an empty frame of their own.
        """
        if self._origin is None:
            return None
        while (first := self._packets[self._origin % self._capacity]) and not first.payload:
            self.remove(1)
        packets: list[Any] = []  # RtpPackets carrying their depayloaded bytes in ``_data``
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker or not self._is_video:
                self.remove(count + 1)
                return JitterFrame(b"".join(p._data for p in packets), packets[0].timestamp)
        return None


class FrameTap:
    """Stands in for a receiver's decoder queue: encoded frames go to a sink.

    ``put`` runs on the event loop (from the receiver's RTP handler); ``get`` runs
    once, on the receiver's decoder thread, and ends that thread. The receiver
    puts at most one frame per packet; when a packet completes several frames (a
    retransmission filling the hole that held the frames behind it), ``put``
    hands on the rest too, so that no complete frame waits for later packets.
    """

    def __init__(
        self, sink: FrameSink, assembler: FrameAssembler, timestamps: TimestampMapper
    ) -> None:
        self._sink = sink
        self._assembler = assembler
        self._timestamps = timestamps

    def put(self, item: tuple[Any, Any] | None) -> None:
        if item is None:  # the receiver stopping its decoder
            return
        codec, frame = item
        self._sink(codec.mimeType, frame.data, frame.timestamp)
        while (frame := self._assembler.pop_complete()) is not None:
            self._sink(codec.mimeType, frame.data, self._timestamps.map(frame.timestamp))

    def get(self) -> None:
        return None


def tap_receiver(receiver: RTCRtpReceiver, sink: FrameSink) -> None:
    """Route a receiver's encoded frames to ``sink``, each once complete; call before it starts."""
    if getattr(receiver, _DECODER_THREAD, "missing") is not None:
        raise SeamBroken("receiver already started (or aiortc renamed __decoder_thread)")
    for name in (_DECODER_QUEUE, _JITTER_BUFFER, _TIMESTAMP_MAPPER):
        if not hasattr(receiver, name):
            raise SeamBroken(f"aiortc's RTCRtpReceiver has no {name} any more")
    assembler = FrameAssembler(getattr(receiver, _JITTER_BUFFER))
    setattr(receiver, _JITTER_BUFFER, assembler)
    tap = FrameTap(sink, assembler, getattr(receiver, _TIMESTAMP_MAPPER))
    setattr(receiver, _DECODER_QUEUE, tap)


async def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Send a PLI for the media SSRC(s) a receiver is getting."""
    rtx_ssrcs: dict[int, int] = getattr(receiver, _RTX_SSRC)
    for source in receiver.getSynchronizationSources():
        if source.source not in rtx_ssrcs:
            await receiver._send_rtcp_pli(source.source)


class DeferredBitrateEstimator:
    """aiortc's ``RemoteBitrateEstimator``, built when its first packet arrives."""

    def __init__(self) -> None:
        self.estimator: RemoteBitrateEstimator | None = None

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        if self.estimator is None:
            self.estimator = RemoteBitrateEstimator()
        return self.estimator.add(arrival_time_ms, abs_send_time, payload_size, ssrc)


def defer_bitrate_estimators() -> None:
    """Receivers made from now on build their bitrate estimator on their first packet."""
    rtcrtpreceiver.RemoteBitrateEstimator = DeferredBitrateEstimator  # type: ignore[attr-defined, assignment]


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC aiortc negotiated (and signalled in SDP) for this sender."""
    ssrc: int = sender._ssrc
    return ssrc


async def send_rtcp(sender: RTCRtpSender, packet: bytes) -> None:
    """SRTCP-protect and send one RTCP packet on a sender's transport (aiortc's own path)."""
    await sender.transport._send_rtp(packet)


def keepalive_packet(sender: RTCRtpSender) -> bytes:
    """A minimal RTCP packet (SDES with the sender's SSRC and a CNAME) for liveness.

    Any datagram counts as life at the far end (``packetsReceived`` of its
    transport); an SDES changes no receiver state, unlike a sender report.
    """
    chunk = RtcpSourceInfo(ssrc=sender_ssrc(sender), items=[(1, b"tierstream")])
    return bytes(RtcpSdesPacket(chunks=[chunk]))


@dataclass(frozen=True)
class OutboundSrtp:
    """What a native sender needs from one DTLS transport.

    ``profile`` is libsrtp's number for the negotiated SRTP profile (AES-GCM when
    the peer offers it), ``key`` our outbound master key and salt; ``fd`` and
    ``address`` are the nominated ICE pair's UDP socket and remote address, or
    -1 and None when that pair is a TURN relay.
    """

    profile: int
    key: bytes
    fd: int
    address: tuple[str, int] | None


def outbound_srtp(dtls: RTCDtlsTransport) -> OutboundSrtp:
    """Our outbound SRTP keys and socket for a connected DTLS transport.

    The keys are derived the way ``RTCDtlsTransport._setup_srtp`` derives them
    (RFC 5764 keying material export, client key first), from the same session;
    ``tests/media/test_aiortc_seam.py`` checks that the peer decrypts what they
    protect.
    """
    if dtls._state is not State.CONNECTED:
        raise ConnectionError("the player's DTLS transport is not connected")
    ssl = dtls._ssl
    if ssl is None:
        raise ConnectionError("the player's DTLS transport has no TLS session")
    selected = ssl.get_selected_srtp_profile()
    profile = next((p for p in dtls._srtp_profiles if p.openssl_profile == selected), None)
    if profile is None:
        raise ConnectionError(f"no SRTP profile negotiated ({selected!r})")
    material = ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    key: bytes = profile.get_key_and_salt(material, 1 if dtls._role == "server" else 0)
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("the player's ICE transport has no nominated pair")
    if type(pair.protocol) is not StunProtocol:
        return OutboundSrtp(profile.libsrtp_profile, key, -1, None)
    sock = pair.protocol.transport.get_extra_info("socket")
    host, port = pair.remote_addr[:2]
    return OutboundSrtp(profile.libsrtp_profile, key, sock.fileno(), (host, port))


async def send_protected(sender: RTCRtpSender, packet: bytes) -> None:
    """Send one SRTP packet on a sender's ICE transport (the TURN path: it awaits)."""
    await sender.transport.transport._send(packet)


class SentCounters(Protocol):
    """What sender reports need from whoever sends a track's RTP."""

    @property
    def packets(self) -> int: ...
    @property
    def octets(self) -> int: ...
    @property
    def last_timestamp(self) -> int: ...
    @property
    def last_sent_ntp(self) -> int: ...


class _ReportingSender(RTCRtpSender):
    """An ``RTCRtpSender`` whose sender-report fields read a ``SentCounters``."""

    _tierstream_counters: SentCounters


def _reading(name: str) -> property:
    def read(self: _ReportingSender) -> int:
        value: int = getattr(self._tierstream_counters, name)
        return value

    return property(read)


for _private, _public in zip(
    _SENDER_COUNTERS, ("last_sent_ntp", "last_timestamp", "packets", "octets"), strict=True
):
    setattr(_ReportingSender, _private, _reading(_public))


def report_sent(sender: RTCRtpSender, counters: SentCounters) -> None:
    """Make aiortc's sender reports (and getStats) describe what ``counters`` sent."""
    sender.__class__ = _ReportingSender
    sender._tierstream_counters = counters  # type: ignore[attr-defined]


def hook_sender_feedback(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_nack: Callable[[list[int]], Awaitable[None]] | None = None,
) -> None:
    """Take PLI/FIR (and NACK if ``on_nack``) from the remote receiver of ``sender``.

    Everything else (receiver reports, REMB) still goes to aiortc's handler.
    """
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            on_keyframe_request()
        elif on_nack and isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            await on_nack(list(packet.lost))
        else:
            await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def packetize(mime_type: str, frame: bytes, picture_id: int) -> list[bytes]:
    """Split one encoded frame into RTP payloads exactly as aiortc's sender would."""
    name = mime_type.split("/")[1].lower()
    if name == "vp8":
        payloads: list[bytes] = Vp8Encoder._packetize(frame, picture_id)
    elif name == "h264":
        payloads = H264Encoder._packetize(H264Encoder._split_bitstream(frame))
    else:
        payloads = [frame]
    return payloads


def split_annexb(frame: bytes) -> list[bytes]:
    """The NAL units of an Annex B H.264 frame, as aiortc's packetiser sees them."""
    return list(H264Encoder._split_bitstream(frame))


def watch_refusals(pc: RTCPeerConnection, on_refused: Callable[[], None]) -> bool:
    """Call ``on_refused`` whenever the remote end of ``pc``'s nominated pair answers one of
    our datagrams with ICMP "port unreachable": nothing listens there any more.

    aioice's sockets are not connected, and Linux tells such a socket about ICMP errors
    only when asked (``IP_RECVERR``); then each error is queued on the socket, the next
    read or write fails (asyncio hands that to ``error_received``) and the queue says
    which destination refused. Only the nominated remote address counts: a refusal
    from any other (a candidate pair ICE tried and dropped) says nothing about the
    upstream. The queue is emptied at every error, as an unread queue would keep the
    socket readable forever. Returns False where this cannot be watched (not Linux, or
    the pair is a TURN relay, whose server answers for the peer).
    """
    if sys.platform != "linux":
        return False
    watching = False
    for connection in ice_connections(pc):
        pair = connection._nominated.get(1)
        if pair is None or type(pair.protocol) is not StunProtocol:
            continue
        protocol = pair.protocol
        sock = protocol.transport.get_extra_info("socket")
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        remote = pair.remote_addr
        original = protocol.error_received

        def error_received(
            exc: Exception, *, _sock: Any = sock, _remote: Any = remote, _original: Any = original
        ) -> None:
            if _remote in _refused_destinations(_sock):
                on_refused()
            _original(exc)

        protocol.error_received = error_received  # type: ignore[method-assign]
        watching = True
    return watching


def _refused_destinations(sock: Any) -> list[tuple[str, int]]:
    """Empty a socket's ICMP error queue; the destinations that answered "port unreachable".

    The queue is read through a duplicate descriptor (asyncio's socket wrapper has no
    ``recvmsg``); both share one socket, non-blocking.
    """
    refused: list[tuple[str, int]] = []
    with sock.dup() as reader:
        while True:
            try:
                _, ancillary, _, destination = reader.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:  # BlockingIOError once the queue is empty
                return refused
            for _, _, data in ancillary:
                too_short = len(data) < _EXTENDED_ERROR.size
                if not too_short and _EXTENDED_ERROR.unpack_from(data)[0] == errno.ECONNREFUSED:
                    refused.append((destination[0], destination[1]))


def ice_connections(pc: RTCPeerConnection) -> Iterable[Connection]:
    """The aioice connections behind every transport of a peer connection."""
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        gatherer = transceiver.sender.transport.transport.iceGatherer
        if id(gatherer) not in seen:
            seen.add(id(gatherer))
            yield gatherer._connection
    if pc.sctp is not None:
        yield pc.sctp.transport.transport.iceGatherer._connection


def count_rtp(
    pc: RTCPeerConnection, on_packet: Callable[[bytes], None], *, consume: bool = True
) -> Callable[[bytes], bytes]:
    """Hand every SRTP packet of ``pc`` to ``on_packet`` as it leaves the socket.

    For benchmark players that must cost as little as possible: SRTP leaves the
    RTP header in clear (sequence number, timestamp, marker), so counting needs
    no decryption, no DTLS layer, no queue. DTLS, STUN and RTCP still take
    aiortc's path, and with ``consume=False`` the RTP does too (a test that reads
    the headers a player receives while it also receives the frames). The
    returned function decrypts a packet when a payload must be read (once DTLS
    is up).
    """
    transceivers = pc.getTransceivers()
    dtls = transceivers[0].receiver.transport

    for connection in ice_connections(pc):
        original = connection.data_received

        def data_received(data: bytes, component: int, *, _original: Any = original) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224:
                on_packet(data)
                if consume:
                    return
            _original(data, component)

        connection.data_received = data_received  # type: ignore[method-assign]

    def unprotect(packet: bytes) -> bytes:
        if dtls._rx_srtp is None:
            raise ConnectionError("SRTP before this peer's DTLS handshake completed")
        plain: bytes = dtls._rx_srtp.unprotect(packet)
        return plain

    return unprotect


def _nominated_sockets(pc: RTCPeerConnection) -> Iterable[socket.socket]:
    """The UDP sockets of a connected peer's nominated pairs (not TURN relays)."""
    for connection in ice_connections(pc):
        pair = connection._nominated.get(1)
        if pair is not None and type(pair.protocol) is StunProtocol:
            yield pair.protocol.transport.get_extra_info("socket")


def enlarge_receive_buffer(pc: RTCPeerConnection, size: int) -> None:
    """Let a connected peer's nominated UDP socket queue ``size`` bytes (capped by the
    kernel's ``net.core.rmem_max``): an ingest whose event loop is held up for a moment
    (DTLS handshakes of a join storm) then gets its packets late instead of losing them."""
    for sock in _nominated_sockets(pc):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


SO_MEMINFO = 55  # Linux <asm-generic/socket.h>: a socket's memory, sk_rmem_alloc first


def queued_bytes(pc: RTCPeerConnection) -> int:
    """Bytes the kernel holds unread in a connected peer's nominated UDP socket
    (``SO_MEMINFO``'s receive allocation: datagrams with their buffers' overhead)."""
    queued = 0
    for sock in _nominated_sockets(pc):
        with contextlib.suppress(OSError):  # closed under us: nothing waits there
            (allocated,) = struct.unpack("I", sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4))
            queued = max(queued, allocated)
    return queued


def take_socket(pc: RTCPeerConnection) -> tuple[int, Callable[[bytes, Any], None]]:
    """Take a connected (BUNDLEd) peer's UDP socket off the event loop (benchmark players).

    Returns the socket's descriptor, for a reader thread of the caller's own, and the
    function that hands aioice a datagram that is not RTP (STUN, DTLS, RTCP); call it
    on the event loop. asyncio stops reading the socket (its private
    ``_remove_reader``; public ``remove_reader`` refuses a transport's socket).
    """
    connection = next(iter(ice_connections(pc)))
    pair = connection._nominated[1]
    transport = pair.protocol.transport
    fd: int = transport.get_extra_info("socket").fileno()
    asyncio.get_running_loop()._remove_reader(fd)  # type: ignore[attr-defined]
    deliver: Callable[[bytes, Any], None] = pair.protocol.datagram_received
    return fd, deliver


def settle_connect_on_close(pc: RTCPeerConnection) -> None:
    """Drop what aiortc's connect task raises once ``pc`` is closed; other failures stay loud."""
    connect = getattr(pc, _CONNECT)

    async def connect_until_closed() -> None:
        try:
            await connect()
        except Exception:
            if pc.signalingState != "closed":
                raise

    setattr(pc, _CONNECT, connect_until_closed)


def codec_compatible(a: Any, b: Any) -> bool:
    """aiortc's own test of whether two codec descriptions can talk (H.264 profiles)."""
    return bool(rtcpeerconnection.is_codec_compatible(a, b))


def check() -> None:
    """Fail with a clear message if any hook above no longer fits aiortc."""
    problems: list[str] = []
    if aiortc.__version__ != PINNED_AIORTC:
        problems.append(f"aiortc is {aiortc.__version__}, this seam was written for 1.16.0")
    worker = inspect.signature(rtcrtpreceiver.decoder_worker)
    if list(worker.parameters) != ["loop", "input_q", "output_q", "decode_error"]:
        problems.append("rtcrtpreceiver.decoder_worker changed its arguments")
    receiver_src = inspect.getsource(RTCRtpReceiver)
    for needle in (
        "self.__decoder_queue.put((codec, encoded_frame))",
        "self.__rtx_ssrc",
        "packet._data = depayload(",
        "= self.__jitter_buffer.add(packet)",
        "self.__timestamp_mapper.map(",
        "self.__remote_bitrate_estimator = RemoteBitrateEstimator()",
        "remb = self.__remote_bitrate_estimator.add(",
    ):
        if needle not in receiver_src:
            problems.append(f"RTCRtpReceiver no longer contains {needle!r}")
    if "return pli_flag, self._remove_frame(packet.sequence_number)" not in inspect.getsource(
        JitterBuffer
    ):
        problems.append("JitterBuffer.add no longer ends with _remove_frame")
    buffer = JitterBuffer(capacity=16, is_video=True)
    for attr in ("_origin", "_packets", "_capacity", "_is_video", "remove", "_remove_frame"):
        if not hasattr(buffer, attr):
            problems.append(f"JitterBuffer.{attr} is gone")
    sender_src = inspect.getsource(RTCRtpSender)
    for name in _SENDER_COUNTERS:
        if "self." + name.removeprefix("_RTCRtpSender") not in sender_src:
            problems.append(f"RTCRtpSender no longer keeps {name}")
    for owner, attr in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpSender, "_handle_rtcp_packet"),
        (Vp8Encoder, "_packetize"),
        (H264Encoder, "_packetize"),
        (H264Encoder, "_split_bitstream"),
        (rtcpeerconnection, "is_codec_compatible"),
        (Connection, "get_component_candidates"),
    ):
        if not hasattr(owner, attr):
            problems.append(f"{getattr(owner, '__name__', owner)}.{attr} is gone")
    peer_src = inspect.getsource(RTCPeerConnection)
    if (
        not hasattr(RTCPeerConnection, _CONNECT)
        or "ensure_future(self.__connect())" not in peer_src
    ):
        problems.append("RTCPeerConnection no longer connects in a task of __connect")
    if 'self.__setSignalingState("closed")' not in peer_src:
        problems.append("RTCPeerConnection.close no longer sets signalingState closed first")
    if "self._connection = Connection(" not in inspect.getsource(RTCIceGatherer):
        problems.append("RTCIceGatherer no longer holds an aioice Connection in _connection")
    if "self._nominated[" not in inspect.getsource(Connection):
        problems.append("aioice's Connection no longer keeps its nominated pairs in _nominated")
    dtls_src = inspect.getsource(RTCDtlsTransport)
    for needle in (
        "self._rx_srtp = Session(",
        "self._state != State.CONNECTED",
    ):
        if needle not in dtls_src:
            problems.append(f"RTCDtlsTransport no longer contains {needle!r}")
    for needle in (
        'self._ssl.export_keying_material(\n            b"EXTRACTOR-dtls_srtp"',
        'if self._role == "server":\n            srtp_tx_key = srtp_profile.get_key_and_salt(',
        "self._ssl.get_selected_srtp_profile()",
        "for srtp_profile in self._srtp_profiles:",
    ):
        if needle not in dtls_src:
            problems.append(f"RTCDtlsTransport no longer derives SRTP keys with {needle!r}")
    if "self._send = self._connection.send" not in inspect.getsource(RTCIceTransport):
        problems.append("RTCIceTransport no longer sends with _send (aioice's Connection.send)")
    if not hasattr(StunProtocol, "error_received") or "self._protocol.error_received(exc)" not in (
        inspect.getsource(selector_events)
    ):
        problems.append("refused packets no longer reach StunProtocol.error_received")
    if not isinstance(getattr(CandidatePair, "remote_addr", None), property):
        problems.append("aioice's CandidatePair.remote_addr is gone")
    if not hasattr(Connection, "data_received"):
        problems.append("aioice's Connection.data_received is gone")
    if not hasattr(RTCDtlsTransport, "_send_rtp"):
        problems.append("RTCDtlsTransport._send_rtp is gone (keepalives on pulls send through it)")
    estimator = getattr(rtcrtpreceiver, "RemoteBitrateEstimator", None)
    if estimator not in (RemoteBitrateEstimator, DeferredBitrateEstimator):
        problems.append("rtcrtpreceiver no longer builds aiortc.rate's RemoteBitrateEstimator")
    if list(inspect.signature(RemoteBitrateEstimator.add).parameters) != [
        "self",
        "arrival_time_ms",
        "abs_send_time",
        "payload_size",
        "ssrc",
    ]:
        problems.append("RemoteBitrateEstimator.add changed its arguments")
    if problems:
        raise SeamBroken("aiortc internals moved: " + "; ".join(problems))
