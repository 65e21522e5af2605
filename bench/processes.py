"""A private cluster for a benchmark: PostgreSQL and node processes, stopped by PID at the end.

``private_cluster(workdir, database, names, **keys)`` starts a private
PostgreSQL (``tests.support.postgres``), creates and migrates one database,
starts a ``NodeProcess`` per name (its region is the part before ``-``) with
the same extra keys, and yields the registry's URL and the nodes. However the
block ends, every node still running is SIGKILLed by its PID and the server
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from cluster.registry.migrate import migrate
from tests.support.nodes import NodeProcess, start_all
from tests.support.postgres import PostgresServer

START_TIMEOUT_S = 120.0
"""Node start-ups get this long: on a machine loaded by other work, imports alone take seconds."""


@contextlib.asynccontextmanager
async def private_cluster(
    workdir: Path, database: str, names: Sequence[str], **keys: str
) -> AsyncIterator[tuple[str, dict[str, NodeProcess]]]:
    server = PostgresServer()
    server.start()
    nodes: dict[str, NodeProcess] = {}
    try:
        url = await server.create_database(database)
        await migrate(url)
        nodes = {
            name: NodeProcess(workdir, name, name.split("-")[0], url, **keys) for name in names
        }
        await asyncio.to_thread(start_all, list(nodes.values()), START_TIMEOUT_S)
        yield url, nodes
    finally:
        for node in nodes.values():
            node.kill()
        server.stop()
