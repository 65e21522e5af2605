"""The dashboard: ``GET /dashboard`` (a static page) and its live feed over Server-Sent Events.

The page is plain HTML, CSS and JavaScript from ``static/`` (no build step, no
CDN). Its feed, ``GET /dashboard/events?stream=<id>``, pushes the node's
cluster view once per heartbeat: regions and nodes with their load, the
chosen stream's relay tree (the same shape as the topology REST), and the
cluster events since the last push, derived by diffing successive snapshots
(``cluster_events``).

Cost stays off the media plane: one ``DashboardHub`` per node waits for the
heartbeat's view refresh, diffs once and serialises once per stream watched,
whatever the number of pages; each subscriber has a small bounded queue
(a slow page loses old messages, never slows the node), and the number of
open feeds is capped by ``dashboard.maxEventStreams`` (503 past it). The feed
is read-only; its log starts with the cluster as it stood when the node's
first dashboard opened (as if it had just formed), then follows each change.
The page's region change calls the admin REST with the token
the operator types in. When the registry cannot be read the feed keeps
pushing the last view marked ``"registry": "unreachable"``, and recovers by
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cluster.api.cluster_events import ClusterEvent, diff
from cluster.api.rest import node_json
from cluster.api.topology import topology
from cluster.errors import BadRequest, ClusterError
from cluster.node import Node
from cluster.types import (
    STREAM_ID_PATTERN,
    ClusterSnapshot,
    NodeId,
    NodeRecord,
    RelayTree,
    StreamId,
)

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HISTORY = 200
"""Events a page gets when it opens (the node's recent history)."""
QUEUE = 4
"""Messages held per subscriber; a page further behind loses the oldest."""
GONE_KEPT_S = 120.0
"""How long a node that died or left stays listed (as dead or left)."""
KEEPALIVE_S = 10.0


class TooManyEventStreams(ClusterError):
    status = 503


class NodeDraining(ClusterError):
    status = 503


@dataclass(eq=False)
class Subscriber:
    stream: StreamId | None
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def offer(self, message: str) -> None:
        """Queue without waiting: when full, the oldest message makes room."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(message)


class DashboardHub:
    """Turns each refresh of the node's cluster view into one message per stream watched."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.refused = 0
        """Feeds refused since the node started (limit or draining), for /metrics."""
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._previous: ClusterSnapshot | None = None
        self._gone: dict[NodeId, tuple[NodeRecord, str, float]] = {}
        self.history: deque[ClusterEvent] = deque(maxlen=HISTORY)

    @property
    def node(self) -> Node:
        return self._node

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, stream: StreamId | None) -> tuple[Subscriber, str]:
        """A new feed and its first message (the current view and the recent history)."""
        limit = self._node.settings.dashboard_max_event_streams
        if self._node.state == "draining":
            self.refused += 1
            raise NodeDraining(f"node {self._node.settings.node_id} is draining")
        if len(self._subscribers) >= limit:
            self.refused += 1
            raise TooManyEventStreams(
                f"this node serves at most {limit} dashboard event streams "
                "(dashboard.maxEventStreams); close another dashboard or use another node"
            )
        subscriber = Subscriber(stream)
        self._subscribers.add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard feed")
        if self._previous is None and self._node.view.snapshot is not None:
            self._previous = self._node.view.snapshot
            empty = ClusterSnapshot(read_at=self._previous.read_at, nodes=())
            self.history.extend(diff(empty, self._previous))
        return subscriber, self._message(self._previous, stream, list(self.history))

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a feed; the hub's task stops with the last one (no cost without dashboards)."""
        self._subscribers.discard(subscriber)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        interval = self._node.settings.heartbeat_interval_s
        while True:
            snapshot = await self._node.view.next_update(max(2.0 * interval, 1.0))
            try:
                events: list[ClusterEvent] = []
                if snapshot is not None:
                    if self._previous is not None:
                        events = diff(self._previous, snapshot)
                        self._note_gone(self._previous, snapshot)
                        self.history.extend(events)
                    self._previous = snapshot
                self._publish(snapshot or self._previous, events)
            except Exception:  # a bug here must not silence every dashboard for good
                logger.exception("the dashboard feed could not render the cluster view")

    def _note_gone(self, before: ClusterSnapshot, after: ClusterSnapshot) -> None:
        now = time.monotonic()
        alive = after.alive
        for record in before.nodes:
            if record.id not in alive:
                state = "left" if record.state == "draining" else "dead"
                self._gone[record.id] = (record, state, now)
        for node_id in list(self._gone):
            if node_id in alive or now - self._gone[node_id][2] > GONE_KEPT_S:
                del self._gone[node_id]

    def _publish(self, snapshot: ClusterSnapshot | None, events: list[ClusterEvent]) -> None:
        messages: dict[StreamId | None, str] = {}
        for subscriber in list(self._subscribers):
            if subscriber.stream not in messages:
                messages[subscriber.stream] = self._message(snapshot, subscriber.stream, events)
            subscriber.offer(messages[subscriber.stream])

    def _message(
        self,
        snapshot: ClusterSnapshot | None,
        stream: StreamId | None,
        events: Iterable[ClusterEvent],
    ) -> str:
        body = view_json(self._node, snapshot, stream, self._gone.values())
        body["events"] = [event.json() for event in events]
        return f"event: view\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


