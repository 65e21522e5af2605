"""The node's ASGI application: its routes and the one place errors become responses.

Every error a handler raises, the control plane's and the media plane's, ends
here as JSON in Ant Media's result shape, ``{"success": false, "message": ...}``,
with the status its type carries; an
unexpected exception is logged with its traceback and answered 500 without
details, and the node keeps serving.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cluster.api import dashboard, openapi, redirects, rest, websocket, whip
from cluster.api.client_faults import ClientFaults, shown
from cluster.api.metrics import metrics_endpoint
from cluster.errors import ClusterError, NoRoom
from cluster.node import Node
from media.errors import (
    BadSdp,
    CodecMismatch,
    MediaError,
    Overloaded,
    StreamAlreadyPublished,
    UnknownSession,
    UnknownStream,
)

logger = logging.getLogger(__name__)


def _failure(message: str, status: int) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status)


async def _cluster_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClusterError)
    if isinstance(exc, NoRoom):  # the cluster is full, not broken: the client retries later
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        response = _failure(str(exc), exc.status)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if exc.status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
    return _failure(str(exc), exc.status)


MEDIA_STATUS: dict[type[MediaError], int] = {
    BadSdp: 400,
    UnknownStream: 404,
    UnknownSession: 404,
    CodecMismatch: 406,
    StreamAlreadyPublished: 409,
    Overloaded: 503,
}


async def _media_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MediaError)
    status = next((code for kind, code in MEDIA_STATUS.items() if isinstance(exc, kind)), 500)
    if status >= 500 and not isinstance(exc, Overloaded):  # the engine logged the refusal
        logger.error("%s %s failed in the media plane: %s", request.method, request.url.path, exc)
    return _failure(str(exc), status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _failure(exc.detail, exc.status_code)


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    """The client left mid-request: one short line, no traceback; nobody reads the reply."""
    faults: ClientFaults = request.app.state.client_faults
    faults.report(
        request.client.host if request.client else "?",
        "disconnected mid-request",
        f"disconnected during {request.method} {shown(request.url.path)}",
    )
    return Response(status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s failed unexpectedly", request.method, request.url.path)
    return _failure("internal error; the node's log has the details", 500)


CORS_EXPOSED = ["Location", "ETag", "Link", "Accept-Patch", "Accept-Post", "Retry-After"]
"""Headers a browser's script may read: WHIP/WHEP clients need the session's Location and ETag."""


def build_app(node: Node, client_faults: ClientFaults | None = None) -> Starlette:
    feeds = dashboard.DashboardHub(node)
    app = Starlette(
        routes=[
            *rest.routes,
            *redirects.routes,
            *whip.routes,
            *websocket.routes,
            *dashboard.routes(feeds),
            Route(
                "/metrics",
                metrics_endpoint(node, dashboard.DashboardCollector(feeds)),
                methods=["GET"],
            ),
            Route("/openapi.json", openapi.document, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "If-Match", "ETag"],
                expose_headers=CORS_EXPOSED,
                max_age=86400,
            )
        ],
        exception_handlers={
            ClusterError: _cluster_error,
            MediaError: _media_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_disconnect,
            Exception: _unexpected_error,
        },
    )
    app.state.node = node
    app.state.client_faults = client_faults or ClientFaults()
    return app
