"""The media engine's listener, handed on to every part of the node that reacts to media events.

The engine takes one ``StreamListener`` when it is built, before the parts
that react to its events exist (they need the engine themselves). This hub is
built first, given to the engine, and the node's composition subscribes the
reacting parts to it once they are built. Today that is ``LocalStreams``
alone (registry claims, and the session watchers signalling layers register
with it); the hub is what lets the engine be built before it.
"""

from __future__ import annotations

from media.types import StreamListener


class StreamEvents:
    """A ``StreamListener`` that calls each subscriber in turn, in subscription order."""

    def __init__(self) -> None:
        self._listeners: list[StreamListener] = []

    def subscribe(self, listener: StreamListener) -> None:
        self._listeners.append(listener)

    def stream_started(self, stream_id: str, codecs: tuple[str, ...]) -> None:
        for listener in self._listeners:
            listener.stream_started(stream_id, codecs)

    def stream_ended(self, stream_id: str) -> None:
        for listener in self._listeners:
            listener.stream_ended(stream_id)

    def upstream_lost(self, stream_id: str, closed_by_upstream: bool) -> None:
        for listener in self._listeners:
            listener.upstream_lost(stream_id, closed_by_upstream)

    def session_ended(self, session_id: str) -> None:
        for listener in self._listeners:
            listener.session_ended(session_id)

    def players_changed(self, stream_id: str, players: int) -> None:
        for listener in self._listeners:
            listener.players_changed(stream_id, players)
