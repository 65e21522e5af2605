"""Server and cluster REST, in Ant Media Server's shapes where it has a counterpart.

Ant Media's panel posts back the whole settings object it read, so a change
request may carry every field of ``getServerSettings``: the writable ones are
applied, the read-only ones are accepted when unchanged and refused by name
when not, and unknown ones are refused by name.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cluster.api import params
from cluster.api.auth import require_admin
from cluster.api.bodies import read_json_object
from cluster.api.topology import topology
from cluster.errors import BadRequest, ConfigError, NotFound
from cluster.node import Node
from cluster.settings import Settings
from cluster.types import (
    NodeId,
    NodeRecord,
    RelayTree,
    StreamId,
)

logger = logging.getLogger(__name__)

WRITABLE_SETTINGS: dict[str, str] = {
    "nodeGroup": "nodeGroup",
    "logLevel": "server.log_level",
    "cpuLimit": "server.cpu_limit",
}
"""JSON field of the settings object → the properties key it is stored under."""

MAX_PAGE = 1000
MAX_OFFSET = 1_000_000_000
"""Far past any cluster's size, well inside both registries' integer range."""


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def settings_json(node: Node) -> dict[str, Any]:
    s: Settings = node.settings
    return {
        "serverName": s.server_name,
        "nodeGroup": s.node_group,
        "logLevel": s.log_level,
        "cpuLimit": s.cpu_limit,
        "hostAddress": urlsplit(s.public_url).hostname,
        "defaultHttpPort": s.http_port,
        "allowedDashboardCIDR": ",".join(str(n) for n in s.allowed_dashboard_cidr),
        "maxViewers": s.max_players,
        "nodeId": s.node_id,
        "publicUrl": s.public_url,
        "internalUrl": s.internal_url,
        "state": node.state,
        "registry": "embedded" if s.embedded_registry else "postgresql",
    }


async def get_server_settings(request: Request) -> JSONResponse:
    """The node's settings in Ant Media's shape.

    ---
    summary: Read the node's settings
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    return JSONResponse(settings_json(_node(request)))


async def change_server_settings(request: Request) -> JSONResponse:
    """Change nodeGroup, logLevel or cpuLimit; the rest of the object only when unchanged.

    ---
    summary: Change the node's settings (admin)
    security: [{admin: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            description: >-
              The writable fields. Every other field of the settings object (as
              Ant Media's panel posts it back) is accepted only with its current value.
            type: object
            additionalProperties: false
            properties:
              nodeGroup: {$ref: "#/components/schemas/NodeGroup"}
              logLevel: {type: string, enum: [DEBUG, INFO, WARN, ERROR]}
              cpuLimit: {type: integer, minimum: 10, maximum: 100}
    responses:
      "200":
        description: What was changed, or nothing to change.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Result"}
    """
    node = _node(request)
    require_admin(request, node.settings)
    body = await read_json_object(request)
    current = settings_json(node)
    changes: dict[str, str] = {}
    for field, value in body.items():
        if field in WRITABLE_SETTINGS:
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise BadRequest(f"{field} must be a string or a number")
            if value != current[field]:
                changes[WRITABLE_SETTINGS[field]] = str(value)
        elif field in current:
            if value != current[field]:
                raise BadRequest(f"{field} cannot be changed at runtime")
        else:
            raise BadRequest(f"unknown setting {field!r}")
    try:
        written = await node.change_settings(changes) if changes else {}
    except ConfigError as error:
        field = next(f for f, key in WRITABLE_SETTINGS.items() if key == error.key)
        raise BadRequest(f"{field}: {error.reason}") from None
    if not written:
        return JSONResponse({"success": True, "message": "nothing to change"})
    changed = ", ".join(f"{key}={value}" for key, value in written.items())
    logger.info(
        "settings changed by %s: %s", request.client.host if request.client else "?", changed
    )
    return JSONResponse({"success": True, "message": f"changed {changed}"})


def node_json(record: NodeRecord) -> dict[str, Any]:
    load = record.load
    return {
        "id": record.id,
        "ip": urlsplit(record.public_url).hostname,
        "nodeGroup": record.node_group,
        "status": "alive",
        "state": record.state,
        "lastUpdateTime": int(record.heartbeat_at.timestamp() * 1000),
        "cpu": round(load.cpu * 100, 1),
        "memory": round(load.memory * 100, 1),
        "publicUrl": record.public_url,
        "internalUrl": record.internal_url,
        "capacity": {
            "cores": record.capacity.cores,
            "maxViewers": record.capacity.max_players,
            "maxBitrateKbps": record.capacity.max_bitrate_kbps,
        },
        "load": {
            "players": load.players,
            "publishers": load.publishers,
            "pulls": load.pulls,
            "bitrateInKbps": load.bitrate_in_kbps,
            "bitrateOutKbps": load.bitrate_out_kbps,
        },
    }


def _whole_number(request: Request, name: str, low: int, high: int) -> int:
    """A path parameter that must be a whole number in ``low..high``; 400 naming it otherwise.

    Read as text, never by the router's int converter: a number too long for
    the database (or for Python's int parsing) is a bad request, not a 500.
    """
    text: str = request.path_params[name]
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(high))):
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return value


async def list_nodes(request: Request) -> JSONResponse:
    """A page of the live nodes.

    ---
    summary: List live nodes
    parameters:
      - {name: offset, in: path, required: true,
         schema: {type: integer, minimum: 0, maximum: 1000000000}}
      - {name: size, in: path, required: true, schema: {type: integer, minimum: 1, maximum: 1000}}
    responses:
      "200": {$ref: "#/components/responses/Objects"}
    """
    offset = _whole_number(request, "offset", 0, MAX_OFFSET)
    size = _whole_number(request, "size", 1, MAX_PAGE)
    records = await _node(request).registry.live_nodes(offset=offset, limit=size)
    return JSONResponse([node_json(r) for r in records])


