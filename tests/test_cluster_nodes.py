"""Three real node processes in two regions against a private PostgreSQL registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import NodeProcess
from tests.support.waits import eventually


def listed(node: NodeProcess) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in node.get("/rest/v2/cluster/nodes/0/100").json()}


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, NodeProcess]]:
    nodes = {
        name: NodeProcess(tmp_path, name, group, postgres_url)
        for name, group in (("eu-1", "eu"), ("eu-2", "eu"), ("us-1", "us"))
    }
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        for node in nodes.values():
            node.kill()


async def test_every_node_is_listed_alive_in_its_region_with_load(
    cluster: dict[str, NodeProcess],
) -> None:
    def all_three() -> dict[str, dict[str, Any]] | None:
        found = listed(cluster["us-1"])
        return found if len(found) == 3 else None

    seen = await eventually(all_three, "all three nodes listed", 5)
    assert seen is not None
    assert {name: n["nodeGroup"] for name, n in seen.items()} == {
        "eu-1": "eu",
        "eu-2": "eu",
        "us-1": "us",
    }
    for name, node in seen.items():
        assert node["status"] == "alive"
        assert node["state"] == "serving"
        assert node["publicUrl"] == cluster[name].url
        assert node["memory"] > 0, "the heartbeat carries the process's memory"
        assert node["capacity"]["cores"] >= 1
    assert cluster["eu-1"].get("/rest/v2/cluster/node-count").json() == {"number": 3}


async def test_a_killed_node_is_not_alive_within_4_seconds(cluster: dict[str, NodeProcess]) -> None:
    await eventually(lambda: len(listed(cluster["eu-1"])) == 3, "all three nodes listed", 5)
    cluster["eu-2"].kill()
    killed_at = time.monotonic()
    await eventually(
        lambda: "eu-2" not in listed(cluster["eu-1"]), "eu-2 dropping out of the list", 4
    )
    assert time.monotonic() - killed_at < 4
    assert set(listed(cluster["us-1"])) == {"eu-1", "us-1"}


async def test_region_change_is_listed_persisted_and_kept_after_restart(
    cluster: dict[str, NodeProcess],
) -> None:
    eu2 = cluster["eu-2"]
    before = eu2.config.read_text(encoding="utf-8")
    reply = eu2.post("/rest/changeServerSettings", {"nodeGroup": "us"})
    assert reply.json() == {"success": True, "message": "changed nodeGroup=us"}
    await eventually(
        lambda: listed(cluster["eu-1"]).get("eu-2", {}).get("nodeGroup") == "us",
        "eu-2 listed in region us",
        3,
    )
    assert eu2.config.read_text(encoding="utf-8") == before.replace("nodeGroup=eu", "nodeGroup=us")

    assert eu2.stop() == 0
    eu2.start()
    assert eu2.get("/rest/getServerSettings").json()["nodeGroup"] == "us"
    assert listed(cluster["us-1"])["eu-2"]["nodeGroup"] == "us"


def test_sigterm_leaves_the_cluster_cleanly(cluster: dict[str, NodeProcess]) -> None:
    us1 = cluster["us-1"]
    assert us1.stop() == 0
    assert "eu-2" in listed(cluster["eu-1"])
    assert "us-1" not in listed(cluster["eu-1"]), "a node that stops deregisters at once"
    assert "node us-1 left the cluster" in us1.log_text()


def test_restarted_node_takes_its_row_back(cluster: dict[str, NodeProcess]) -> None:
    eu1 = cluster["eu-1"]
    eu1.kill()
    eu1.start()
    nodes = listed(cluster["us-1"])
    assert nodes["eu-1"]["state"] == "serving"
    assert len(nodes) == 3


def test_a_node_that_cannot_listen_exits_without_joining(
    cluster: dict[str, NodeProcess], tmp_path: Path, postgres_url: str
) -> None:
    clash = NodeProcess(tmp_path, "clash", "eu", postgres_url)
    clash.patch_config(**{"http.port": str(cluster["eu-1"].port)})
    clash.launch()
    assert clash.process is not None
    assert clash.process.wait(20) == 2
    assert f"http.port: cannot listen on 127.0.0.1:{cluster['eu-1'].port}" in clash.log_text()
    assert "clash" not in listed(cluster["eu-1"])
    assert "registered node clash" not in clash.log_text()
