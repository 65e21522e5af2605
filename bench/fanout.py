"""Edge fan-out benchmark: players per core, tierstream's passthrough vs aiortc's MediaRelay.

    python bench/fanout.py            # full run (a few minutes at most)
    python bench/fanout.py --quick    # short run

One synthetic publisher (VP8, 640x360, 30 fps, ~1 Mbit/s, Opus) sends to a relay
process pinned to one core. Players run in this (load) process, pinned to the
other cores when there are any; they do not decode, reassemble or even decrypt:
they count RTP packets and frames (marker bits, in the clear RTP header), and
decrypt only the first packet of each frame until their first keyframe.
The number of players steps up until the slowest player falls below 28 fps, or
the fastest goes above 31 (a 30 fps source cannot be received faster: that is a
saturated relay flushing a backlog after a stall), or the players' own process
saturates, or the time budget ends (at most about four minutes per relay). The
same run measures aiortc's own ``MediaRelay``, which decodes once and encodes per
player, as the baseline.

Printed per relay: players per core (the most players served at >= 28 fps, and
the CPU-normalised estimate), CPU microseconds per forwarded packet, join ->
first keyframe p50/p95, and the ratio to the baseline. ``--profile FILE`` writes
a cProfile of the relay process. Everything started here is stopped by handle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import resource
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc import RTCSessionDescription
from aiortc.codecs import depayload
from aiortc.contrib.media import MediaRelay
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media import aiortc_seam, codecs, ice, sdp
from media.config import MediaConfig
from media.contrib.client import Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from media.engine import MediaEngine

LOOPBACK = ("127.0.0.1",)
MIN_FPS = 28.0
MAX_FPS = 31.0
LOAD_LIMIT = 0.9  # beyond this the players, not the relay, would be measured
RELAY_CORE = 0


# ---------------------------------------------------------------- relay process


class QuietListener:
    def stream_started(self, stream_id: str, codecs: tuple[str, ...]) -> None: ...
    def stream_ended(self, stream_id: str) -> None: ...
    def upstream_lost(self, stream_id: str) -> None: ...
    def session_ended(self, session_id: str) -> None: ...
    def players_changed(self, stream_id: str, players: int) -> None: ...


class TierstreamRelay:
    """The relay under test: tierstream's media engine."""

    def __init__(self) -> None:
        self.engine = MediaEngine(MediaConfig(candidate_addresses=LOOPBACK), QuietListener())

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


async def serve_downstream(mode: str, port_out: Any) -> None:
    relay: TierstreamRelay | MediaRelayBaseline = (
        TierstreamRelay() if mode == "tierstream" else MediaRelayBaseline()
    )
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            op = request["op"]
            reply: dict[str, Any] = {}
            if op == "publish":
                reply["sdp"] = await relay.publish(request["sdp"])
            elif op == "play":
                reply["sdp"] = await relay.play(request["sdp"])
            elif op == "cpu":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                reply["cpu"] = usage.ru_utime + usage.ru_stime
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            if op == "quit":
                break
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    port_out.send(server.sockets[0].getsockname()[1])
    await done.wait()
    server.close()
    await relay.close()


def relay_process(mode: str, port_out: Any, profile: str | None) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {RELAY_CORE})
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(serve_downstream(mode, port_out))
        profiler.disable()
        profiler.dump_stats(profile)
    else:
        asyncio.run(serve_downstream(mode, port_out))


