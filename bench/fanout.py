"""Edge fan-out benchmark: players per core and CPU per forwarded packet, against baselines.

    python bench/fanout.py               # full run (some minutes per relay)
    python bench/fanout.py --quick       # short run
    python bench/fanout.py --two-cores   # also tierstream on both cores, two fan-out threads

One synthetic publisher (VP8, 640x360, 30 fps, ~1 Mbit/s, a keyframe every 2 s,
video only) runs in a feed process of its own, so that its encoder never starves
beside the players; each step also checks that it really sent 28+ fps. The relay
runs in its own process pinned to core 0. Players run in this (load) process on
the other cores: aiortc peers for ICE, DTLS and RTCP, and, once a player has its
first keyframe (found by decrypting the first packet of each frame), its socket
moves to one epoll thread (``SocketReader``) that only counts packets and marker
bits in the clear RTP header; the rest (STUN, DTLS, RTCP) goes back to aioice.
The players' side thereby costs a fraction of the relay's per packet, so the
relay's core saturates first; the load process's CPU is printed at each step.

The number of players steps up until the slowest falls below 28 fps, or the
fastest goes above 31 (a 30 fps source cannot be received faster: a saturated
relay flushing a backlog, or the players' side reading late), or the feed or the
players' process is short of CPU, or the time budget ends. At the end a join
storm (200 players in 2 s while 500 watch; 50 while 200 with --quick; any other
size with ``--storm JOINERS/WATCHERS``; fewer watchers if the relay held fewer at
28+ fps, the newest players leaving first) measures the watchers' lowest frame
rate and the joiners' join -> first keyframe.
CPU per packet is the relay process's own user + system time (``getrusage``;
for Janus, its process's times) over the packets the players received, so the
kernel's share of sending on loopback (which includes delivery to the players'
sockets) is charged to the relay, as it would be on a real host.

Relays measured in the same run: tierstream (its native fan-out); Janus 1.1.2's
Streaming plugin (``event_loops = 1``) when Debian's ``janus`` package is
installed (``apt-get install janus``; see ``bench/janus.py``), fed the same
frames as plain RTP; aiortc's ``MediaRelay`` (decode once, encode per player).
The pure-Python forwarding path is gone; its last full run is quoted. Printed:
players at 28-31 fps, the CPU-normalised players per core, us per packet
(user + sys), RSS per player, join -> first keyframe, the ratios, and the join
storm. ``--profile FILE`` writes a cProfile of tierstream's relay process.
Everything started here is stopped by handle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import logging
import multiprocessing
import os
import random
import resource
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil
import pylibsrtp
from aiortc import RTCSessionDescription
from aiortc.codecs import depayload
from aiortc.contrib.media import MediaRelay
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bench import janus
from media import aiortc_seam, codecs, ice, sdp
from media.config import MediaConfig
from media.contrib.client import Publisher
from media.contrib.synthetic import SyntheticVideoTrack, VideoSettings
from media.engine import MediaEngine
from media.errors import Overloaded

LOOPBACK = ("127.0.0.1",)
MIN_FPS = 28.0
MAX_FPS = 31.0
LOAD_LIMIT = 0.9  # beyond this the players, not the relay, would be measured
RELAY_CORE = 0
STORM_CALM_S = 3.0  # after players left for the storm, before it: their sessions close


# ---------------------------------------------------------------- relay process


class QuietListener:
    started = False

    def stream_started(self, stream_id: str, codecs: tuple[str, ...]) -> None:
        self.started = True

    def stream_ended(self, stream_id: str) -> None: ...
    def upstream_lost(self, stream_id: str, closed_by_upstream: bool) -> None: ...
    def session_ended(self, session_id: str) -> None: ...
    def players_changed(self, stream_id: str, players: int) -> None: ...


class TierstreamRelay:
    """The relay under test: tierstream's media engine."""

    def __init__(self) -> None:
        self.listener = QuietListener()
        self.engine = MediaEngine(MediaConfig(candidate_addresses=LOOPBACK), self.listener)

    def flowing(self) -> bool:
        return self.listener.started

    async def publish(self, offer: str) -> str:
        return (await self.engine.publish("bench", offer)).sdp

    async def play(self, offer: str) -> str:
        return (await self.engine.play("bench", offer)).sdp

    async def close(self) -> None:
        await self.engine.close()


