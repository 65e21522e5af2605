"""Ant Media WebSocket signalling at ``/{app}/websocket``, for pages using its JS SDK unchanged.

One ``Connection`` per socket. Publish: ``publish`` → ``start`` → the page's
offer → our answer (candidates inline) → ``publish_started`` once media flows.
Play is server-offer: ``play`` → our offer with ``idMapping`` → the page's answer
→ ``play_started`` once the player's connection is up. Both go through the node's
streams facade, the same path as WHIP/WHEP (registry claims, pulls, secondary
origins, stream tokens), so a stream published here plays over WHEP anywhere
and the other way round.

A session that ends for any reason (``stop``, the publisher leaving anywhere in
the cluster, its main origin lost past the grace period) is reported as
``publish_finished``/``play_finished``; a draining node says ``server_will_stop``.
Closing the socket ends the streams it published and the plays it made, and
nothing else.

Limits, none of which touches the media path (they bound what one socket costs
the event loop): frames over 64 KiB are refused by uvicorn with close code 1009
(``ws_max_size`` in ``cluster.server``); at most ``MAX_STREAMS`` publishes and
plays per socket; past ``RATE`` messages per second (bursts of ``BURST``) a
socket is throttled, and after ``FLOOD_STRIKES`` throttled messages closed with
1008; a socket that sends nothing (the SDK pings every 3 s) for
``websocket.idleTimeoutMs`` is closed with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from cluster.api import antmedia_messages as msg
from cluster.api.redirects import ticketed
from cluster.api.rest import broadcast_json
from cluster.errors import (
    BadRequest,
    ClusterError,
    Forbidden,
    NotFound,
    Overloaded,
    RegistryUnavailable,
    StreamBusy,
    Unauthorized,
    UpstreamFailed,
    UpstreamTimeout,
)
from cluster.node import Node
from cluster.types import SessionKind, StreamId, parse_app_name, parse_stream_id
from media.errors import (
    BadSdp,
    CodecMismatch,
    MediaError,
    StreamAlreadyPublished,
    UnknownSession,
    UnknownStream,
)

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_STREAMS = 16
RATE = 50.0
BURST = 200
FLOOD_STRIKES = 100
SEND_QUEUE = 256
"""Messages waiting for a client that does not read; past it the socket is closed."""

CLOSE_IDLE = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

Role = Literal["publish", "play"]


@dataclass
class _Entry:
    """One stream this socket publishes or plays, and its media session once there is one."""

    role: Role
    session_id: str | None = None
    started: bool = False
    reserved: bool = False
    """A router reserved room here for this publish or play (the socket's ticket says so)."""


class _Throttle:
    """A token bucket: a client over the rate waits; one that keeps at it is a flood."""

    def __init__(self) -> None:
        self._tokens = float(BURST)
        self._at = time.monotonic()
        self.strikes = 0

    async def take(self) -> bool:
        """Wait for a token; False once the client has been throttled too often."""
        now = time.monotonic()
        self._tokens = min(BURST, self._tokens + (now - self._at) * RATE)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            if self._tokens >= BURST / 2:
                self.strikes = 0
            return True
        self.strikes += 1
        if self.strikes > FLOOD_STRIKES:
            return False
        await asyncio.sleep((1 - self._tokens) / RATE)
        self._tokens = 0.0
        self._at = time.monotonic()
        return True


class Connection:
    """One signalling socket: its streams, its outgoing queue, its limits."""

    def __init__(self, websocket: WebSocket, node: Node, app: str) -> None:
        self._ws = websocket
        self._node = node
        self._streams = node.streams
        self._app = app
        self._entries: dict[str, _Entry] = {}
        self._outgoing: asyncio.Queue[str | None] = asyncio.Queue(SEND_QUEUE)
        self._throttle = _Throttle()
        self._client = websocket.client.host if websocket.client else ""
        self._ticket = websocket.query_params.get("ticket")
        """From a ``/route`` answer's ``websocket_url``: spent by the first publish or play."""
        self._closing: tuple[int, str] | None = None
        self._waits: set[asyncio.Task[None]] = set()
        """Plays waiting for their connection before ``play_started``."""
        self._commands: dict[str, Callable[[str, dict[str, Any]], Awaitable[None]]] = {
            msg.PUBLISH: self._publish,
            msg.PLAY: self._play,
            msg.TAKE_CONFIGURATION: self._take_configuration,
            msg.TAKE_CANDIDATE: self._take_candidate,
            msg.STOP: self._stop,
            msg.GET_STREAM_INFO: self._stream_info,
            msg.GET_BROADCAST_OBJECT: self._broadcast_object,
            msg.GET_SUBSCRIBER_COUNT: self._subscriber_count,
        }

    async def serve(self) -> None:
        await self._ws.accept()
        writer = asyncio.create_task(self._write(), name="websocket writer")
        drain = asyncio.create_task(self._watch_drain(), name="websocket drain")
        try:
            await self._read()
        finally:
            drain.cancel()
            for wait in self._waits:
                wait.cancel()
            await asyncio.gather(*self._waits, return_exceptions=True)
            await self._end_all()
            await self._flush(writer)
            await asyncio.gather(drain, return_exceptions=True)
            await self._close_socket()

    # reading

    async def _read(self) -> None:
        idle_s = self._node.settings.websocket_idle_timeout_s
        while self._closing is None:
            try:
                frame = await asyncio.wait_for(self._ws.receive(), idle_s)
            except TimeoutError:
                self._close(CLOSE_IDLE, f"no message for {idle_s:g} s (the SDK pings every 3 s)")
                return
            if frame["type"] == "websocket.disconnect":
                return
            if not await self._throttle.take():
                self._close(CLOSE_POLICY, f"message flood: over {RATE:g} messages per second")
                return
            text = frame.get("text")
            if text is None:
                self._send(msg.error(msg.INVALID_MESSAGE, information="send JSON text frames"))
                continue
            if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
                self._close(CLOSE_TOO_BIG, f"a message is at most {MAX_MESSAGE_BYTES} bytes")
                return
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            message = msg.parse(text)
        except ValueError as error:
            self._send(msg.error(msg.INVALID_MESSAGE, information=str(error)))
            return
        command = message["command"]
        if command == msg.PING:
            self._send({"command": "pong"})
            return
        if command == msg.GET_ICE_SERVER_CONFIG:
            self._send(self._ice_server_config())
            return
        handler = self._commands.get(command)
        if handler is None:
            self._unsupported(command, message)
            return
        try:
            stream_id = msg.text_field(message, "streamId")
        except ValueError as error:
            self._send(msg.error(msg.INVALID_STREAM_NAME, information=str(error)))
            return
        if not stream_id:
            self._send(msg.error(msg.NO_STREAM_NAME_SPECIFIED))
            return
        try:
            parse_stream_id(stream_id)
        except ValueError as error:
            self._send(msg.error(msg.INVALID_STREAM_NAME, stream_id[:128], str(error)))
            return
        try:
            await handler(stream_id, message)
        except (ClusterError, MediaError, ValueError) as error:
            self._send(msg.error(_definition(error), stream_id, str(error)))
        except Exception:
            logger.exception("websocket command %s for %s failed unexpectedly", command, stream_id)
            self._send(msg.error(msg.SERVER_ERROR, stream_id))

    def _unsupported(self, command: str, message: dict[str, Any]) -> None:
        stream_id = message.get("streamId") if isinstance(message.get("streamId"), str) else None
        known = "an Ant Media feature" if command in msg.UNSUPPORTED_COMMANDS else "not a command"
        information = f"{command!r} is {known} this server does not offer"
        self._send(msg.error(msg.UNSUPPORTED_COMMAND, stream_id, information))

    # publish and play

    def _claim(self, stream_id: str, role: Role) -> _Entry:
        entry = self._entries.get(stream_id)
        if entry is not None:
            raise _AlreadyDoing(entry.role)
        if len(self._entries) >= MAX_STREAMS:
            raise _TooManyStreams(f"one connection publishes and plays at most {MAX_STREAMS}")
        entry = self._entries[stream_id] = _Entry(role)
        return entry

    async def _admit(self, stream_id: str, kind: SessionKind, token: str) -> bool:
        """Run the stream's access checks unless the socket's ticket says they were run;
        True when the ticket reserved room here."""
        ticket_token, self._ticket = self._ticket, None
        ticket = ticketed(self._node, ticket_token, self._app, stream_id, kind)
        if ticket is None or not ticket.access_checked:
            await self._streams.authorize(self._app, stream_id, kind, token, self._client)
        return ticket is not None and ticket.reserved

    async def _publish(self, stream_id: str, message: dict[str, Any]) -> None:
        token = msg.text_field(message, "token")
        entry = self._claim(stream_id, "publish")
        try:
            entry.reserved = await self._admit(stream_id, "publish", token)
            await self._streams.check_publishable(self._app, stream_id)
        except BaseException:
            del self._entries[stream_id]
            raise
        self._send({"command": "start", "streamId": stream_id})

    async def _play(self, stream_id: str, message: dict[str, Any]) -> None:
        token = msg.text_field(message, "token")
        entry = self._claim(stream_id, "play")
        try:
            reserved = await self._admit(stream_id, "play", token)
            with self._node.router.arriving(reserved) as counted:
                offer = await self._streams.offer_play(self._app, stream_id, counted)
        except BaseException:
            del self._entries[stream_id]
            raise
        entry.session_id = offer.session_id  # commands run one at a time: nothing stopped it
        self._send(
            {
                "command": "takeConfiguration",
                "streamId": stream_id,
                "type": "offer",
                "sdp": offer.sdp,
                "idMapping": _id_mapping(offer.sdp),
            }
        )
        self._streams.watch_session(
            offer.session_id, lambda: self._finished(stream_id, offer.session_id)
        )

    async def _take_configuration(self, stream_id: str, message: dict[str, Any]) -> None:
        entry = self._entries.get(stream_id)
        kind = msg.text_field(message, "type")
        sdp = msg.text_field(message, "sdp")
        if entry is None:
            raise NotFound(f"{stream_id} is neither published nor played on this connection")
        if not sdp:
            raise _MissingParameter('takeConfiguration needs "sdp"')
        if entry.role == "publish" and kind == "offer" and entry.session_id is None:
            await self._negotiate_publish(stream_id, entry, sdp)
        elif entry.role == "play" and kind == "answer" and entry.session_id is not None:
            await self._streams.accept_answer(entry.session_id, sdp)
            task = asyncio.create_task(self._play_started(stream_id, entry.session_id))
            self._waits.add(task)
            task.add_done_callback(self._waits.discard)
        else:
            raise BadSdp(f"a {kind or 'typeless'} is not expected now for {stream_id}")

    async def _negotiate_publish(self, stream_id: str, entry: _Entry, offer_sdp: str) -> None:
        self._streams.watch_live(stream_id, lambda: self._live(stream_id))
        try:
            with self._node.router.arriving(entry.reserved):
                answer = await self._streams.publish(self._app, stream_id, offer_sdp)
        except BaseException:
            self._streams.unwatch(None, stream_id)
            self._entries.pop(stream_id, None)
            raise
        entry.session_id = answer.session_id
        self._send(
            {
                "command": "takeConfiguration",
                "streamId": stream_id,
                "type": "answer",
                "sdp": answer.sdp,
            }
        )
        self._streams.watch_session(
            answer.session_id, lambda: self._finished(stream_id, answer.session_id)
        )

    async def _take_candidate(self, stream_id: str, message: dict[str, Any]) -> None:
        entry = self._entries.get(stream_id)
        candidate = msg.text_field(message, "candidate")
        if entry is None or entry.session_id is None:
            return  # a late candidate of a stopped stream, or one sent before the offer
        if not candidate.startswith("candidate:"):
            raise _MissingParameter('takeCandidate needs a "candidate:..." string')
        mid = message.get("id")
        fragment = f"a=mid:{mid}\r\n" if isinstance(mid, str) and mid else ""
        await self._streams.trickle(entry.session_id, f"{fragment}a={candidate}\r\n")

    async def _stop(self, stream_id: str, message: dict[str, Any]) -> None:
        entry = self._entries.get(stream_id)
        if entry is None:
            return  # the SDK stops before every retry; nothing to do
        if entry.session_id is None:
            del self._entries[stream_id]
            self._streams.unwatch(None, stream_id)
            self._send(msg.notification(_finished(entry.role), stream_id))
            return
        await _quietly(self._streams.close_session(entry.session_id))

    # what the media plane reports

    def _live(self, stream_id: str) -> None:
        entry = self._entries.get(stream_id)
        if entry is not None and entry.role == "publish" and not entry.started:
            entry.started = True
            self._send(msg.notification(msg.PUBLISH_STARTED, stream_id))

    async def _play_started(self, stream_id: str, session_id: str) -> None:
        """``play_started`` once the player's connection is up, as Ant Media sends it; a
        session that ends first gets ``play_finished`` instead (from its watcher)."""
        with contextlib.suppress(UnknownSession):
            await self._streams.wait_connected(session_id)
            entry = self._entries.get(stream_id)
            if entry is not None and entry.session_id == session_id and not entry.started:
                entry.started = True
                self._send(msg.notification(msg.PLAY_STARTED, stream_id))

    def _finished(self, stream_id: str, session_id: str) -> None:
        entry = self._entries.get(stream_id)
        if entry is None or entry.session_id != session_id:
            return
        del self._entries[stream_id]
        self._send(msg.notification(_finished(entry.role), stream_id))

    async def _watch_drain(self) -> None:
        await self._node.draining.wait()
        self._send(msg.notification(msg.SERVER_WILL_STOP, ""))

    # queries

    async def _stream_info(self, stream_id: str, message: dict[str, Any]) -> None:
        info = self._streams.stream_info(self._app, stream_id)
        self._send(
            {
                "command": "streamInformation",
                "streamId": stream_id,
                "streamInfo": [
                    {
                        "streamWidth": info.width,
                        "streamHeight": info.height,
                        "videoBitrate": info.video_bitrate_bps,
                        "audioBitrate": info.audio_bitrate_bps,
                        "videoCodec": info.video_codec,
                    }
                ],
            }
        )

    async def _broadcast_object(self, stream_id: str, message: dict[str, Any]) -> None:
        broadcast = await broadcast_json(self._node, self._app, StreamId(stream_id))
        self._send(
            {
                **msg.notification(msg.BROADCAST_OBJECT, stream_id),
                "broadcast": json.dumps(broadcast),
            }
        )

    async def _subscriber_count(self, stream_id: str, message: dict[str, Any]) -> None:
        broadcast = await broadcast_json(self._node, self._app, StreamId(stream_id))
        self._send(
            {
                **msg.notification(msg.SUBSCRIBER_COUNT, stream_id),
                "count": broadcast["webRTCViewerCount"],
            }
        )

    def _ice_server_config(self) -> msg.IceServerConfig:
        servers = self._node.settings.ice_servers
        stun = next((s for s in servers if s.startswith(("stun:", "stuns:"))), "")
        turn = next((s for s in servers if s.startswith(("turn:", "turns:"))), "")
        return {
            "command": "iceServerConfig",
            "stunServerUri": turn or stun,
            "turnServerUsername": "",
            "turnServerCredential": "",
        }

    # writing and closing

    def _send(self, message: Any) -> None:
        if self._closing is not None:
            return
        try:
            self._outgoing.put_nowait(json.dumps(message))
        except asyncio.QueueFull:
            self._close(CLOSE_POLICY, "the client does not read its messages")

    async def _flush(self, writer: asyncio.Task[None]) -> None:
        """Let the writer send what is queued (a last notification), for a bounded time."""
        with contextlib.suppress(asyncio.QueueFull):
            self._outgoing.put_nowait(None)
        await asyncio.wait([writer], timeout=2.0)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    async def _write(self) -> None:
        while (text := await self._outgoing.get()) is not None:
            try:
                await self._ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    def _close(self, code: int, reason: str) -> None:
        if self._closing is None:
            logger.info("closing websocket of %s (%d): %s", self._client, code, reason)
            self._closing = (code, reason)

    async def _close_socket(self) -> None:
        code, reason = self._closing or (1000, "")
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self._ws.close(code, reason)

    async def _end_all(self) -> None:
        """The socket is gone: end the streams it published and the plays it made."""
        entries, self._entries = self._entries, {}
        for stream_id, entry in entries.items():
            self._streams.unwatch(entry.session_id, stream_id)
            if entry.session_id is not None:
                await _quietly(self._streams.close_session(entry.session_id))


class _AlreadyDoing(ClusterError):
    status = 409

    def __init__(self, role: Role) -> None:
        super().__init__(f"this connection already {role}s the stream")
        self.role = role


class _TooManyStreams(ClusterError):
    status = 429


class _MissingParameter(ClusterError):
    status = 400


def _finished(role: Role) -> str:
    return msg.PUBLISH_FINISHED if role == "publish" else msg.PLAY_FINISHED


def _definition(error: Exception) -> str:
    """The Ant Media error definition a page reacts to, for one of our errors."""
    if isinstance(error, _AlreadyDoing):
        return msg.ALREADY_PUBLISHING if error.role == "publish" else msg.ALREADY_PLAYING
    table: tuple[tuple[type[Exception], str], ...] = (
        (_TooManyStreams, msg.TOO_MANY_STREAMS),
        (_MissingParameter, msg.MISSING_PARAMETER),
        (Unauthorized, msg.UNAUTHORIZED_ACCESS),
        (Forbidden, msg.UNAUTHORIZED_ACCESS),
        (StreamBusy, msg.STREAM_ID_IN_USE),
        (StreamAlreadyPublished, msg.STREAM_ID_IN_USE),
        (NotFound, msg.NO_STREAM_EXIST),
        (UnknownStream, msg.NO_STREAM_EXIST),
        (UpstreamFailed, msg.NO_STREAM_EXIST),
        (UpstreamTimeout, msg.NO_STREAM_EXIST),
        (Overloaded, msg.HIGH_RESOURCE_USAGE),
        (RegistryUnavailable, msg.DATA_STORE_NOT_AVAILABLE),
        (BadSdp, msg.NOT_SET_REMOTE_DESCRIPTION),
        (CodecMismatch, msg.NOT_SET_REMOTE_DESCRIPTION),
        (UnknownSession, msg.NO_STREAM_EXIST),
        (BadRequest, msg.INVALID_STREAM_NAME),
        (ValueError, msg.INVALID_MESSAGE),
    )
    return next((name for kind, name in table if isinstance(error, kind)), msg.SERVER_ERROR)


_MID = re.compile(r"^a=mid:(\S+)", re.MULTILINE)
_MSID = re.compile(r"^a=msid:\S+ (\S+)", re.MULTILINE)


def _id_mapping(offer_sdp: str) -> dict[str, str]:
    """mid → track id of each media section of our offer; the SDK's ``onTrack`` reads it."""
    mapping: dict[str, str] = {}
    for section in offer_sdp.split("\nm=")[1:]:
        mid, track = _MID.search(section), _MSID.search(section)
        if mid is not None:
            mapping[mid.group(1)] = track.group(1) if track else mid.group(1)
    return mapping


async def _quietly(closing: Awaitable[None]) -> None:
    """Close a session that may already be gone."""
    with contextlib.suppress(UnknownSession):
        await closing


async def signalling(websocket: WebSocket) -> None:
    app: str = websocket.path_params["app"]
    try:
        parse_app_name(app)
    except ValueError as error:
        await websocket.close(CLOSE_POLICY, str(error))
        return
    node: Node = websocket.app.state.node
    await Connection(websocket, node, app).serve()


routes = [WebSocketRoute("/{app}/websocket", signalling)]