class RelayClient:
    """Talks to the relay process over one JSON-lines TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        async with self._lock:
            self._writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            await self._writer.drain()
            reply: dict[str, Any] = json.loads(await self._reader.readline())
            return reply

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


# ---------------------------------------------------------------- load process


@dataclass
class CountingViewer:
    """A player that counts RTP packets and frames, and notes when its first keyframe came."""

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
        for kind in ("video", "audio"):
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(codecs.preferences(kind))
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

    def _packet(self, data: bytes) -> None:
        self.packets += 1
        if data[1] & 0x7F != self._video_pt:
            return
        if self._frame_start and self.first_keyframe_at is None and self._unprotect:
            data = self._unprotect(data)
            offset = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10:
                offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
            with contextlib.suppress(ValueError):
                start = depayload(self._video_codec, data[offset:])
                if codecs.is_keyframe(self._video_codec.mimeType, start):
                    self.first_keyframe_at = time.monotonic()
        self._frame_start = bool(data[1] & 0x80)
        if self._frame_start:
            self.frames += 1

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


@dataclass(frozen=True)
class Step:
    players: int
    min_fps: float
    max_fps: float
    relay_cpu: float  # fraction of one core
    load_cpu: float
    packets_per_s: float

    @property
    def us_per_packet(self) -> float:
        return self.relay_cpu / self.packets_per_s * 1e6 if self.packets_per_s else 0.0


@dataclass
class Result:
    mode: str
    steps: list[Step] = field(default_factory=list)
    joins: list[float] = field(default_factory=list)
    stopped_by: str = "end of plan"

    @property
    def sustained(self) -> Step | None:
        good = [s for s in self.steps if s.min_fps >= MIN_FPS and s.max_fps <= MAX_FPS]
        return good[-1] if good else None

    @property
    def per_core_estimate(self) -> float:
        best = self.sustained
        return best.players / max(best.relay_cpu, 1e-9) if best else 0.0


def load_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_relay(
    mode: str, plan: list[int], window: float, budget: float, profile: str | None
) -> Result:
    result = Result(mode)
    ctx = multiprocessing.get_context("spawn")
    receive_port, send_port = ctx.Pipe(duplex=False)
    process = ctx.Process(target=relay_process, args=(mode, send_port, profile), daemon=True)
    process.start()
    players: list[CountingViewer] = []
    publisher: Publisher | None = None
    client: RelayClient | None = None
    started = time.monotonic()
    try:
        port = await asyncio.to_thread(receive_port.recv)
        client = RelayClient(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 20))
        relay = client

        async def publish(offer: str) -> str:
            return str((await relay.call("publish", sdp=offer))["sdp"])

        async def play(offer: str) -> str:
            return str((await relay.call("play", sdp=offer))["sdp"])

        video = SyntheticVideoTrack(VideoSettings(mime_type="video/VP8", keyframe_interval_s=2.0))
        publisher = Publisher([video, SyntheticAudioTrack()])
        await asyncio.wait_for(publisher.start(publish), 10)
        await asyncio.sleep(1.0)
        for target in plan:
            if time.monotonic() - started > budget:
                result.stopped_by = "time budget"
                break
            while len(players) < target:
                batch = [CountingViewer() for _ in range(min(10, target - len(players)))]
                players += batch
                await asyncio.wait_for(asyncio.gather(*(v.play(play) for v in batch)), 60)
            await settle(players)
            step = await measure(relay, players, window)
            result.steps.append(step)
            print(
                f"  {mode:10} {step.players:4d} players"
                f"  fps {step.min_fps:5.1f}-{step.max_fps:<5.1f}"
                f" relay {step.relay_cpu * 100:5.1f}% cpu  load {step.load_cpu * 100:5.1f}% cpu  "
                f"{step.us_per_packet:6.1f} us/packet",
                flush=True,
            )
            if step.min_fps < MIN_FPS:
                result.stopped_by = f"a player fell below {MIN_FPS:.0f} fps"
                break
            if step.max_fps > MAX_FPS:
                result.stopped_by = f"a player caught up above {MAX_FPS:.0f} fps (saturated)"
                break
            if step.load_cpu > LOAD_LIMIT:
                result.stopped_by = "player process saturated (a lower bound)"
                break
        result.joins = [
            v.first_keyframe_at - v.joined_at for v in players if v.first_keyframe_at is not None
        ]
        await relay.call("quit")
    finally:
        for player in players:
            await player.close()
        if publisher is not None:
            await publisher.close()
        if client is not None:
            await client.close()
        await asyncio.to_thread(process.join, 20)
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 5)
    return result


async def settle(players: list[CountingViewer], limit: float = 20.0) -> None:
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


async def measure(relay: RelayClient, players: list[CountingViewer], window: float) -> Step:
    frames = [v.frames for v in players]
    packets = sum(v.packets for v in players)
    cpu, own, at = (await relay.call("cpu"))["cpu"], load_cpu(), time.monotonic()
    await asyncio.sleep(window)
    cpu_end, own_end, end = (await relay.call("cpu"))["cpu"], load_cpu(), time.monotonic()
    elapsed = end - at
    fps = [(v.frames - f) / elapsed for v, f in zip(players, frames, strict=True)]
    return Step(
        players=len(players),
        min_fps=min(fps),
        max_fps=max(fps),
        relay_cpu=(cpu_end - cpu) / elapsed,
        load_cpu=(own_end - own) / elapsed,
        packets_per_s=(sum(v.packets for v in players) - packets) / elapsed,
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(results: list[Result]) -> str:
    baseline = next((r for r in results if r.mode == "mediarelay"), None)
    base = baseline.per_core_estimate if baseline else 0.0
    rows = [
        "relay       players@28-31fps players/core(est)  us/packet  join->keyframe p50/p95 ms"
        " (first 10)  vs baseline  stopped by",
    ]
    for r in results:
        best = r.sustained
        ratio = r.per_core_estimate / base if base else float("nan")
        rows.append(
            f"{r.mode:11} {best.players if best else 0:15d}  {r.per_core_estimate:17.0f}"
            f"  {best.us_per_packet if best else float('nan'):9.1f}"
            f"  {percentile(r.joins, 0.5) * 1000:10.0f} / {percentile(r.joins, 0.95) * 1000:5.0f}"
            f" ({percentile(r.joins[:10], 0.5) * 1000:4.0f} / "
            f"{percentile(r.joins[:10], 0.95) * 1000:4.0f})  {ratio:10.1f}x  {r.stopped_by}"
        )
    return "\n".join(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the tierstream relay")
    parser.add_argument("--only", choices=["tierstream", "mediarelay"], help="run one relay")
    args = parser.parse_args()
    cores = os.sched_getaffinity(0)
    if len(cores) > 1:
        os.sched_setaffinity(0, cores - {RELAY_CORE})
    if args.quick:
        plans = {"tierstream": [10, 30, 60], "mediarelay": [1, 3, 6]}
        window, budget = 2.0, 40.0
    else:
        plans = {
            "tierstream": [20, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500],
            "mediarelay": [1, 2, 4, 6, 8, 10, 12, 16],
        }
        window, budget = 4.0, 240.0
    results = []
    for mode in ("tierstream", "mediarelay"):
        if args.only and mode != args.only:
            continue
        print(f"{mode}:", flush=True)
        profile = args.profile if mode == "tierstream" else None
        results.append(await run_relay(mode, plans[mode], window, budget, profile))
    print()
    print(table(results))
    print(f"(relay pinned to core {RELAY_CORE}; load on cores {sorted(os.sched_getaffinity(0))})")


if __name__ == "__main__":
    asyncio.run(main())
