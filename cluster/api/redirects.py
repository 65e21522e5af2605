"""Sending a client to the node that should serve it: 307 with a ticket, or a JSON answer.

Only the initial WHIP/WHEP ``POST`` is ever redirected (never OPTIONS, PATCH or
DELETE: browsers fail a redirected preflight, and a session lives where it was
made). The ``Location`` is absolute and carries a ticket signed with
``cluster.secret`` naming the target node, the stream and the kind, so the target
serves it as decided, without the ``Authorization`` a browser drops on the
cross-origin hop and without deciding again: a ticketed request is never
redirected (no loops). When no node anywhere has room: 503 with ``Retry-After``.

Clients that cannot follow a redirect (a WebSocket handshake; Ant Media's SDK
bootstrapping through its ``httpEndpointUrl``) ask
``GET /{app}/rest/v2/route?streamId=&type=`` for the node instead.
"""

from __future__ import annotations

import math
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cluster.errors import BadRequest, NoRoom
from cluster.node import Node
from cluster.router import Decision
from cluster.routing.clients import client_address
from cluster.routing.geoip import IpAddress
from cluster.tokens import Ticket, sign_ticket, verify_ticket
from cluster.types import (
    AppName,
    NodeRecord,
    SessionKind,
    StreamId,
    parse_app_name,
    parse_stream_id,
)

PATHS: dict[SessionKind, str] = {"publish": "whip", "play": "whep"}


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def client_of(request: Request) -> IpAddress | None:
    """The client's address: the peer, or what a trusted proxy forwarded (``clients``)."""
    node = _node(request)
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist("forwarded"),
        request.headers.getlist("x-forwarded-for"),
        node.settings.trusted_proxies,
    )


def session_url(node: Node, path: str) -> str:
    """An absolute URL on this node: a session ``Location`` must not depend on the first URL."""
    return node.settings.public_url + path


def routing_on(node: Node) -> bool:
    """Routing needs ``server.routing=redirect`` and a ``cluster.secret`` to sign tickets."""
    return node.settings.routing == "redirect" and bool(node.settings.cluster_secret)


def _retry_after(node: Node) -> int:
    return max(1, math.ceil(2 * node.settings.heartbeat_interval_s))


def ticketed(
    node: Node, token: str | None, app: str, stream_id: str, kind: SessionKind
) -> Ticket | None:
    """A request's ``ticket``, verified and spent (401/403 for a forged, expired, misdirected
    or used one); None without one."""
    if token is None:
        return None
    return verify_ticket(node.settings.cluster_secret, token, node.settings.node_id, app,
                         stream_id, kind, node.router.tickets)  # fmt: skip


def _target_url(request: Request, target: NodeRecord, app: str, stream_id: str,
                kind: SessionKind, ticket: str, keep_query: bool) -> str:  # fmt: skip
    """The target's endpoint with ``ticket``; ``keep_query`` carries the client's query on."""
    kept = request.query_params.multi_items() if keep_query else []
    query = [(k, v) for k, v in kept if k != "ticket"]
    query.append(("ticket", ticket))
    return f"{target.public_url}/{app}/{PATHS[kind]}/{stream_id}?{urlencode(query)}"


def _ticket(node: Node, target: NodeRecord, app: str, stream_id: str, kind: SessionKind,
            decision: Decision) -> str:  # fmt: skip
    """A signed ticket for what this node decided: ``target`` serves ``kind`` of the stream."""
    ticket = Ticket(
        decided_by=node.settings.node_id,
        target=target.id,
        app=app,
        stream_id=stream_id,
        kind=kind,
        access_checked=True,
        reserved=decision.reserved,
    )
    return sign_ticket(node.settings.cluster_secret, ticket)


