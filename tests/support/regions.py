"""Three regions of real node processes on one PostgreSQL registry, with the GeoIP test database.

eu (Frankfurt), us (Virginia) and ap (Tokyo) by coordinates; every node reads
MaxMind's test database and believes ``X-Forwarded-For`` from 127.0.0.0/8, so a
test picks the client's city by the header: London, Milton (US) or Changchun.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import REPO
from tests.support.nodes import NodeProcess

GEOIP_DB = REPO.parent / "shared" / "geoip" / "GeoLite2-City-Test.mmdb"
LONDON = "81.2.69.142"
MILTON = "216.160.83.56"
CHANGCHUN = "175.16.199.1"

REGION_KEYS = {
    "region.eu.latitude": "50.1",
    "region.eu.longitude": "8.7",
    "region.us.latitude": "39.0",
    "region.us.longitude": "-77.5",
    "region.ap.latitude": "35.7",
    "region.ap.longitude": "139.7",
}


def region_node(
    workdir: Path, name: str, group: str, registry_url: str, **extra: str
) -> NodeProcess:
    """A node of ``group`` that routes by GeoIP with the three regions' coordinates."""
    keys = {
        **REGION_KEYS,
        "geoip.db": str(GEOIP_DB),
        "server.routing": "redirect",
        "server.trustedProxies": "127.0.0.0/8",
        # Many nodes share two cores here: a start-up CPU peak must not make a node "full".
        "server.cpu_limit": "100",
        **extra,
    }
    return NodeProcess(workdir, name, group, registry_url, **keys)


def forwarded(client: str) -> dict[str, str]:
    return {"X-Forwarded-For": client}


def wait_for_view(node: NodeProcess, count: int, timeout_s: float = 15.0) -> None:
    """Until the node's cluster view lists ``count`` serving nodes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        regions = node.get("/rest/v2/cluster/regions").json()
        if sum(r["serving"] for r in regions) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{node.name} does not see {count} nodes: {regions}")


def wait_for_stream(node: NodeProcess, stream: str, timeout_s: float = 10.0) -> None:
    """Until the registry has the stream, and a heartbeat more so every node's view has it."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if node.get(f"/LiveApp/rest/v2/broadcasts/{stream}").status_code == 200:
            time.sleep(1.0)
            return
        time.sleep(0.2)
    raise TimeoutError(f"{stream} is not known to {node.name}")