class MediaRelayBaseline:
    """The baseline: aiortc's MediaRelay (decode once, encode per player)."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: list[Any] = []
        self.pcs: list[Any] = []

    async def publish(self, offer: str) -> str:
        pc = ice.peer_connection(())
        self.pcs.append(pc)
        pc.on("track", self.tracks.append)
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        return await ice.describe(pc, "answer", LOOPBACK)

    def flowing(self) -> bool:
        return bool(self.tracks)

    async def play(self, offer: str) -> str:
        pc = ice.peer_connection(())
        self.pcs.append(pc)
        for track in self.tracks:
            pc.addTrack(self.relay.subscribe(track))
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        return await ice.describe(pc, "answer", LOOPBACK)

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


async def serve_relay(mode: str, port_out: Any) -> None:
    relay: TierstreamRelay | MediaRelayBaseline = (
        TierstreamRelay() if mode == "tierstream" else MediaRelayBaseline()
    )
    done = asyncio.Event()

    async def answer(request: dict[str, Any]) -> dict[str, Any]:
        """One request's reply; a relay's refusal or failure is an error reply, as a
        server's 503 or 4xx would be, never the end of this process."""
        op = request["op"]
        reply: dict[str, Any] = {}
        try:
            if op == "publish":
                reply["sdp"] = await relay.publish(request["sdp"])
            elif op == "play":
                reply["sdp"] = await relay.play(request["sdp"])
            elif op == "cpu":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                reply["user"], reply["sys"] = usage.ru_utime, usage.ru_stime
                process = psutil.Process()
                reply["rss"] = process.memory_info().rss
                loop = threading.main_thread().native_id
                reply["loop"] = sum(
                    t.user_time + t.system_time for t in process.threads() if t.id == loop
                )
                reply["flowing"] = relay.flowing()
        except Overloaded as exc:
            reply = {"error": str(exc), "overloaded": True}
        except Exception as exc:  # any other answer from the relay under test, reported
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        return reply

    async def respond(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        reply = {**await answer(request), "id": request["id"]}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()

    clients: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests are served concurrently, as an HTTP server would serve its clients."""
        clients.add(writer)
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        tasks: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            request = json.loads(line)
            if request["op"] == "quit":
                await asyncio.gather(*tasks, return_exceptions=True)
                await respond(request, writer)
                done.set()
                break
            task = asyncio.ensure_future(respond(request, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    port_out.send(server.sockets[0].getsockname()[1])
    await done.wait()
    server.close()
    for client in clients:  # the feed's, still open: its handler ends at once
        client.close()
    # Let them end by themselves: one still waiting when asyncio.run cancels it makes
    # asyncio's stream callback log a CancelledError traceback.
    await asyncio.gather(*handlers, return_exceptions=True)
    await relay.close()


class Notable(logging.Filter):
    """The relay's log lines worth a bench reader's eye: warnings, and how a stream or an
    ICE connection ended (a lost publisher explains every step after it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return record.levelno >= logging.WARNING or "ended (" in text or "Consent" in text


def relay_process(mode: str, cores: set[int], port_out: Any, profile: str | None) -> None:
    """The relay, on ``cores``: tierstream's fan-out starts one thread per core it may use."""
    handler = logging.StreamHandler()
    handler.addFilter(Notable())
    handler.setFormatter(logging.Formatter("  relay %(asctime)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for name in ("media.engine", "aioice.ice"):
        logging.getLogger(name).setLevel(logging.INFO)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cores)
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(serve_relay(mode, port_out))
        profiler.disable()
        profiler.dump_stats(profile)
    else:
        asyncio.run(serve_relay(mode, port_out))


class RelayRefused(Exception):
    """The relay answered a request with an error (an overloaded relay's refusal among them)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply["error"])
        self.overloaded = bool(reply.get("overloaded"))


class RelayClient:
    """Talks to the relay process over one JSON-lines TCP connection, many requests at once."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()
        self._replies = asyncio.ensure_future(self._read())

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """The relay's reply; ``RelayRefused`` if it is an error."""
        request_id = next(self._ids)
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiting
        self._writer.write(json.dumps({"op": op, "id": request_id, **fields}).encode() + b"\n")
        await self._writer.drain()
        reply = await waiting
        if "error" in reply:
            raise RelayRefused(reply)
        return reply

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                reply = json.loads(line)
                waiting = self._waiting.pop(reply["id"], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(reply)
        finally:
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError("the relay process closed its port"))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._replies.cancel()
        await asyncio.gather(self._replies, return_exceptions=True)


# ---------------------------------------------------------------- feed process


def feed_process(kind: str, port: int, stop: Any, frames: Any) -> None:
    """The publisher, in a process of its own: its encoder must never starve with the players.

    ``webrtc``: a WHIP-like publisher through the relay process's control port;
    ``rtp``: plain RTP to 127.0.0.1:``port`` (Janus's mountpoint), the same frames
    packetised the same way.
    """

    def sent(frame: bytes) -> None:
        frames.value += 1

    video = SyntheticVideoTrack(
        VideoSettings(mime_type="video/VP8", keyframe_interval_s=2.0), on_frame=sent
    )

    async def webrtc() -> None:
        client = RelayClient(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 20))

        async def publish(offer: str) -> str:
            return str((await client.call("publish", sdp=offer))["sdp"])

        publisher = Publisher([video])
        try:
            await asyncio.wait_for(publisher.start(publish), 20)
            await asyncio.to_thread(stop.wait)
        finally:
            await publisher.close()
            await client.close()

    async def rtp() -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq, picture_id, ssrc = 0, 0, 0x7E57
        try:
            while not stop.is_set():
                packet = await video.recv()
                payloads = aiortc_seam.packetize("video/VP8", bytes(packet), picture_id)
                picture_id = (picture_id + 1) % (1 << 15)
                for index, payload in enumerate(payloads):
                    marked = janus.PAYLOAD_TYPE | (0x80 if index == len(payloads) - 1 else 0)
                    header = struct.pack("!BBHII", 0x80, marked, seq, packet.pts, ssrc)
                    out.sendto(header + payload, ("127.0.0.1", port))
                    seq = (seq + 1) & 0xFFFF
        finally:
            out.close()

    asyncio.run(webrtc() if kind == "webrtc" else rtp())


# ---------------------------------------------------------------- load process


class SocketReader:
    """One thread reading every counting player's socket through epoll.

    A player moves here once it has its first keyframe: from then on a datagram
    costs a ``recvfrom_into`` and a look at two header bytes (RTP: count it, and
    its marker bit ends a frame). Anything else (STUN consent checks, DTLS, RTCP)
    goes back to aioice on the event loop. The event loop's own per-datagram path
    (asyncio, aioice, the seam's hook) costs several times more: at 1,000+
    players that side, not the relay, would be measured.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._poll = select.epoll()
        self._players: dict[int, tuple[socket.socket, CountingPlayer, Any]] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="players", daemon=True)
        self._thread.start()

    def add(self, player: CountingPlayer) -> None:
        fd, deliver = aiortc_seam.take_socket(player.pc)
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        self._players[sock.fileno()] = (sock, player, deliver)
        self._poll.register(sock.fileno(), select.EPOLLIN)

    def remove(self, player: CountingPlayer) -> None:
        for fd, (sock, owner, _) in list(self._players.items()):
            if owner is player:
                self._poll.unregister(fd)
                del self._players[fd]
                sock.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        for sock, _, _ in self._players.values():
            sock.close()
        self._poll.close()

    def _run(self) -> None:
        buffer = bytearray(2048)
        view = memoryview(buffer)
        call = self._loop.call_soon_threadsafe
        while not self._stop:
            for fd, _ in self._poll.poll(0.2):
                entry = self._players.get(fd)
                if entry is None:
                    continue
                sock, player, deliver = entry
                while True:
                    try:
                        size, address = sock.recvfrom_into(buffer)
                    except (BlockingIOError, OSError):
                        break
                    first, second = buffer[0], buffer[1]
                    if 127 < first < 192 and not 191 < second < 224:
                        player.packets += 1
                        if second & 0x80:
                            player.frames += 1
                    else:
                        call(deliver, bytes(view[:size]), address)


@dataclass
class CountingPlayer:
    """A video-only player that counts RTP packets and frames, and notes its first keyframe.

    Until that keyframe, packets take the event loop's path and the first packet
    of each frame is decrypted to find it; then the player's socket moves to the
    ``SocketReader`` thread.
    """

    reader: SocketReader
    joined_at: float = field(default_factory=time.monotonic)
    packets: int = 0
    frames: int = 0
    first_keyframe_at: float | None = None
    pc: Any = None
    _video_pt: int = -1
    _video_codec: Any = None
    _frame_start: bool = True
    _unprotect: Callable[[bytes], bytes] | None = None

    async def play(self, exchange: Callable[[str], Awaitable[str]]) -> None:
        self.pc = ice.peer_connection(())
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        transceiver.setCodecPreferences(codecs.preferences("video"))
        self._unprotect = aiortc_seam.count_rtp(self.pc, self._packet)
        offer = await ice.describe(self.pc, "offer", LOOPBACK)
        answer = await exchange(offer)
        video = next(line for line in sdp.parse(answer) if line.kind == "video")
        self._video_pt = video.payload_types[0]
        assert video.relayable is not None
        self._video_codec = RTCRtpCodecParameters(
            mimeType=video.relayable.mime_type, clockRate=90000, payloadType=self._video_pt
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def answer(self, offer: str) -> str:
        """Take a server's offer (Janus); our answer, with our candidates."""
        self.pc = ice.peer_connection(())
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for transceiver in self.pc.getTransceivers():
            transceiver.direction = "recvonly"
        self._unprotect = aiortc_seam.count_rtp(self.pc, self._packet)
        answer = await ice.describe(self.pc, "answer", LOOPBACK)
        video = next(line for line in sdp.parse(answer) if line.kind == "video")
        self._video_pt = video.payload_types[0]
        self._video_codec = RTCRtpCodecParameters(
            mimeType="video/VP8", clockRate=90000, payloadType=self._video_pt
        )
        return answer

    def _packet(self, data: bytes) -> None:
        if self.first_keyframe_at is not None:
            return  # a packet already on its way when the socket moved
        self.packets += 1
        if data[1] & 0x7F != self._video_pt:
            return
        if self._frame_start and self._unprotect:
            try:
                data = self._unprotect(data)
            except (ConnectionError, pylibsrtp.Error):
                return  # sent before our side of DTLS was done: the next frame will do
            offset = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10:
                offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
            with contextlib.suppress(ValueError):
                start = depayload(self._video_codec, data[offset:])
                if codecs.is_keyframe(self._video_codec.mimeType, start):
                    self.first_keyframe_at = time.monotonic()
                    asyncio.get_running_loop().call_soon(self.reader.add, self)
                    return
        self._frame_start = bool(data[1] & 0x80)
        if self._frame_start:
            self.frames += 1

    async def close(self) -> None:
        self.reader.remove(self)
        if self.pc is not None:
            await self.pc.close()

    async def reset(self) -> None:
        """Back to before ``play`` (a refused join), keeping ``joined_at``: a retry's wait
        counts from the first attempt, as its user would count it."""
        await self.close()
        self.pc, self._unprotect, self._frame_start = None, None, True
        self.packets = self.frames = 0


@dataclass(frozen=True)
class Step:
    players: int
    min_fps: float
    max_fps: float
    relay_user: float  # fractions of one core
    relay_sys: float
    load_cpu: float
    packets_per_s: float
    rss: int  # the relay's, bytes
    feed_fps: float  # what the publisher sent
    relay_loop: float = float("nan")  # the relay's event loop thread, fractions of one core

    @property
    def relay_cpu(self) -> float:
        return self.relay_user + self.relay_sys

    @property
    def us_per_packet(self) -> float:
        return self.relay_cpu / self.packets_per_s * 1e6 if self.packets_per_s else 0.0

    @property
    def user_us(self) -> float:
        return self.relay_user / self.packets_per_s * 1e6 if self.packets_per_s else 0.0

    @property
    def sys_us(self) -> float:
        return self.relay_sys / self.packets_per_s * 1e6 if self.packets_per_s else 0.0


@dataclass
class Result:
    mode: str
    cores: int = 1
    rss_before: int = 0
    storm: Storm | None = None
    steps: list[Step] = field(default_factory=list)
    joins: list[float] = field(default_factory=list)
    stopped_by: str = "end of plan"

    @property
    def sustained(self) -> Step | None:
        good = [
            s
            for s in self.steps
            if s.min_fps >= MIN_FPS
            and s.max_fps <= max(MAX_FPS, s.feed_fps + 1.5)
            and s.feed_fps >= MIN_FPS
        ]
        return good[-1] if good else None

    @property
    def per_core_estimate(self) -> float:
        """Players at the last good step per core of relay CPU used there."""
        best = self.sustained
        return best.players / max(best.relay_cpu, 1e-9) if best else 0.0

    @property
    def capacity_estimate(self) -> float:
        """Players the relay would hold with its cores to itself, from the last good step:
        whichever fills first, its process's ``cores`` or its event loop's thread (which
        can use one core at most; per-thread CPU, where the relay reports it)."""
        best = self.sustained
        if best is None:
            return 0.0
        process = self.cores / max(best.relay_cpu, 1e-9)
        loop = 1 / best.relay_loop if best.relay_loop > 0 else process
        return best.players * min(process, loop)

    @property
    def rss_per_player(self) -> float:
        best = self.sustained
        return (best.rss - self.rss_before) / best.players if best else float("nan")


def load_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ProcessRelay:
    """tierstream or MediaRelay in the bench's relay process, spoken to over its control port."""

    feed = "webrtc"

    def __init__(self, mode: str, cores: set[int], profile: str | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        receive_port, send_port = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=relay_process, args=(mode, cores, send_port, profile), daemon=True
        )
        self._process.start()
        self._port_in = receive_port
        self._client: RelayClient | None = None
        self.port = 0

    async def start(self) -> None:
        self.port = await asyncio.to_thread(self._port_in.recv)
        self._client = RelayClient(
            *await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        )

    async def usage(self) -> dict[str, Any]:
        assert self._client is not None
        return await self._client.call("cpu")

    async def flowing(self) -> bool:
        return bool((await self.usage())["flowing"])

    async def join(self, player: CountingPlayer) -> None:
        client = self._client
        assert client is not None

        async def play(offer: str) -> str:
            return str((await client.call("play", sdp=offer))["sdp"])

        await player.play(play)

    async def stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, ValueError):
                await self._client.call("quit")
            await self._client.close()
        await asyncio.to_thread(self._process.join, 20)
        if self._process.is_alive():
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5)


