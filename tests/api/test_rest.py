"""Server-settings REST on a real node (embedded registry), called in-process.

The node is the real one — settings file, registry, heartbeat — only the HTTP
hop is in-process, so the client address can be chosen for the CIDR checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.api.app import build_app
from cluster.node import Node, start_node
from cluster.settings import load_settings

TOKEN = "rest-test-token"
CONFIG = f"""\
# A node for the REST tests.
nodeGroup=eu
server.name=rest-node
# Only loopback may change settings.
server.allowed_dashboard_CIDR=127.0.0.0/8
server.adminToken={TOKEN}
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = tmp_path / "conf" / "red5.properties"
    config.parent.mkdir()
    config.write_text(CONFIG, encoding="utf-8")
    node = await start_node(load_settings(config, {}))
    yield node
    await node.close()


def client(node: Node, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(node), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://node")


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_settings_read_in_ant_media_shape(node: Node) -> None:
    async with client(node) as c:
        for path in ("/rest/getServerSettings", "/rest/v2/server-settings"):
            body = (await c.get(path)).json()
            assert body["serverName"] == "rest-node"
            assert body["nodeGroup"] == "eu"
            assert body["logLevel"] == "INFO"
            assert body["cpuLimit"] == 75
            assert body["nodeId"] == "rest-node"
            assert body["publicUrl"] == "http://127.0.0.1:5080"


@pytest.mark.parametrize(
    "path", ["/rest/changeServerSettings", "/rest/v2/server-settings"], ids=["v1", "v2"]
)
async def test_change_node_group_is_persisted_applied_and_heartbeated(
    node: Node, path: str
) -> None:
    async with client(node) as c:
        reply = await c.post(path, json={"nodeGroup": "us"}, headers=auth())
        assert reply.status_code == 200
        assert reply.json() == {"success": True, "message": "changed nodeGroup=us"}
        assert (await c.get("/rest/getServerSettings")).json()["nodeGroup"] == "us"
    text = node.settings.config_path.read_text(encoding="utf-8")
    assert text == CONFIG.replace("nodeGroup=eu", "nodeGroup=us")
    for _ in range(50):  # the change brings the next heartbeat forward
        record = await node.registry.node(node.settings.node_id)
        if record is not None and record.node_group == "us":
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the registry did not show the new node group within 5 s")


async def test_whole_settings_object_posted_back_changes_only_writable_fields(node: Node) -> None:
    async with client(node) as c:
        settings: dict[str, Any] = (await c.get("/rest/getServerSettings")).json()
        settings["logLevel"] = "DEBUG"
        reply = await c.post("/rest/changeServerSettings", json=settings, headers=auth())
    assert reply.json()["success"] is True
    assert node.settings.log_level == "DEBUG"
    assert "server.log_level=DEBUG" in node.settings.config_path.read_text(encoding="utf-8")


JSON_AUTH = auth() | {"content-type": "application/json"}
TEXT_AUTH = auth() | {"content-type": "text/plain"}


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        pytest.param(
            {"content": b"{nodeGroup: us", "headers": JSON_AUTH},
            400,
            "not valid JSON",
            id="malformed JSON",
        ),
        pytest.param(
            {"json": ["us"], "headers": auth()},
            400,
            "JSON object",
            id="JSON that is not an object",
        ),
        pytest.param(
            {"json": {"nodeGroup": "us", "colour": "red"}, "headers": auth()},
            400,
            "unknown setting 'colour'",
            id="unknown key",
        ),
        pytest.param(
            {"json": {"nodeGroup": "us east"}, "headers": auth()},
            400,
            "nodeGroup: 'us east' must be",
            id="bad nodeGroup",
        ),
        pytest.param(
            {"json": {"nodeGroup": True}, "headers": auth()},
            400,
            "string or a number",
            id="nodeGroup of the wrong type",
        ),
        pytest.param(
            {"json": {"serverName": "other"}, "headers": auth()},
            400,
            "serverName cannot be changed",
            id="read-only field changed",
        ),
        pytest.param(
            {"json": {"nodeGroup": "us"}},
            401,
            "Authorization: Bearer",
            id="missing token",
        ),
        pytest.param(
            {"json": {"nodeGroup": "us"}, "headers": auth("guess")},
            401,
            "token is wrong",
            id="wrong token",
        ),
        pytest.param(
            {"content": b"nodeGroup=us", "headers": TEXT_AUTH},
            415,
            "application/json",
            id="not JSON content type",
        ),
        pytest.param(
            {"json": {"nodeGroup": "x" * 70_000}, "headers": auth()},
            413,
            "over the 65536 byte limit",
            id="oversized body",
        ),
    ],
)
async def test_bad_change_request_is_refused_and_the_file_is_unchanged(
    node: Node, request_kwargs: dict[str, Any], status: int, message: str
) -> None:
    async with client(node) as c:
        reply = await c.post("/rest/changeServerSettings", **request_kwargs)
        assert reply.status_code == status
        assert reply.json()["success"] is False
        assert message in reply.json()["message"]
        assert (await c.get("/healthz")).status_code == 200
    assert node.settings.config_path.read_text(encoding="utf-8") == CONFIG
    assert node.settings.node_group == "eu"


