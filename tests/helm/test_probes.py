"""The chart's probes, the ServiceMonitor's path and the image's HEALTHCHECK name real endpoints
of the node: routes of the node's own Starlette app, built in-process on an embedded registry,
that answer 200 on a serving node."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Match

from cluster.api.app import build_app
from cluster.node import Node, start_node
from cluster.settings import load_settings
from tests.support import REPO
from tests.support.helm import (
    EXAMPLES,
    Manifest,
    container,
    find,
    render,
    statefulset,
)

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
READY_TIMEOUT_S = 10.0


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = tmp_path / "conf" / "red5.properties"
    config.parent.mkdir()
    config.write_text("nodeGroup=eu\nserver.name=probe-node\n", encoding="utf-8")
    started = await start_node(load_settings(config, {}))
    yield started
    await started.close()


async def answers_200(client: httpx.AsyncClient, path: str) -> bool:
    """Like the kubelet: ask again until 200 (the first heartbeat makes a node ready)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if (await client.get(path)).status_code == 200:
            return True
        await asyncio.sleep(0.05)
    return False


def probed_paths(manifests: list[Manifest]) -> dict[str, str]:
    """Every HTTP path Kubernetes, Prometheus or Docker will call, by who calls it."""
    sts = statefulset(manifests)
    node = container(sts, "node")
    (http_port,) = [p for p in node["ports"] if p["name"] == "http"]
    paths = {}
    for probe in PROBES:
        get = node[probe]["httpGet"]
        assert get["port"] == http_port["name"], probe
        paths[probe] = get["path"]
    (endpoint,) = find(manifests, "ServiceMonitor")["spec"]["endpoints"]
    paths["ServiceMonitor"] = endpoint["path"]
    healthcheck = (REPO / "Dockerfile").read_text(encoding="utf-8")
    (docker_path,) = re.findall(r"HEALTHCHECK .*?'(/[a-z]+)'", healthcheck, re.S)
    paths["Docker HEALTHCHECK"] = docker_path
    return paths


async def test_every_probed_path_is_a_route_of_the_node_answering_200(
    node: Node, helm_home: Path
) -> None:
    manifests = render("eu", [EXAMPLES / "eu.yaml"], helm_home)
    paths = probed_paths(manifests)
    assert paths["readinessProbe"] != paths["livenessProbe"]
    app = build_app(node)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        for caller, path in paths.items():
            scope = {"type": "http", "path": path, "method": "GET"}
            routes = [r for r in app.routes if r.matches(scope)[0] is Match.FULL]
            assert routes, f"{caller} calls {path}, which is no GET route of the node"
            assert await answers_200(client, path), f"{caller} calls {path}: never 200"