class JanusRelay:
    """Janus's Streaming plugin (``bench/janus.py``), fed plain RTP."""

    feed = "rtp"

    def __init__(self, cores: set[int]) -> None:
        self._janus = janus.Janus(cores, http_port=free_port(), video_port=free_port("udp"))
        self.port = self._janus.video_port
        self._since = 0.0

    async def start(self) -> None:
        await self._janus.ready()

    async def usage(self) -> dict[str, Any]:
        return self._janus.usage()

    async def flowing(self) -> bool:
        if not self._since:
            self._since = time.monotonic()
        return time.monotonic() - self._since > 1.0  # its mountpoint takes RTP at once

    async def join(self, player: CountingPlayer) -> None:
        try:
            path, offer = await self._janus.watch()
            await self._janus.start(path, await player.answer(offer))
        except (RuntimeError, httpx.HTTPError, ValueError) as exc:
            raise RelayRefused({"error": f"janus: {exc}"}) from exc

    async def stop(self) -> None:
        await self._janus.stop()


class Joins:
    """Players join like a real client: a refused or failed join (the relay's 503, any
    error reply) is counted and tried again after a short back-off, for ``PATIENCE_S``."""

    RETRY_S = 0.5  # the first back-off; doubled each time, at most MAX_RETRY_S
    MAX_RETRY_S = 2.0
    PATIENCE_S = 30.0

    def __init__(self, relay: ProcessRelay | JanusRelay) -> None:
        self.relay = relay
        self.refusals = 0  # overloaded answers
        self.errors = 0  # other error answers
        self.gave_up = 0  # players refused for PATIENCE_S
        self.last_error = ""

    async def join(self, player: CountingPlayer) -> bool:
        """Join ``player``; False if the relay refused it for ``PATIENCE_S``."""
        deadline = time.monotonic() + self.PATIENCE_S
        back_off = self.RETRY_S
        while True:
            try:
                await self.relay.join(player)
                return True
            except RelayRefused as exc:
                if exc.overloaded:
                    self.refusals += 1
                else:
                    self.errors += 1
                self.last_error = str(exc)
            except OSError as exc:  # the relay's control port is gone: no point in retrying
                self.errors += 1
                self.gave_up += 1
                self.last_error = f"the relay went away: {exc!r}"
                await player.reset()
                return False
            await player.reset()
            if time.monotonic() + back_off > deadline:
                self.gave_up += 1
                return False
            await asyncio.sleep(back_off * random.uniform(0.5, 1.5))
            back_off = min(back_off * 2, self.MAX_RETRY_S)

    def summary(self) -> str:
        """What the relay refused so far, for people; empty if nothing."""
        if not (self.refusals or self.errors):
            return ""
        text = f"{self.refusals} refusals, {self.errors} errors"
        if self.gave_up:
            text += f", {self.gave_up} players gave up"
        return f"{text} (last: {self.last_error})"


