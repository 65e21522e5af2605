"""WHIP (RFC 9725) publish and WHEP play endpoints, as real browser clients call them.

``POST /{app}/whip/{streamId}`` and ``POST /{app}/whep/{streamId}`` take an SDP
offer (with or without candidates) and answer ``201`` with the SDP answer, a
``Location`` for the session and an ``ETag``. ``PATCH`` on the session adds
trickled candidates (``application/trickle-ice-sdpfrag``); ``DELETE`` ends that
session only. ``OPTIONS`` tells clients that PATCH is supported, so they
trickle instead of waiting for gathering (CORS, preflights included, is the
app's ``CORSMiddleware``). Nodes pull from
each other through the same exchange at ``/internal/v1/{app}/pull/{streamId}``,
with a cluster token instead of a player's credentials. See
``../shared/protocols/whip-whep-clients.md`` for what the clients send.
"""

from __future__ import annotations

import re
from typing import Literal

from starlette.convertors import Convertor, register_url_convertor
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cluster.api import params
from cluster.api.bodies import content_type, read_body
from cluster.api.connections import CLIENT_CERTIFIED
from cluster.api.redirects import route_post, session_url, ticketed
from cluster.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
)
from cluster.node import Node
from cluster.streams.local import LocalStreams, SessionRole
from cluster.streams.pulls import internal_pull_path
from cluster.tokens import verify_pull_token
from cluster.types import NodeId, SessionKind
from media.types import SessionDescription

SDP_LIMIT = 64 * 1024
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

Direction = Literal["whip", "whep"]


class _DirectionConvertor(Convertor[str]):
    """``{direction:direction}`` in a path: ``whip`` or ``whep``, nothing else matches."""

    regex = "whip|whep"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("direction", _DirectionConvertor())


def _streams(request: Request) -> LocalStreams:
    node: Node = request.app.state.node
    return node.streams


def _session_id(request: Request) -> str:
    session_id: str = request.path_params["session"]
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound("no such session")
    return session_id


async def _offer(request: Request) -> str:
    if content_type(request) != "application/sdp":
        raise UnsupportedMediaType("the offer must be sent as application/sdp")
    body = await read_body(request, SDP_LIMIT)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the SDP offer is not UTF-8 text") from None


def _options(allow: str) -> Response:
    return Response(
        status_code=204,
        headers={
            "Allow": allow,
            "Accept-Post": "application/sdp",
            "Accept-Patch": "application/trickle-ice-sdpfrag",
        },
    )


def _created(request: Request, answer: SessionDescription, resource: str) -> Response:
    """201 with the answer; the session lives at ``resource``/<session id> on this node.

    The ``Location`` is absolute: a client that was redirected here resolves a
    relative one against the URL it first posted to, the wrong node.
    """
    return Response(
        answer.sdp,
        status_code=201,
        media_type="application/sdp",
        headers={
            "Location": session_url(request.app.state.node, f"{resource}/{answer.session_id}"),
            "ETag": f'"{answer.session_id}"',
            "Accept-Patch": "application/trickle-ice-sdpfrag",
        },
    )