async def test_change_from_outside_the_allowed_network_is_forbidden(node: Node) -> None:
    async with client(node, address="192.0.2.7") as c:
        reply = await c.post("/rest/changeServerSettings", json={"nodeGroup": "us"}, headers=auth())
    assert reply.status_code == 403
    assert "192.0.2.7 is not inside server.allowed_dashboard_CIDR" in reply.json()["message"]
    assert node.settings.config_path.read_text(encoding="utf-8") == CONFIG


async def test_change_is_disabled_without_an_admin_token(tmp_path: Path) -> None:
    config = tmp_path / "red5.properties"
    config.write_text("server.name=tokenless\nserver.dataDir=var\n", encoding="utf-8")
    node = await start_node(load_settings(config, {}))
    try:
        async with client(node) as c:
            reply = await c.post("/rest/changeServerSettings", json={"nodeGroup": "us"})
        assert reply.status_code == 403
        assert "server.adminToken is not set" in reply.json()["message"]
    finally:
        await node.close()


async def test_setting_pinned_by_the_environment_is_not_changed(tmp_path: Path) -> None:
    config = tmp_path / "red5.properties"
    config.write_text(CONFIG + "server.dataDir=var\n", encoding="utf-8")
    node = await start_node(load_settings(config, {"TIERSTREAM_NODEGROUP": "ap"}))
    try:
        async with client(node) as c:
            reply = await c.post(
                "/rest/changeServerSettings", json={"nodeGroup": "us"}, headers=auth()
            )
        assert reply.status_code == 409
        assert "TIERSTREAM_NODEGROUP" in reply.json()["message"]
        assert node.settings.node_group == "ap"
    finally:
        await node.close()


async def test_node_list_and_count_in_ant_media_shape(node: Node) -> None:
    async with client(node) as c:
        nodes = (await c.get("/rest/v2/cluster/nodes/0/10")).json()
        count = (await c.get("/rest/v2/cluster/node-count")).json()
        too_big = await c.get("/rest/v2/cluster/nodes/0/5000")
        unknown = await c.get("/rest/v2/nothing-here")
    assert [n["id"] for n in nodes] == ["rest-node"]
    assert nodes[0]["nodeGroup"] == "eu"
    assert nodes[0]["status"] == "alive"
    assert count == {"number": 1}
    assert too_big.status_code == 400
    assert unknown.status_code == 404
    assert unknown.json()["success"] is False


async def test_metrics_describe_the_node_in_prometheus_format(node: Node) -> None:
    async with client(node) as c:
        reply = await c.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    lines = reply.text.splitlines()
    assert 'tierstream_node_info{node="rest-node",node_group="eu",state="serving"} 1.0' in lines
    assert "tierstream_registry_reachable 1.0" in lines
    assert "tierstream_players 0.0" in lines


@pytest.mark.parametrize(
    "path",
    [
        f"/rest/v2/cluster/nodes/{2**63}/10",
        f"/rest/v2/cluster/nodes/{'9' * 5000}/10",
        f"/rest/v2/cluster/nodes/0/{'9' * 5000}",
        "/rest/v2/cluster/nodes/-1/10",
        "/rest/v2/cluster/nodes/x/10",
    ],
    ids=["offset past 2^63", "5,000-digit offset", "5,000-digit size", "negative", "not a number"],
)
async def test_node_list_with_an_offset_out_of_range_is_400(node: Node, path: str) -> None:
    async with client(node) as c:
        reply = await c.get(path)
    assert reply.status_code == 400
    assert "must be a whole number" in reply.json()["message"]
    assert len(reply.text) < 300, "the reply does not echo the number back"


@pytest.mark.parametrize(
    "body",
    [
        '{"cpuLimit": ' + "9" * 5000 + "}",
        '{"cpuLimit": ' + "9" * 4000 + "}",
        '{"nodeGroup": "' + "x" * 5000 + '"}',
    ],
    ids=["5,000 digits", "4,000 digits", "5,000-character region"],
)
async def test_change_with_a_huge_value_is_400_and_changes_nothing(node: Node, body: str) -> None:
    async with client(node) as c:
        reply = await c.post("/rest/changeServerSettings", content=body, headers=JSON_AUTH)
    assert reply.status_code == 400
    assert reply.json()["success"] is False
    assert node.settings.config_path.read_text(encoding="utf-8") == CONFIG


@pytest.mark.parametrize("value", [" eu ", "eu\t", " eu"])
async def test_a_region_that_normalises_to_the_current_one_is_no_change(
    node: Node, value: str
) -> None:
    async with client(node) as c:
        reply = await c.post(
            "/rest/changeServerSettings", json={"nodeGroup": value}, headers=auth()
        )
    assert reply.json() == {"success": True, "message": "nothing to change"}
    assert node.settings.config_path.read_text(encoding="utf-8") == CONFIG


async def test_a_region_is_stored_as_start_up_reads_it(node: Node) -> None:
    async with client(node) as c:
        reply = await c.post(
            "/rest/changeServerSettings", json={"nodeGroup": " us "}, headers=auth()
        )
    assert reply.json() == {"success": True, "message": "changed nodeGroup=us"}
    assert node.settings.node_group == "us"
    assert "\nnodeGroup=us\n" in node.settings.config_path.read_text(encoding="utf-8")