def free_port(kind: str = "tcp") -> int:
    with socket.socket(
        socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    ) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def join_storm(
    joins: Joins,
    players: list[CountingPlayer],
    reader: SocketReader,
    joiners: int,
    spread: float = 2.0,
) -> Storm:
    """``joiners`` players join within ``spread`` seconds while ``players`` watch."""
    watchers = list(players)
    frames = [v.frames for v in watchers]
    started = time.monotonic()

    async def join(index: int) -> CountingPlayer:
        await asyncio.sleep(spread * index / joiners)
        player = CountingPlayer(reader)
        players.append(player)
        await joins.join(player)  # one that gave up counts as one without a keyframe
        return player

    joined = await asyncio.gather(*(join(i) for i in range(joiners)))
    for _ in range(100):
        if all(p.first_keyframe_at is not None for p in joined):
            break
        await asyncio.sleep(0.1)
    window = max(time.monotonic() - started, spread + 1.0)
    await asyncio.sleep(max(0.0, started + window - time.monotonic()))
    elapsed = time.monotonic() - started
    fps = [(v.frames - f) / elapsed for v, f in zip(watchers, frames, strict=True)]
    waits = [p.first_keyframe_at - p.joined_at for p in joined if p.first_keyframe_at is not None]
    storm = Storm(len(watchers), joiners, min(fps), waits, joiners - len(waits))
    print(
        f"  join storm: {joiners} players joining in {spread:.0f} s while {len(watchers)} watch:"
        f" watchers' min {storm.min_fps:.1f} fps, joiners' first keyframe p50"
        f" {percentile(waits, 0.5) * 1000:.0f} ms, p95 {percentile(waits, 0.95) * 1000:.0f} ms"
        f" ({storm.missing} without one){'; ' + joins.summary() if joins.summary() else ''}",
        flush=True,
    )
    return storm