async def count_nodes(request: Request) -> JSONResponse:
    """How many nodes are live.

    ---
    summary: Count live nodes
    responses:
      "200":
        description: The count.
        content:
          application/json:
            schema:
              type: object
              required: [number]
              properties: {number: {type: integer, minimum: 0}}
    """
    return JSONResponse({"number": await _node(request).registry.count_live_nodes()})


async def relay_tree(node: Node, stream_id: StreamId) -> tuple[RelayTree, dict[NodeId, NodeRecord]]:
    """A stream's relay tree and the live nodes, from the registry (``NotFound`` if unknown)."""
    tree = await node.registry.relay_tree(stream_id)
    if tree is None:
        raise NotFound(f"stream {stream_id} is not known")
    return tree, {n.id: n for n in await node.registry.live_nodes()}


async def stream_topology(request: Request) -> JSONResponse:
    """A stream's relay tree, from the registry.

    ---
    summary: A stream's relay tree
    parameters: [{$ref: "#/components/parameters/Stream"}]
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    tree, alive = await relay_tree(_node(request), params.stream_id(request))
    return JSONResponse(topology(tree, alive))


async def broadcast_json(node: Node, app: str, stream_id: StreamId) -> dict[str, Any]:
    """Ant Media's broadcast object, with the cluster-wide WebRTC player count."""
    tree, alive = await relay_tree(node, stream_id)
    stream = tree.stream
    if stream.app != app:
        raise NotFound(f"stream {stream.id} is not in {app}")
    origin = alive.get(stream.origin_node)
    players = topology(tree, alive)["totals"]["players"]
    return {
        "streamId": stream.id,
        "name": stream.id,
        "type": "liveStream",
        "publishType": "WebRTC",
        "status": "broadcasting" if stream.state == "live" else "finished",
        "originAdress": urlsplit(origin.public_url).hostname if origin else "",
        "webRTCViewerCount": players,
        "hlsViewerCount": 0,
        "rtmpViewerCount": 0,
        "dashViewerCount": 0,
    }


async def broadcast(request: Request) -> JSONResponse:
    """Ant Media's broadcast object of a stream.

    ---
    summary: A stream's broadcast object
    parameters: [{$ref: "#/components/parameters/App"}, {$ref: "#/components/parameters/Stream"}]
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    app, stream_id = params.app_and_stream(request)
    return JSONResponse(await broadcast_json(_node(request), app, stream_id))


async def one_time_token(request: Request) -> JSONResponse:
    """Ant Media's one-time token: ``?expireDate=<Unix seconds>&type=play|publish`` (admin).

    ---
    summary: Make a one-time stream token (admin)
    security: [{admin: []}]
    parameters:
      - {$ref: "#/components/parameters/App"}
      - {$ref: "#/components/parameters/Stream"}
      - {name: expireDate, in: query, required: true, schema: {type: integer}}
      - {name: type, in: query, required: true, schema: {type: string, enum: [play, publish]}}
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    node = _node(request)
    require_admin(request, node.settings)
    app, stream_id = params.app_and_stream(request)
    query = request.query_params
    if "expireDate" not in query or "type" not in query:
        raise BadRequest("give expireDate (Unix seconds) and type (play or publish)")
    token = await node.streams.access.one_time_token(
        app, stream_id, query["type"], query["expireDate"]
    )
    return JSONResponse(token)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: 200 while the process serves HTTP, whatever the registry does.

    A registry outage must not get every node restarted by its liveness probe
    (media keeps flowing through one); the body says it, and ``/readyz`` is
    what stops sending new clients.

    ---
    summary: Liveness
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    node = _node(request)
    healthy = node.heartbeat.healthy
    body = {
        "status": "ok" if healthy else "degraded",
        "nodeId": node.settings.node_id,
        "nodeGroup": node.settings.node_group,
        "state": node.state,
        "registry": "reachable" if healthy else "unreachable",
    }
    return JSONResponse(body)


async def readyz(request: Request) -> JSONResponse:
    """Readiness for DNS steering and Kubernetes: 200 only while new work is welcome.

    Answered from memory. The body's ``status`` is ``accepting`` only when ready,
    and the word appears nowhere else, so string-matching health checks (Route 53,
    Cloudflare) can look for it.

    ---
    summary: Readiness
    responses:
      "200": {$ref: "#/components/responses/Object"}
      "503": {$ref: "#/components/responses/Object"}
    """
    node = _node(request)
    verdict = node.readiness()
    body = {
        "status": verdict.status,
        "reason": verdict.reason,
        "nodeId": node.settings.node_id,
        "nodeGroup": node.settings.node_group,
    }
    return JSONResponse(body, status_code=200 if verdict.ready else 503)


routes = [
    Route("/rest/getServerSettings", get_server_settings, methods=["GET"]),
    Route("/rest/v2/server-settings", get_server_settings, methods=["GET"]),
    Route("/rest/changeServerSettings", change_server_settings, methods=["POST"]),
    Route("/rest/v2/server-settings", change_server_settings, methods=["POST", "PUT"]),
    Route("/rest/v2/cluster/nodes/{offset}/{size}", list_nodes, methods=["GET"]),
    Route("/rest/v2/cluster/node-count", count_nodes, methods=["GET"]),
    Route("/rest/v2/streams/{stream}/topology", stream_topology, methods=["GET"]),
    Route("/{app}/rest/v2/broadcasts/{stream}", broadcast, methods=["GET"]),
    Route("/{app}/rest/v2/broadcasts/{stream}/token", one_time_token, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
]
