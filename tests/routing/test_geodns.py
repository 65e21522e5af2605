"""A real GeoDNS in front of the cluster: gdnsd with the GeoIP test database, fed by ``/readyz``.

``tierstream geodns --format gdnsd`` writes the configuration from the registry;
gdnsd runs on 127.0.0.1 on a free port; its ``extmon`` probe maps each node's
answer address (127.0.1.x: data only, never contacted) to the node's ``/readyz``
on 127.0.0.1. Queries carry EDNS Client Subnet for a London, a Milton (US) and a
Changchun address. Fails, never skips, when gdnsd is missing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cluster.cli.geodns import GeoDnsOptions, gdnsd_files
from cluster.errors import ConfigError
from cluster.streams.whip_client import WhipClient
from cluster.types import NodeGroup, Region
from media.contrib.client import Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from tests.support import REPO
from tests.support.factories import node_record
from tests.support.gdnsd import Gdnsd, resolve
from tests.support.nodes import NodeProcess, running
from tests.support.peers import Peers, trickling
from tests.support.postgres import free_port
from tests.support.regions import CHANGCHUN, LONDON, MILTON, forwarded, region_node

ZONE = "tierstream.test"
NAME = f"live.{ZONE}"
ANSWERS = {"eu-1": "127.0.1.1", "us-1": "127.0.1.2", "ap-1": "127.0.1.3"}
INTERVAL_S = 2
"""gdnsd's shortest health-check interval."""


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[dict[str, NodeProcess]]:
    workdir: Path = tmp_path_factory.mktemp("geodns")
    started = {
        name: region_node(
            workdir, name, name[:2], module_postgres_url, **{"server.maxViewers": "1"}
        )
        for name in ANSWERS
    }
    with running(list(started.values())):
        yield started


@pytest.fixture(scope="module")
def gdnsd(nodes: dict[str, NodeProcess]) -> Iterator[Gdnsd]:
    server = Gdnsd()
    try:
        port = free_port()
        command = [
            sys.executable, "-m", "cluster", "geodns", "--config", str(nodes["eu-1"].config),
            "--format", "gdnsd", "--out", str(server.dir), "--zone", ZONE,
            "--monitor", "extmon", "--interval", str(INTERVAL_S), "--listen", "127.0.0.1",
            "--port", str(port), "--run-dir", str(server.dir / "run"),
            "--state-dir", str(server.dir / "state"),
            *(arg for node, ip in ANSWERS.items() for arg in ("--answer", f"{node}={ip}")),
        ]  # fmt: skip
        written = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert written.returncode == 0, written.stderr
        assert "for 3 nodes" in written.stderr
        server.start(ZONE)
        yield server
    finally:
        server.stop()


def resolves_to(gdnsd: Gdnsd, client: str, address: str, timeout_s: float = 15.0) -> float:
    """Seconds until ``client`` is answered ``address`` (bounded)."""
    started = time.monotonic()
    answer: list[str] = []
    while time.monotonic() - started < timeout_s:
        answer = resolve(gdnsd.port(), NAME, client)
        if answer == [address]:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{client} still resolves to {answer}, not {address}:\n{gdnsd.log_text()}")


def node_at(nodes: dict[str, NodeProcess], address: str) -> NodeProcess:
    """The node a DNS answer names (the answers are data; the nodes listen on 127.0.0.1)."""
    return nodes[next(name for name, answer in ANSWERS.items() if answer == address)]


@pytest.mark.parametrize(
    ("client", "node"),
    [(LONDON, "eu-1"), (MILTON, "us-1"), (CHANGCHUN, "ap-1")],
    ids=["London resolves to eu", "Milton resolves to us", "Changchun resolves to ap"],
)
def test_each_city_resolves_to_its_region(gdnsd: Gdnsd, client: str, node: str) -> None:
    resolves_to(gdnsd, client, ANSWERS[node])


async def test_dns_answer_then_redirect_then_session_on_the_serving_node(
    gdnsd: Gdnsd, nodes: dict[str, NodeProcess]
) -> None:
    """A London client behind a resolver in Changchun: DNS says ap, ap redirects to eu."""
    (address,) = resolve(gdnsd.port(), NAME, CHANGCHUN)
    first = node_at(nodes, address)
    assert first.name == "ap-1"
    client = WhipClient(f"{first.url}/LiveApp/whip/dns-flow", headers=forwarded(LONDON))
    patched: list[int] = []

    publisher = Publisher([SyntheticVideoTrack(VideoSettings()), SyntheticAudioTrack()])
    try:
        await publisher.start(trickling(client, patched, {"If-Match": "*"}))
        assert len(client.redirects) == 1
        assert client.redirects[0].startswith(f"{nodes['eu-1'].url}/LiveApp/whip/dns-flow?ticket=")
        location = client.location
        assert location is not None and location.startswith(
            f"{nodes['eu-1'].url}/LiveApp/whip/dns-flow/"
        )
        assert patched == [204]
    finally:
        await client.close()  # DELETE on the session's absolute Location: eu-1
        await publisher.close()
    async with httpx.AsyncClient() as http:
        gone = await http.delete(location)
    assert gone.status_code == 404


async def test_a_full_region_then_a_dead_one_fail_over_to_the_next_nearest(
    gdnsd: Gdnsd, nodes: dict[str, NodeProcess], peers: Peers
) -> None:
    eu = nodes["eu-1"]
    await asyncio.to_thread(resolves_to, gdnsd, LONDON, ANSWERS["eu-1"])
    await peers.publish(f"{eu.url}/LiveApp/whip/fills-eu")
    playing = await peers.play(f"{eu.url}/LiveApp/whep/fills-eu")  # maxViewers=1: eu is full
    assert (await asyncio.to_thread(eu.get, "/readyz")).json()["status"] == "full"
    took = await asyncio.to_thread(resolves_to, gdnsd, LONDON, ANSWERS["us-1"])
    assert took <= 2 * INTERVAL_S + 2
    await playing.client.close()  # room again: London comes back to eu
    await asyncio.to_thread(resolves_to, gdnsd, LONDON, ANSWERS["eu-1"])

    eu.kill()
    took = await asyncio.to_thread(resolves_to, gdnsd, LONDON, ANSWERS["us-1"])
    assert took <= 2 * INTERVAL_S + 2
    assert resolve(gdnsd.port(), NAME, CHANGCHUN) == [ANSWERS["ap-1"]]


def test_nodes_serving_https_are_probed_by_extmon_against_the_clusters_ca(
    tmp_path: Path,
) -> None:
    """gdnsd's http_status plugin has no TLS: https nodes are refused there, in words, and the
    extmon probe verifies them against server.tlsCA."""
    nodes = [
        replace(node_record(name), internal_url=f"https://127.0.0.1:5443/{name}")
        for name in ("eu-1", "us-1")
    ]
    regions = [Region(NodeGroup("eu"), 51.5, -0.1), Region(NodeGroup("us"), 40.7, -74.0)]
    options = GeoDnsOptions("example.net", "live", tmp_path / "city.mmdb", monitor="http")
    with pytest.raises(ConfigError, match="use --monitor extmon"):
        gdnsd_files(nodes, regions, options)
    ca = tmp_path / "pki dir" / "cluster-ca.crt"
    config = gdnsd_files(nodes, regions, replace(options, monitor="extmon", ca=ca))["config"]
    assert "--cacert '" + str(ca) + "'" in config
