"""``/openapi.json`` describes every HTTP route the node has, and is a valid OpenAPI 3 document.

The document is built from the handlers' docstrings, so it cannot name a route
the app lacks; this checks the other way: no route is left out of it, and
what it says passes the OpenAPI specification's own schema.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from cluster.api.app import build_app
from cluster.node import Node, start_node
from cluster.settings import load_settings

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = tmp_path / "conf" / "red5.properties"
    config.parent.mkdir()
    config.write_text("nodeGroup=eu\nserver.name=openapi-node\n", encoding="utf-8")
    node = await start_node(load_settings(config, {}))
    yield node
    await node.close()


def operations(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    """(path, method) of every HTTP operation of ``routes``, paths without convertors."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, WebSocketRoute):
            continue  # not an HTTP operation; the README documents the signalling
        if isinstance(route, Mount):
            assert isinstance(route.app, StaticFiles), f"a mount that is not static: {route.path}"
            continue
        assert isinstance(route, Route), f"a route of an unexpected kind: {route!r}"
        path = re.sub(r":\w+}", "}", route.path)
        if route.methods is not None:  # a function endpoint
            methods = [m for m in route.methods if m != "HEAD"]
        else:  # an HTTPEndpoint class: the methods it defines
            methods = [m for m in METHODS if hasattr(route.endpoint, m.lower())]
        found |= {(path, method.lower()) for method in methods}
    return found


async def test_every_route_is_in_the_document_and_the_document_is_valid(node: Node) -> None:
    app = build_app(node)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        reply = await client.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    document: dict[str, Any] = reply.json()
    validate(document)
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    routes = operations(app.routes)
    assert ("/openapi.json", "get") in routes
    assert ("/{app}/{direction}/{stream}/{session}", "patch") in routes
    assert routes - described == set(), "routes missing from /openapi.json"
    assert described - routes == set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert operation.get("responses"), f"{method} {path} has no responses"
