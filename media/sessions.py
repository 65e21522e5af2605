"""Peer sessions: one aiortc peer connection each, ingesting or viewing a stream.

An ``IngestSession`` receives a stream (from a publisher, or pulled from an
upstream node: the same code) and feeds its encoded frames, never decoded, into
a ``Source``. A ``PlaySession`` sends a source's tracks to one player (a
player, or a downstream node pulling from us) through ``Forwarder``s. Both
report their end (the peer left, ICE or DTLS failed, a pull's upstream went
silent) once, with the reason, to a callback of the engine, which owns every
session and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from aiortc import RTCRtpReceiver, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media import _fanout, aiortc_seam, ice, sdp
from media.codecs import TrackCodec
from media.config import MediaConfig
from media.errors import BadSdp, CodecMismatch
from media.forwarder import Forwarder, mid_extension
from media.source import Source, TrackSource, new_epoch

logger = logging.getLogger(__name__)

INGEST_BUFFER = 4 << 20  # bytes an ingest socket may queue while the event loop is busy
PlayRole = Literal["player", "downstream"]  # a player, or a downstream node pulling from us
Role = Literal["publisher", "pull"] | PlayRole


class Session:
    """A peer connection, its background tasks, and its one-time end report."""

    def __init__(
        self,
        session_id: str,
        stream_id: str,
        role: Role,
        config: MediaConfig,
        on_end: Callable[[Session], None],
    ) -> None:
        self.id = session_id
        self.stream_id = stream_id
        self.role = role
        self.config = config
        self.pc = ice.peer_connection(config.ice_servers)
        aiortc_seam.settle_connect_on_close(self.pc)
        self._on_end = on_end
        self._ended = False
        self.end_reason = ""
        self.closed_by_peer = False
        """The peer closed the connection itself (DTLS close): it was there to say so."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadline = asyncio.get_running_loop().call_later(
            config.connect_timeout_s, self._connect_timed_out
        )
        self.pc.on("connectionstatechange", self._state_changed)

    async def answer(self, offer_sdp: str, wanted: tuple[str, ...]) -> str:
        """Take the peer's offer; our answer, with our candidates."""
        await self._set_remote(offer_sdp, "offer", wanted)
        return await ice.describe(self.pc, "answer", self.config.candidate_addresses)

    async def offer(self) -> str:
        return await ice.describe(self.pc, "offer", self.config.candidate_addresses)

    async def accept(self, answer_sdp: str, wanted: tuple[str, ...]) -> None:
        """Take the peer's answer to our offer."""
        await self._set_remote(answer_sdp, "answer", wanted)

    async def add_candidates(self, fragment: str) -> None:
        local = self.pc.localDescription
        if local is None:
            raise BadSdp("the session has no description yet to add candidates to")
        candidates, ended = sdp.trickle_candidates(fragment, sdp.transports(local.sdp))
        for candidate in candidates:
            await self.pc.addIceCandidate(candidate)
        if ended:
            await self.pc.addIceCandidate(None)

    async def close(self) -> None:
        """Stop everything; the end callback is not called for a close we asked for."""
        self._ended = True
        self._deadline.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pc.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task this session owns (cancelled and awaited on close)."""
        if self._ended:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_alive(self, sender: Any) -> None:
        """Tell the node at the other end that we live, ``keepalive_interval_s`` apart.

        Both ends of a pull are ours. Upstream, a downstream session sends these
        whether it has media or not: its puller counts any packet as life and takes
        ``upstream_silence_s`` without one for death, and a node holding the stream
        without media (its own upstream lost) sends nothing else but sender reports
        up to 1.5 s apart. Downstream, a pull sends them too: the moment its upstream's
        process is gone, the next one is answered "port unreachable" (``_refused``).
        """
        packet = aiortc_seam.keepalive_packet(sender)
        while True:
            await asyncio.sleep(self.config.keepalive_interval_s)
            try:
                await aiortc_seam.send_rtcp(sender, packet)
            except ConnectionError:
                return

    def _connected(self) -> None:
        """Media can flow; subclasses start what needs a connected transport."""

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self._ended:
            self._deadline.cancel()
            self._connected()
        elif state in ("failed", "closed"):
            logger.debug("session %s of %s: connection %s", self.id, self.stream_id, state)
            self.closed_by_peer = state == "closed" and not self._ended
            self._end(f"connection {state}")

    def _connect_timed_out(self) -> None:
        reason = f"did not connect within {self.config.connect_timeout_s:g} s"
        logger.info("%s %s of %s %s", self.role, self.id, self.stream_id, reason)
        self._end(reason)

    def end(self, reason: str) -> None:
        """End this session as if its peer had gone, for ``reason`` (the engine then closes it)."""
        self._end(reason)

    def _end(self, reason: str) -> None:
        if not self._ended:
            self._ended = True
            self.end_reason = reason
            self._deadline.cancel()
            self._on_end(self)

    async def _set_remote(self, text: str, kind: str, wanted: tuple[str, ...]) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp.strip_mdns(text), kind))
        except OperationError as exc:
            raise CodecMismatch(wanted, sdp.offered_codecs(sdp.parse(text))) from exc
        except (ValueError, InternalError, InvalidAccessError, InvalidStateError) as exc:
            raise BadSdp(f"the {kind} cannot be used: {exc}") from exc


class IngestSession(Session):
    """Receives one stream and feeds its encoded frames into a ``Source``."""

    def __init__(
        self,
        session_id: str,
        stream_id: str,
        role: Role,
        config: MediaConfig,
        on_end: Callable[[Session], None],
        on_flowing: Callable[[IngestSession], None],
    ) -> None:
        super().__init__(session_id, stream_id, role, config, on_end)
        self.source: Source | None = None
        self.epoch = new_epoch()
        self._on_flowing = on_flowing
        self._flowing = False
        self._video: list[RTCRtpReceiver] = []
        self._refused_at: float | None = None
        """When the upstream's address last refused a packet (``_refused``)."""
        self._watch = asyncio.Event()
        """Wakes ``_watch_upstream`` before its next poll (a refusal came)."""

    def receive(self, kind: str, preferences: list[Any]) -> None:
        """Add a receive-only track whose frames are tapped, never decoded."""
        transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        transceiver.setCodecPreferences(preferences)
        aiortc_seam.tap_receiver(transceiver.receiver, self._frame)
        if kind == "video":
            self._video.append(transceiver.receiver)

    def feed(self, source: Source) -> None:
        """Feed ``source`` from now on; its keyframe requests come to us."""
        self.source = source
        source.keyframes.connect(self._request_keyframe)

    async def close(self) -> None:
        """Stop feeding at once: frames still in flight must not reach a source
        that a new pull may already feed."""
        source, self.source = self.source, None
        if source is not None:
            source.keyframes.disconnect(self._request_keyframe)
        await super().close()

    def _connected(self) -> None:
        aiortc_seam.enlarge_receive_buffer(self.pc, INGEST_BUFFER)
        if self.role == "pull":
            transceivers = self.pc.getTransceivers()
            if transceivers:
                self.spawn(self._keep_alive(transceivers[0].sender))
            aiortc_seam.watch_refusals(self.pc, self._refused)
            self.spawn(self._watch_upstream())

    def queued(self) -> int:
        """Bytes of this ingest that wait unread in its socket (what the loop is behind by)."""
        return aiortc_seam.queued_bytes(self.pc)

    def _refused(self) -> None:
        """The upstream's address answered "port unreachable": its process is gone."""
        self._refused_at = time.monotonic()
        self._watch.set()

    async def _watch_upstream(self) -> None:
        """End the pull once its upstream is gone, by the first of two signals.

        - **Silence**: nothing at all (no RTP, no RTCP) for ``upstream_silence_s``. A
          frozen upstream, one cut off, or one on a machine that died sends nothing,
          and ICE consent would take ~30 s to notice. A live upstream without media
          (it holds the stream, its own pull lost) still sends keepalives, so its
          downstream nodes keep waiting quietly rather than all failing over at once.
        - **Refusal**: the upstream's address answered one of our keepalives "port
          unreachable" (a process that crashed or was killed on a live host), and
          nothing has come since for two of its keepalive intervals. A refusal alone
          is not enough: only silence proves the upstream is not sending any more,
          so a forged or stray ICMP error cannot end a pull that media still reaches.
          A refusal counts for one silence interval.

        The transport's packet counter is read four times per silence interval, and
        four times per confirmation interval after a refusal.
        """
        limit = self.config.upstream_silence_s
        confirm = 2 * self.config.keepalive_interval_s
        received, heard_at = -1, time.monotonic()
        while True:
            stats = await self.pc.getStats()
            count = sum(s.packetsReceived for s in stats.values() if s.type == "transport")
            now = time.monotonic()
            if count != received:
                received, heard_at = count, now
            refused = self._refused_at is not None and now - self._refused_at < limit
            if now - heard_at >= limit:
                reason = f"nothing from upstream for {limit:g} s"
            elif refused and now - heard_at >= confirm:
                reason = (
                    f"its address refuses packets (port unreachable), nothing from it "
                    f"for {now - heard_at:.2f} s"
                )
            else:
                self._watch.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._watch.wait(), (confirm if refused else limit) / 4)
                continue
            logger.info("pull %s of %s: %s", self.id, self.stream_id, reason)
            self._end(reason)
            return

    def _frame(self, mime_type: str, data: bytes, timestamp: int) -> None:
        source = self.source
        track = source.tracks.get(mime_type.split("/")[0]) if source else None
        if track is None or track.codec.mime_type != mime_type:
            return
        track.push(data, timestamp, self.epoch)
        if not self._flowing:
            self._flowing = True
            self._on_flowing(self)

    def _request_keyframe(self) -> None:
        for receiver in self._video:
            self.spawn(self._send_pli(receiver))

    async def _send_pli(self, receiver: RTCRtpReceiver) -> None:
        try:
            await aiortc_seam.request_keyframe(receiver)
        except ConnectionError:
            logger.debug("no keyframe request to %s: transport closed", self.stream_id)