@dataclass(frozen=True)
class Storm:
    watchers: int
    joiners: int
    min_fps: float  # the watchers' lowest, over the storm
    waits: list[float]  # each joiner's join -> first keyframe, seconds
    missing: int  # joiners with no keyframe at the end


async def run_relay(
    mode: str,
    cores: set[int],
    plan: list[int],
    window: float,
    budget: float,
    profile: str | None,
    storm: tuple[int, int] = (0, 0),
) -> Result:
    """One relay's run: the steps of ``plan``, then a storm of ``storm[0]`` joiners over
    ``storm[1]`` watchers (none if ``storm[0]`` is 0)."""
    result = Result(f"{mode}/{len(cores)}", cores=len(cores))
    relay: ProcessRelay | JanusRelay = (
        JanusRelay(cores) if mode == "janus" else ProcessRelay(mode, cores, profile)
    )
    joins = Joins(relay)
    ctx = multiprocessing.get_context("spawn")
    reader = SocketReader(asyncio.get_running_loop())
    players: list[CountingPlayer] = []
    feed: Any = None
    stop_feed = ctx.Event()
    fed = ctx.Value("q", 0)
    started = time.monotonic()
    try:
        await relay.start()
        feed = ctx.Process(
            target=feed_process, args=(relay.feed, relay.port, stop_feed, fed), daemon=True
        )
        feed.start()
        for _ in range(100):
            if await relay.flowing():
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        result.rss_before = (await relay.usage())["rss"]
        for target in plan:
            if time.monotonic() - started > budget:
                result.stopped_by = "time budget"
                break
            refused = False
            while len(players) < target and not refused:
                batch = [CountingPlayer(reader) for _ in range(min(25, target - len(players)))]
                joined = await asyncio.gather(*(joins.join(v) for v in batch))
                players += [v for v, ok in zip(batch, joined, strict=True) if ok]
                refused = not all(joined)
            if refused:
                result.stopped_by = f"the relay refused players for {Joins.PATIENCE_S:.0f} s"
                print(f"  {result.mode:13} {target:4d} players: {joins.summary()}", flush=True)
                break
            await settle(players)
            try:
                step = await measure(relay, players, window, fed)
            except OSError as exc:
                result.stopped_by = f"the relay went away ({exc!r})"
                break
            result.steps.append(step)
            print(
                f"  {result.mode:13} {step.players:4d} players"
                f"  fps {step.min_fps:5.1f}-{step.max_fps:<5.1f} (fed {step.feed_fps:4.1f})"
                f" relay {step.relay_cpu * 100:5.1f}% cpu (loop {step.relay_loop * 100:4.1f}%)"
                f"  load {step.load_cpu * 100:5.1f}% cpu  "
                f"{step.us_per_packet:6.1f} us/packet ({step.user_us:.1f} user"
                f" + {step.sys_us:.1f} sys)  rss {step.rss / 1e6:6.1f} MB"
                f"  load average {os.getloadavg()[0]:.1f}"
                f"{'  ' + joins.summary() if joins.summary() else ''}",
                flush=True,
            )
            if step.feed_fps < MIN_FPS:
                result.stopped_by = f"the feed itself sent {step.feed_fps:.1f} fps (machine busy)"
                break
            if step.min_fps < MIN_FPS:
                result.stopped_by = f"a player fell below {MIN_FPS:.0f} fps"
                break
            if step.max_fps > max(MAX_FPS, step.feed_fps + 1.5):
                result.stopped_by = f"a player caught up above {MAX_FPS:.0f} fps (saturated)"
                break
            if step.load_cpu > LOAD_LIMIT:
                result.stopped_by = "player process saturated (a lower bound)"
                break
        result.joins = [
            v.first_keyframe_at - v.joined_at for v in players if v.first_keyframe_at is not None
        ]
        joiners, watching = storm
        if joiners and result.sustained is not None:
            watching = min(watching, result.sustained.players)
            while len(players) > watching:  # the newest leave first
                await players.pop().close()
            await asyncio.sleep(STORM_CALM_S)
            try:
                result.storm = await join_storm(joins, players, reader, joiners)
            except (OSError, ValueError, TimeoutError) as exc:
                print(f"  join storm failed: {exc!r} (the relay lost its stream?)", flush=True)
    finally:
        for player in players:
            await player.close()
        reader.close()
        await relay.stop()  # before the feed: a publisher leaving mid-run is news, not this
        if feed is not None:
            stop_feed.set()
            await asyncio.to_thread(feed.join, 10)
            if feed.is_alive():
                feed.terminate()
                await asyncio.to_thread(feed.join, 5)
    return result


