"""CORS on the whole surface: a browser's script can read successes, errors and redirects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cluster.api.app import build_app
from cluster.node import Node, start_node
from cluster.settings import load_settings

ORIGIN = {"Origin": "http://page.example"}


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = tmp_path / "red5.properties"
    config.write_text("server.name=cors-node\nserver.dataDir=var\n", encoding="utf-8")
    node: Node = await start_node(load_settings(config, {}))
    transport = httpx.ASGITransport(app=build_app(node), client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        yield client
    await node.close()


async def test_a_success_is_readable_across_origins(http: httpx.AsyncClient) -> None:
    reply = await http.get("/rest/v2/cluster/node-count", headers=ORIGIN)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        pytest.param("/LiveApp/whep/nobody", "v=0\r\n", 404, id="unknown stream"),
        pytest.param("/LiveApp/whip/bad%20name", "v=0\r\n", 400, id="bad stream id"),
    ],
)
async def test_an_error_is_readable_across_origins_with_its_reason(
    http: httpx.AsyncClient, path: str, body: str, status: int
) -> None:
    headers = {**ORIGIN, "Content-Type": "application/sdp"}
    reply = await http.post(path, content=body, headers=headers)
    assert reply.status_code == status
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.json()["success"] is False


async def test_a_preflight_allows_the_whip_methods_and_exposes_the_session_headers(
    http: httpx.AsyncClient,
) -> None:
    preflight = {
        **ORIGIN,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "content-type, if-match",
    }
    reply = await http.options("/LiveApp/whip/s1/session", headers=preflight)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "PATCH" in reply.headers["access-control-allow-methods"]
    assert "if-match" in reply.headers["access-control-allow-headers"].lower()
    created = await http.post(
        "/LiveApp/whip/s1", content="v=0\r\n", headers={**ORIGIN, "Content-Type": "text/plain"}
    )
    assert "Location" in created.headers["access-control-expose-headers"]
    assert "ETag" in created.headers["access-control-expose-headers"]