def _stream_token(request: Request) -> str:
    """The client's stream token: ``Authorization: Bearer`` (RFC 9725) or ``?token=``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query_params.get("token", "")


class StreamResource(HTTPEndpoint):
    """``/{app}/whip|whep/{stream}``: POST an offer to publish or play."""

    async def post(self, request: Request) -> Response:
        """Publish (whip) or play (whep) a stream.

        ---
        summary: Publish (WHIP) or play (WHEP)
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Direction"}
          - {$ref: "#/components/parameters/Stream"}
          - {name: token, in: query, required: false, schema: {type: string}}
        requestBody: {$ref: "#/components/requestBodies/Offer"}
        responses:
          "201": {$ref: "#/components/responses/Answer"}
          "307": {$ref: "#/components/responses/Redirect"}
        """
        app, stream_id = params.app_and_stream(request)
        direction: Direction = request.path_params["direction"]
        if content_type(request) != "application/sdp":
            raise UnsupportedMediaType("the offer must be sent as application/sdp")
        streams = _streams(request)
        kind: SessionKind = "publish" if direction == "whip" else "play"
        node: Node = request.app.state.node
        ticket = ticketed(node, request.query_params.get("ticket"), app, stream_id, kind)
        if ticket is None or not ticket.access_checked:
            client = request.client.host if request.client else ""
            await streams.authorize(app, stream_id, kind, _stream_token(request), client)
        if ticket is None:  # a ticketed request was decided already: never redirected again
            routed = await route_post(request, app, stream_id, kind)
            if isinstance(routed, Response):
                return routed
            reserved = routed
        else:
            reserved = ticket.reserved
        with node.router.arriving(reserved) as counted:
            offer = await _offer(request)
            if direction == "whip":
                answer = await streams.publish(app, stream_id, offer)
            else:
                answer = await streams.play(app, stream_id, offer, counted)
        return _created(request, answer, f"/{app}/{direction}/{stream_id}")

    async def options(self, request: Request) -> Response:
        """---
        summary: What a stream resource allows
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Direction"}
          - {$ref: "#/components/parameters/Stream"}
        responses:
          "204": {$ref: "#/components/responses/Options"}
        """
        return _options("OPTIONS, POST")


class SessionResource(HTTPEndpoint):
    """``/{app}/whip|whep/{stream}/{session}``: trickle candidates, or end the session."""

    async def patch(self, request: Request) -> Response:
        """Trickle ICE. Clients send the ETag back as If-Match (RFC 9725) or as ETag (Eyevinn).

        ---
        summary: Trickle ICE candidates into a session
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Direction"}
          - {$ref: "#/components/parameters/Stream"}
          - {$ref: "#/components/parameters/Session"}
        requestBody:
          required: true
          content:
            application/trickle-ice-sdpfrag:
              schema: {type: string, maxLength: 65536}
        responses:
          "204": {$ref: "#/components/responses/Done"}
        """
        session_id = _bound_session(request)
        if content_type(request) != "application/trickle-ice-sdpfrag":
            raise UnsupportedMediaType("PATCH takes application/trickle-ice-sdpfrag")
        tag = request.headers.get("if-match") or request.headers.get("etag")
        if tag is not None and tag.strip() not in ("*", f'"{session_id}"'):
            raise PreconditionFailed("the ETag does not match this session")
        fragment = (await read_body(request, SDP_LIMIT)).decode("utf-8", errors="replace")
        await _streams(request).trickle(session_id, fragment)
        return Response(status_code=204)

    async def delete(self, request: Request) -> Response:
        """End this session only (a publisher's ends its stream and its players).

        ---
        summary: End a session
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Direction"}
          - {$ref: "#/components/parameters/Stream"}
          - {$ref: "#/components/parameters/Session"}
        responses:
          "200": {$ref: "#/components/responses/Done"}
        """
        await _streams(request).close_session(_bound_session(request))
        return Response(status_code=200)

    async def options(self, request: Request) -> Response:
        """---
        summary: What a session allows
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Direction"}
          - {$ref: "#/components/parameters/Stream"}
          - {$ref: "#/components/parameters/Session"}
        responses:
          "204": {$ref: "#/components/responses/Options"}
        """
        return _options("OPTIONS, PATCH, DELETE")


class DownstreamResource(HTTPEndpoint):
    """Internal WHEP: another node pulls a stream, proving it is a node with a cluster token."""

    async def post(self, request: Request) -> Response:
        """---
        summary: Pull a stream to another node (internal WHEP)
        security: [{cluster: []}]
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Stream"}
        requestBody: {$ref: "#/components/requestBodies/Offer"}
        responses:
          "201": {$ref: "#/components/responses/Answer"}
        """
        app, stream_id = params.app_and_stream(request)
        streams = _streams(request)
        downstream = _pulling_node(request, stream_id)
        offer = await _offer(request)
        answer = await streams.serve_downstream(app, stream_id, offer, downstream)
        return _created(request, answer, internal_pull_path(app, stream_id))


class DownstreamSessionResource(HTTPEndpoint):
    """The session of a downstream's pull: DELETE ends it."""

    async def delete(self, request: Request) -> Response:
        """---
        summary: End a pull (internal)
        security: [{cluster: []}]
        parameters:
          - {$ref: "#/components/parameters/App"}
          - {$ref: "#/components/parameters/Stream"}
          - {$ref: "#/components/parameters/Session"}
        responses:
          "200": {$ref: "#/components/responses/Done"}
        """
        _pulling_node(request, request.path_params["stream"])
        await _streams(request).close_session(_bound_session(request))
        return Response(status_code=200)


def _bound_session(request: Request) -> str:
    """The session a session URL names, checked to be of that URL's app, kind and stream."""
    app, stream_id = params.app_and_stream(request)
    session_id = _session_id(request)
    direction = request.path_params.get("direction")
    role: SessionRole = (
        "publisher" if direction == "whip" else "player" if direction == "whep" else "downstream"
    )
    _streams(request).check_session(app, role, stream_id, session_id)
    return session_id


def _pulling_node(request: Request, stream_id: str) -> NodeId:
    """The node behind an internal request: only a valid cluster token for the stream opens it,
    and, when the node serves mutual TLS, only over a connection with a node's certificate."""
    node: Node = request.app.state.node
    if node.settings.internal_needs_certificate and not getattr(
        request.state, CLIENT_CERTIFIED, False
    ):
        raise Forbidden(
            "the internal pull path takes only nodes: present a client certificate from the "
            "cluster's CA (server.tlsCA)"
        )
    return verify_pull_token(
        node.settings.cluster_secret, request.headers.get("authorization", ""), stream_id
    )


routes = [
    Route("/{app}/{direction:direction}/{stream}", StreamResource),
    Route("/{app}/{direction:direction}/{stream}/{session}", SessionResource),
    Route(internal_pull_path("{app}", "{stream}"), DownstreamResource),
    Route(internal_pull_path("{app}", "{stream}") + "/{session}", DownstreamSessionResource),
]
