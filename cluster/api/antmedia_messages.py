"""Ant Media's WebSocket signalling vocabulary, as ``@antmedia/webrtc_adaptor`` 2.16 speaks it.

The shapes and the names of notifications and errors come from the SDK's
``websocket_adaptor.js`` and Ant Media Server's ``WebSocketConstants`` (see
``../shared/protocols/antmedia-websocket.md``): pages react to these exact
strings, so they are kept verbatim, camelCase and snake_case mixed as Ant Media
has them. Each server message has a ``TypedDict`` and a builder, so the
signalling code never spells a field by hand.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

# Commands a client sends that tierstream serves.
PUBLISH = "publish"
PLAY = "play"
TAKE_CONFIGURATION = "takeConfiguration"
TAKE_CANDIDATE = "takeCandidate"
STOP = "stop"
PING = "ping"
GET_STREAM_INFO = "getStreamInfo"
GET_ICE_SERVER_CONFIG = "getIceServerConfig"
GET_BROADCAST_OBJECT = "getBroadcastObject"
GET_SUBSCRIBER_COUNT = "getSubscriberCount"

UNSUPPORTED_COMMANDS = frozenset(
    {
        "join",
        "leave",
        "joinRoom",
        "leaveFromRoom",
        "getRoomInfo",
        "getTrackList",
        "enableTrack",
        "getSubtracks",
        "getSubtracksCount",
        "toggleVideo",
        "toggleAudio",
        "forceStreamQuality",
        "updateStreamMetaData",
        "getVideoTrackAssignmentsCommand",
        "assignVideoTrackCommand",
        "updateVideoTrackAssignmentsCommand",
        "setMaxVideoTrackCountCommand",
        "getDebugInfo",
        "peerMessageCommand",
        "registerPushNotificationToken",
        "sendPushNotification",
        "getSubscribers",
    }
)
"""Conference rooms, P2P, multitrack, server-side mute, ABR and push notifications: Ant
Media features this cluster does not offer. Each gets an ``error`` naming the command."""

# Notification definitions.
PUBLISH_STARTED = "publish_started"
PUBLISH_FINISHED = "publish_finished"
PLAY_STARTED = "play_started"
PLAY_FINISHED = "play_finished"
SERVER_WILL_STOP = "server_will_stop"
BROADCAST_OBJECT = "broadcastObject"
SUBSCRIBER_COUNT = "subscriberCount"

# Error definitions.
NO_STREAM_NAME_SPECIFIED = "noStreamNameSpecified"
INVALID_STREAM_NAME = "invalidStreamName"
NO_STREAM_EXIST = "no_stream_exist"
STREAM_ID_IN_USE = "streamIdInUse"
ALREADY_PUBLISHING = "already_publishing"
ALREADY_PLAYING = "already_playing"
UNAUTHORIZED_ACCESS = "unauthorized_access"
NOT_SET_REMOTE_DESCRIPTION = "notSetRemoteDescription"
HIGH_RESOURCE_USAGE = "highResourceUsage"
VIEWER_LIMIT_REACHED = "viewerLimitReached"
MISSING_PARAMETER = "missingParameter"
SERVER_ERROR = "server_error_check_logs"
DATA_STORE_NOT_AVAILABLE = "data_store_not_available"
INVALID_MESSAGE = "invalidMessage"
"""Not an Ant Media constant: a frame that is not a JSON object with a ``command``."""
UNSUPPORTED_COMMAND = "unsupportedCommand"
"""Not an Ant Media constant (it silently ignores what it does not know): we say so."""
TOO_MANY_STREAMS = "tooManyStreamsOnThisConnection"
"""Not an Ant Media constant: the per-socket bound of streams is reached."""


class Notification(TypedDict):
    command: Literal["notification"]
    definition: str
    streamId: str
    subscriberCount: NotRequired[int]
    broadcast: NotRequired[str]


class Error(TypedDict):
    command: Literal["error"]
    definition: str
    streamId: NotRequired[str]
    error_code: NotRequired[str]
    information: NotRequired[str]


class Start(TypedDict):
    command: Literal["start"]
    streamId: str


class TakeConfiguration(TypedDict):
    command: Literal["takeConfiguration"]
    streamId: str
    type: Literal["offer", "answer"]
    sdp: str
    idMapping: NotRequired[dict[str, str]]


class TakeCandidate(TypedDict):
    command: Literal["takeCandidate"]
    streamId: str
    label: int
    id: str
    candidate: str


class Pong(TypedDict):
    command: Literal["pong"]


class StreamInfo(TypedDict):
    streamWidth: int
    streamHeight: int
    videoBitrate: int
    audioBitrate: int
    videoCodec: str


class StreamInformation(TypedDict):
    command: Literal["streamInformation"]
    streamId: str
    streamInfo: list[StreamInfo]


class IceServerConfig(TypedDict):
    command: Literal["iceServerConfig"]
    stunServerUri: str
    turnServerUsername: str
    turnServerCredential: str


class Broadcast(TypedDict):
    """The part of Ant Media's broadcast object a page reads."""

    streamId: str
    status: Literal["broadcasting", "finished"]
    name: str
    type: Literal["liveStream"]
    publishType: Literal["WebRTC"]
    originAdress: str  # sic: Ant Media's spelling
    webRTCViewerCount: int


ServerMessage = (
    Notification
    | Error
    | Start
    | TakeConfiguration
    | TakeCandidate
    | Pong
    | StreamInformation
    | IceServerConfig
)


def notification(definition: str, stream_id: str) -> Notification:
    return {"command": "notification", "definition": definition, "streamId": stream_id}


def error(definition: str, stream_id: str | None = None, information: str = "") -> Error:
    message: Error = {"command": "error", "definition": definition}
    if stream_id is not None:
        message["streamId"] = stream_id
    if definition == NO_STREAM_EXIST:
        message["error_code"] = "404"
    if information:
        message["information"] = information
    return message


def parse(text: str) -> dict[str, Any]:
    """A client frame as a JSON object with a string ``command``; ``ValueError`` otherwise."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(message, dict) or not isinstance(message.get("command"), str):
        raise ValueError('a message is a JSON object with a "command" string')
    return message


def text_field(message: dict[str, Any], name: str) -> str:
    """A string field, "" when absent or null; ``ValueError`` when it is something else."""
    value = message.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be a string')
    return value