async def settle(players: list[CountingPlayer], limit: float = 20.0) -> None:
    """Wait until every player is receiving (has its first keyframe), then a second more.

    Joins end when signalling does; ICE and DTLS take longer on a busy relay, and a
    player still handshaking would read as a slow one. A player that is not
    receiving after ``limit`` seconds is measured as it is.
    """
    for _ in range(round(limit / 0.1)):
        if all(v.first_keyframe_at is not None for v in players):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)


async def measure(
    relay: ProcessRelay | JanusRelay, players: list[CountingPlayer], window: float, fed: Any
) -> Step:
    frames = [v.frames for v in players]
    fed_before = fed.value
    packets = sum(v.packets for v in players)
    before, own, at = await relay.usage(), load_cpu(), time.monotonic()
    await asyncio.sleep(window)
    after, own_end, end = await relay.usage(), load_cpu(), time.monotonic()
    elapsed = end - at
    fps = [(v.frames - f) / elapsed for v, f in zip(players, frames, strict=True)]
    return Step(
        players=len(players),
        min_fps=min(fps),
        max_fps=max(fps),
        relay_user=(after["user"] - before["user"]) / elapsed,
        relay_sys=(after["sys"] - before["sys"]) / elapsed,
        load_cpu=(own_end - own) / elapsed,
        packets_per_s=(sum(v.packets for v in players) - packets) / elapsed,
        rss=after["rss"],
        feed_fps=(fed.value - fed_before) / elapsed,
        relay_loop=(after["loop"] - before["loop"]) / elapsed if "loop" in after else float("nan"),
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# The pure-Python forwarding path's last full run (README, before the native fan-out
# replaced it; VP8 + Opus players, so its packets include ~50/s of audio each).
PYTHON_PATH = {"players": 300, "per_core": 333, "us_per_packet": 16.9}


def table(results: list[Result]) -> str:
    baseline = next((r for r in results if r.mode.startswith("mediarelay")), None)
    base = baseline.per_core_estimate if baseline else 0.0
    one_core = next((r for r in results if r.mode == "tierstream/1"), None)
    rows = [
        "relay          players@28-31fps players/core(est)  us/packet (user+sys)  rss/player"
        "  join->keyframe p50/p95 ms  vs python path (players/core, us)  vs mediarelay"
        "  stopped by",
    ]
    for r in results:
        best = r.sustained
        us = best.us_per_packet if best else float("nan")
        split = f"({best.user_us:4.1f}+{best.sys_us:4.1f})" if best else ""
        ratio = r.per_core_estimate / base if base else float("nan")
        python_ratio = (
            f"{r.per_core_estimate / PYTHON_PATH['per_core']:5.1f}x"
            f" {us / PYTHON_PATH['us_per_packet']:5.2f}x"
        )
        rows.append(
            f"{r.mode:14} {best.players if best else 0:15d}  {r.per_core_estimate:17.0f}"
            f"  {us:9.1f} {split:12}  {r.rss_per_player / 1e3:7.0f} kB"
            f"  {percentile(r.joins, 0.5) * 1000:10.0f} / {percentile(r.joins, 0.95) * 1000:5.0f}"
            f"  {python_ratio:>33}  {ratio:11.1f}x  {r.stopped_by}"
        )
    rows.append(
        f"{'python path':14} {PYTHON_PATH['players']:15d}  {PYTHON_PATH['per_core']:17.0f}"
        f"  {PYTHON_PATH['us_per_packet']:9.1f}   (its last full run, quoted; it is gone)"
    )
    if one_core is not None and one_core.sustained is not None:
        for r in results:
            if r.mode.startswith("tierstream/") and r is not one_core and r.sustained:
                change = r.sustained.us_per_packet / one_core.sustained.us_per_packet - 1
                rows.append(
                    f"{r.mode}: {change * 100:+.0f} % CPU per packet against tierstream/1"
                    f" ({r.cores} fan-out threads on {r.cores} cores, shared with the players);"
                    f" capacity {r.capacity_estimate:.0f} players ="
                    f" {r.capacity_estimate / one_core.capacity_estimate:.2f}x tierstream/1's"
                    f" {one_core.capacity_estimate:.0f} (from per-thread CPU: its loop thread at"
                    f" {r.sustained.relay_loop * 100:.0f}% and the process at"
                    f" {r.sustained.relay_cpu * 100:.0f}% of one core for"
                    f" {r.sustained.players} players)"
                )
    return "\n".join(rows)


def storm_size(text: str) -> tuple[int, int]:
    """``JOINERS/WATCHERS``, e.g. ``100/500``."""
    joiners, _, watchers = text.partition("/")
    if not (joiners.isdigit() and watchers.isdigit() and int(joiners) > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give joiners/watchers, e.g. 100/500")
    return int(joiners), int(watchers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the tierstream relay")
    parser.add_argument(
        "--only", choices=["tierstream", "janus", "mediarelay"], help="run one relay"
    )
    parser.add_argument(
        "--storm",
        metavar="JOINERS/WATCHERS",
        type=storm_size,
        help="the join storm's size (default 200/500, 50/200 with --quick)",
    )
    parser.add_argument(
        "--two-cores",
        action="store_true",
        help="also run tierstream on both cores (two fan-out threads; players share them)",
    )
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    cores = os.sched_getaffinity(0)
    if len(cores) > 1:
        os.sched_setaffinity(0, cores - {RELAY_CORE})
    if args.quick:
        plans = {"tierstream": [25, 100, 200], "janus": [25, 100, 200], "mediarelay": [1, 3, 6]}
        window, budget = 2.0, 60.0
    else:
        plans = {
            "tierstream": [100, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000],
            "janus": [100, 200, 400, 600, 800, 1000, 1200, 1400, 1600],
            "mediarelay": [1, 2, 4, 6, 8, 10, 12, 16],
        }
        window, budget = 4.0, 300.0
    runs = [("tierstream", {RELAY_CORE})]
    if args.two_cores and len(cores) > 1:
        runs.append(("tierstream", set(cores)))
    if janus.available():
        runs.append(("janus", {RELAY_CORE}))
    else:
        print("(no Janus baseline: apt-get install janus to add it)")
    runs.append(("mediarelay", {RELAY_CORE}))
    results = []
    for mode, relay_cores in runs:
        if args.only and mode != args.only:
            continue
        print(f"{mode} on cores {sorted(relay_cores)}:", flush=True)
        profile = args.profile if mode == "tierstream" else None
        storm = args.storm or ((50, 200) if args.quick else (200, 500))
        storm = storm if mode != "mediarelay" else (0, 0)
        results.append(
            await run_relay(mode, relay_cores, plans[mode], window, budget, profile, storm)
        )
    print()
    print(table(results))
    for r in results:
        if r.storm is not None:
            print(
                f"{r.mode}: join storm of {r.storm.joiners} in 2 s,"
                f" {r.storm.watchers} watching:"
                f" watchers' min {r.storm.min_fps:.1f} fps; joiners' first keyframe p95"
                f" {percentile(r.storm.waits, 0.95) * 1000:.0f} ms ({r.storm.missing} without)"
            )
    print(
        f"(relay on the cores named per run; players on cores {sorted(os.sched_getaffinity(0))};"
        f" load average {os.getloadavg()[0]:.2f} at the end)"
    )


if __name__ == "__main__":
    asyncio.run(main())