async def route_post(
    request: Request, app: str, stream_id: str, kind: SessionKind
) -> Response | bool:
    """A 307 to the node that should serve this (unticketed) POST; else it is served here,
    and the answer says whether room was reserved here for it."""
    node = _node(request)
    if not routing_on(node):
        return False
    decision = await node.router.decide(kind, StreamId(stream_id), client_of(request))
    if decision.outcome == "nowhere":
        raise NoRoom(f"no node has room for another {kind}; try again", _retry_after(node))
    if decision.outcome == "here":
        return decision.reserved
    assert decision.node is not None
    ticket = _ticket(node, decision.node, app, stream_id, kind, decision)
    location = _target_url(request, decision.node, app, stream_id, kind, ticket, True)
    return Response(
        status_code=307,
        headers={"Location": location, "Cache-Control": "no-store"},
    )


def _app(request: Request) -> AppName:
    try:
        return parse_app_name(request.path_params["app"])
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _kind(raw: str | None) -> SessionKind:
    if raw not in ("play", "publish"):
        raise BadRequest("type must be play or publish")
    return "play" if raw == "play" else "publish"


async def route(request: Request) -> JSONResponse:
    """``GET /{app}/rest/v2/route?streamId=&type=``: the node a client should use, as JSON.

    ---
    summary: Which node a client should publish or play on
    parameters:
      - {$ref: "#/components/parameters/App"}
      - name: streamId
        in: query
        required: true
        schema: {type: string, pattern: "^[A-Za-z0-9_-]{1,128}$"}
      - {name: type, in: query, required: true, schema: {type: string, enum: [play, publish]}}
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    app = _app(request)
    try:
        stream_id = parse_stream_id(request.query_params.get("streamId", ""))
    except ValueError as error:
        raise BadRequest(f"streamId: {error}") from None
    kind = _kind(request.query_params.get("type"))
    node = _node(request)
    if not routing_on(node):
        decision = Decision("here", "server.routing is off, or no cluster.secret to sign with")
    else:
        decision = await node.router.decide(kind, stream_id, client_of(request))
    if decision.outcome == "nowhere":
        raise NoRoom(f"no node has room for another {kind}; try again", _retry_after(node))
    target = decision.node
    public_url = target.public_url if target is not None else node.settings.public_url
    endpoint = f"{public_url}/{app}/{PATHS[kind]}/{stream_id}"
    parts = urlsplit(public_url)
    websocket = ("wss" if parts.scheme == "https" else "ws") + f"://{parts.netloc}/{app}/websocket"
    if target is not None and decision.reserved:
        # One ticket for both doors: whichever the client takes spends the one reservation.
        ticket = _ticket(node, target, app, stream_id, kind, decision)
        endpoint = _target_url(request, target, app, stream_id, kind, ticket, False)
        websocket += "?" + urlencode({"ticket": ticket})
    return JSONResponse(
        {
            "fqdn": parts.hostname,
            "websocket_url": websocket,
            "http_url": f"{public_url}/{app}/",
            f"{PATHS[kind]}_url": endpoint,
            "region": target.node_group if target is not None else node.settings.node_group,
            "node": target.id if target is not None else node.settings.node_id,
            "reason": decision.reason,
        },
        headers={"Cache-Control": "no-store"},
    )


async def app_root(request: Request) -> JSONResponse:
    """``http_url`` of a route answer: Ant Media's SDK checks it with HEAD before connecting.

    ---
    summary: An application's root
    parameters: [{$ref: "#/components/parameters/App"}]
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    app = _app(request)
    node = _node(request)
    return JSONResponse(
        {"app": app, "node": node.settings.node_id, "nodeGroup": node.settings.node_group},
    )


async def regions(request: Request) -> JSONResponse:
    """Per region: nodes, capacity, use, free fraction, accepting (feed-style GSLBs).

    ---
    summary: Regions, their capacity and use
    responses:
      "200": {$ref: "#/components/responses/Objects"}
    """
    return JSONResponse(_node(request).router.regions())


routes = [
    Route("/{app}/rest/v2/route", route, methods=["GET"]),
    Route("/rest/v2/cluster/regions", regions, methods=["GET"]),
    Route("/{app}/", app_root, methods=["GET", "HEAD"]),
]