class ForwardedTrack(MediaStreamTrack):
    """The track aiortc's sender believes it sends.

    Our ``Forwarder`` writes the RTP itself, so ``recv`` never yields a frame: it
    waits until the track stops, which keeps aiortc's per-player encode loop
    asleep instead of polling.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._stopped.set()


class PlaySession(Session):
    """Sends a source's tracks to one player or one downstream node pulling from us."""

    def __init__(
        self,
        session_id: str,
        stream_id: str,
        role: PlayRole,
        config: MediaConfig,
        on_end: Callable[[Session], None],
        source: Source,
        handshaken: Callable[[], None],
    ) -> None:
        super().__init__(session_id, stream_id, role, config, on_end)
        self.source = source
        self._handshaken = handshaken
        """Called (perhaps more than once) when the player's handshake is over: its
        forwarding started, or it ended (``media.admission``'s turn)."""
        self.forwarders: list[Forwarder] = []
        self._tracks: list[tuple[Any, TrackSource]] = []
        self._senders: dict[int, _fanout.Sender] = {}  # one per DTLS transport (BUNDLE: one)

    def send(self, codecs: tuple[TrackCodec, ...]) -> None:
        """Add a send-only track for each of these codecs of the source."""
        for codec in codecs:
            track = self.source.tracks[codec.kind]
            transceiver = self.pc.addTransceiver(ForwardedTrack(codec.kind), direction="sendonly")
            transceiver.setCodecPreferences(codec.preferences())
            self._tracks.append((transceiver, track))

    async def close(self) -> None:
        self._handshaken()
        for forwarder in self.forwarders:
            forwarder.close()
        for sender in self._senders.values():
            sender.close()
        await super().close()

    def _sender(self, dtls: Any) -> _fanout.Sender:
        """The native SRTP sender of one DTLS transport, made on first use."""
        sender = self._senders.get(id(dtls))
        if sender is None:
            out = aiortc_seam.outbound_srtp(dtls)
            sender = _fanout.Sender(out.profile, out.key, out.fd, out.address)
            self._senders[id(dtls)] = sender
        return sender

    def _end(self, reason: str) -> None:
        super()._end(reason)
        self._handshaken()

    def _connected(self) -> None:
        try:
            self._start_forwarding()
        finally:
            self._handshaken()

    def _start_forwarding(self) -> None:
        if self.forwarders:
            return
        if self.role == "downstream" and self._tracks:
            self.spawn(self._keep_alive(self._tracks[0][0].sender))
        local = self.pc.localDescription
        assert local is not None
        lines = {line.mid: line for line in sdp.parse(local.sdp)}
        for transceiver, track in self._tracks:
            line = lines.get(transceiver.mid)
            if line is None or not line.payload_types:
                continue
            try:
                srtp = self._sender(transceiver.sender.transport)
            except ConnectionError as exc:
                logger.info("player %s of %s cannot be sent to: %s", self.id, self.stream_id, exc)
                self._end(str(exc))
                return
            forwarder = Forwarder(
                transceiver.sender,
                track,
                srtp,
                line.payload_types[0],
                mid_extension(line.mid_extension, line.mid),
                self.config.play_queue_limit,
            )
            self.forwarders.append(forwarder)
            forwarder.start(self.spawn)
