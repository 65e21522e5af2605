"""``/openapi.json``: the node's HTTP API as an OpenAPI 3 document, built from the routes.

Each handler describes its own operation in YAML after a ``---`` line of its
docstring (Starlette's ``SchemaGenerator`` reads them from the app's routes), so
the document is written next to the code it describes and cannot list a route
the app does not have; a test checks that every route the app has is in it.
What many operations share (path parameters, the error reply) is defined once
here, under ``components``, and referenced from the docstrings; every operation
gets the error reply as its ``default`` response, since any request can be
refused (a path that names nothing, a limit reached, a bad body). The Ant Media
WebSocket (``/{app}/websocket``) is not an HTTP operation, so it is not in the
document: the README describes it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

from cluster.types import APP_NAME_PATTERN, NODE_GROUP_PATTERN, STREAM_ID_PATTERN


def _name(pattern: str, what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{pattern}$", "description": what}


def _path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_JSON_OBJECT = {"type": "object", "additionalProperties": True}

BASE: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "tierstream node",
        "version": "1",
        "description": (
            "REST, WHIP/WHEP and health endpoints of one tierstream node. Errors are JSON "
            '{"success": false, "message": ...} with a 4xx or 5xx status. The Ant Media '
            "WebSocket signalling at /{app}/websocket is described in the README."
        ),
    },
    "components": {
        "parameters": {
            "App": _path_parameter("app", _name(APP_NAME_PATTERN.pattern, "application name")),
            "Stream": _path_parameter("stream", _name(STREAM_ID_PATTERN.pattern, "stream id")),
            "Direction": _path_parameter(
                "direction",
                {
                    "type": "string",
                    "enum": ["whip", "whep"],
                    "description": "whip publishes, whep plays",
                },
            ),
            "Session": _path_parameter(
                "session", _name("[A-Za-z0-9_-]{1,64}", "session id from the Location")
            ),
        },
        "schemas": {
            "Failure": {
                "type": "object",
                "required": ["success", "message"],
                "properties": {
                    "success": {"type": "boolean", "enum": [False]},
                    "message": {"type": "string"},
                },
            },
            "Result": {
                "type": "object",
                "required": ["success", "message"],
                "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}},
            },
            "Object": _JSON_OBJECT,
            "NodeGroup": _name(NODE_GROUP_PATTERN.pattern, "region"),
        },
        "responses": {
            "Failure": {
                "description": "The request was refused or failed: the message says why.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Failure"}}
                },
            },
            "Object": {
                "description": "A JSON object (see the README for its fields).",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Object"}}
                },
            },
            "Objects": {
                "description": "A JSON array of objects (see the README for their fields).",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Object"},
                        }
                    }
                },
            },
            "Answer": {
                "description": "The SDP answer; the session lives at Location (absolute).",
                "headers": {
                    "Location": {"schema": {"type": "string"}},
                    "ETag": {"schema": {"type": "string"}},
                },
                "content": {"application/sdp": {"schema": {"type": "string"}}},
            },
            "Redirect": {
                "description": "Served by another node: Location carries a signed ticket.",
                "headers": {"Location": {"schema": {"type": "string"}}},
            },
            "Options": {
                "description": "What the resource allows (and CORS for browsers).",
                "headers": {
                    "Allow": {"schema": {"type": "string"}},
                    "Accept-Patch": {"schema": {"type": "string"}},
                },
            },
            "Done": {"description": "Done; no body."},
        },
        "requestBodies": {
            "Offer": {
                "required": True,
                "content": {"application/sdp": {"schema": {"type": "string", "maxLength": 65536}}},
            },
        },
        "securitySchemes": {
            "admin": {
                "type": "http",
                "scheme": "bearer",
                "description": "server.adminToken, from inside server.allowed_dashboard_CIDR",
            },
            "cluster": {
                "type": "http",
                "scheme": "bearer",
                "description": "a pull token signed with cluster.secret (node to node)",
            },
        },
    },
}
"""What the docstrings share; ``paths`` is filled from the routes."""

_generator = SchemaGenerator(BASE)
_FAILURE = "#/components/responses/Failure"


async def document(request: Request) -> JSONResponse:
    """The OpenAPI document of this app's routes.

    ---
    summary: This document
    responses:
      "200": {$ref: "#/components/responses/Object"}
    """
    cached: dict[str, Any] | None = getattr(request.app.state, "openapi", None)
    if cached is None:
        cached = request.app.state.openapi = _document(request.app.routes)
    return JSONResponse(cached)


def _document(routes: list[BaseRoute]) -> dict[str, Any]:
    built = _generator.get_schema(routes)
    for item in built["paths"].values():
        for operation in item.values():
            operation["responses"].setdefault("default", {"$ref": _FAILURE})
    return built