def view_json(
    node: Node,
    snapshot: ClusterSnapshot | None,
    stream: StreamId | None,
    gone: Iterable[tuple[NodeRecord, str, float]] = (),
) -> dict[str, Any]:
    """What the page draws: this node, the registry's state, nodes, streams, one relay tree."""
    settings = node.settings
    reachable = node.heartbeat.healthy and snapshot is not None
    body: dict[str, Any] = {
        "node": settings.node_id,
        "nodeGroup": settings.node_group,
        "registry": "reachable" if reachable else "unreachable",
        "readAt": snapshot.read_at.isoformat() if snapshot else None,
        "ageMs": round(node.view.age_s * 1000) if snapshot else None,
        "stream": stream,
        "nodes": [],
        "streams": [],
        "topology": None,
    }
    if snapshot is None:
        return body
    nodes = [node_json(record) for record in snapshot.nodes]
    for record, state, _ in gone:
        nodes.append({**node_json(record), "status": state, "state": state})
    body["nodes"] = sorted(nodes, key=lambda n: (n["nodeGroup"], n["id"]))
    body["streams"] = [
        {"streamId": s.id, "app": s.app, "state": s.state, "mainOrigin": s.origin_node}
        for s in snapshot.streams
    ]
    chosen = snapshot.stream(stream) if stream is not None else None
    if chosen is not None:
        tree = RelayTree(
            chosen,
            tuple(o for o in snapshot.secondary_origins if o.stream_id == chosen.id),
            snapshot.pulls_of(chosen.id),
        )
        body["topology"] = topology(tree, snapshot.alive)
    return body


def _stream(request: Request) -> StreamId | None:
    raw = request.query_params.get("stream")
    if raw is None or raw == "":
        return None
    if not STREAM_ID_PATTERN.fullmatch(raw):
        raise BadRequest("the stream id must be 1 to 128 of A-Z a-z 0-9 _ -")
    return StreamId(raw)


class DashboardCollector(Collector):
    """``/metrics`` gauges of the dashboard's feeds (open now, refused so far)."""

    def __init__(self, hub: DashboardHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "tierstream_dashboard_feeds",
            "Dashboard live feeds open on this node.",
            value=float(self._hub.subscribers),
        )
        yield CounterMetricFamily(
            "tierstream_dashboard_feeds_refused",
            "Dashboard feeds refused at dashboard.maxEventStreams or while draining.",
            value=float(self._hub.refused),
        )


def routes(hub: DashboardHub) -> list[BaseRoute]:
    node = hub.node

    async def page(request: Request) -> Response:
        """---
        summary: The dashboard page
        parameters: [{name: stream, in: query, required: false, schema: {type: string}}]
        responses:
          "200":
            description: The page.
            content: {text/html: {schema: {type: string}}}
        """
        _stream(request)
        return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})

    async def events(request: Request) -> Response:
        """---
        summary: The dashboard's live feed (Server-Sent Events, never ends while serving)
        parameters: [{name: stream, in: query, required: false, schema: {type: string}}]
        responses:
          "200":
            description: The feed.
            content: {text/event-stream: {schema: {type: string}}}
        """
        subscriber, first = hub.subscribe(_stream(request))
        return StreamingResponse(
            _feed(node, hub, subscriber, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/dashboard/events", events, methods=["GET"]),
        Mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static"),
    ]


async def _feed(
    node: Node, hub: DashboardHub, subscriber: Subscriber, first: str
) -> AsyncIterator[str]:
    """One page's feed; ends when the node drains so its HTTP server can stop at once."""
    try:
        yield first
        quiet_since = time.monotonic()
        while node.state != "draining":
            with contextlib.suppress(TimeoutError):
                yield await asyncio.wait_for(subscriber.queue.get(), 1.0)
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
        yield "event: bye\ndata: {}\n\n"
    finally:
        hub.unsubscribe(subscriber)
