"""How a node plans around an upstream that failed: claims stay leased however long a pull
takes to negotiate, and a node that stopped answering stays avoided until it beats again.

Real parts: the embedded registry, the media engine, the node's ``Pulls``. A
frozen main origin is a socket that accepts connections and never answers (its
kernel keeps accepting), so a pull's HTTP exchange waits out its read deadline,
which is longer than the claim's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.settings import load_settings
from cluster.streams.events import StreamEvents
from cluster.streams.pulls import NODE_CALL_TIMEOUT, Pull, Pulls
from cluster.types import AppName, NodeGroup, NodeId, NodeLoad, StreamId
from media.config import MediaConfig
from media.engine import MediaEngine
from tests.support.factories import node_info
from tests.support.nodes import CLUSTER_SECRET
from tests.support.registry import connected
from tests.support.waits import eventually

S1, S2, US = StreamId("s1"), StreamId("s2"), NodeGroup("us")
LEASE_S = 1.0


@contextlib.contextmanager
def frozen_node() -> Iterator[str]:
    """The URL of a socket that accepts connections (into its backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextlib.asynccontextmanager
async def us2_pulls(tmp_path: Path, keys: str = "") -> AsyncIterator[tuple[Registry, Pulls]]:
    """us-2's ``Pulls`` on an embedded registry, with its engine; ``keys``: more config lines."""
    config = tmp_path / "red5.properties"
    config.write_text(
        f"server.name=us-2\nnodeGroup=us\nserver.dataDir=var\n{keys}", encoding="utf-8"
    )
    settings = load_settings(config, {})
    settings.data_dir.mkdir()
    await migrate(settings.registry_url)
    engine = MediaEngine(MediaConfig(candidate_addresses=("127.0.0.1",)), StreamEvents())
    async with connected(settings.registry_url) as registry:
        pulls = Pulls(registry, lambda: settings, engine)
        try:
            yield registry, pulls
        finally:
            await pulls.close()
            await engine.close()


async def test_a_new_secondary_origin_keeps_its_claim_while_its_pull_outlasts_the_lease(
    tmp_path: Path,
) -> None:
    assert NODE_CALL_TIMEOUT.read is not None and NODE_CALL_TIMEOUT.read > LEASE_S
    keys = "cluster.heartbeatIntervalMs=250\ncluster.nodeDeadTimeoutMs=1000\n"
    keys += f"cluster.secret={CLUSTER_SECRET}\n"
    async with us2_pulls(tmp_path, keys) as (registry, pulls):
        with frozen_node() as origin_url:
            origin = replace(node_info("eu-1", "eu"), internal_url=origin_url)
            for info in (origin, node_info("us-2", "us")):
                await registry.register(info)
            await registry.claim_stream(
                S1, AppName("LiveApp"), origin.id, origin.node_group, (), 60
            )

            async def beat() -> None:  # both nodes stay alive in the registry throughout
                while True:
                    for info in (origin, node_info("us-2", "us")):
                        await registry.heartbeat(info.id, info.node_group, NodeLoad())
                    await asyncio.sleep(0.2)

            beating = asyncio.create_task(beat())
            playing = asyncio.create_task(pulls.ensure("LiveApp", S1))
            try:

                async def claimed() -> bool:
                    return await registry.secondary_origin(S1, US) is not None

                await eventually(claimed, "us-2 claiming the secondary origin")
                claimed_at, lapses = time.monotonic(), []
                # the first attempt waits out the read deadline (2 s), twice the lease
                while time.monotonic() < claimed_at + NODE_CALL_TIMEOUT.read:
                    holder = await registry.secondary_origin(S1, US)
                    if holder is None or holder.node_id != "us-2":
                        lapses.append(round(time.monotonic() - claimed_at, 2))
                    await asyncio.sleep(0.05)
                assert not lapses, f"the claim lapsed at {lapses} s while its pull was negotiated"
            finally:
                playing.cancel()
                beating.cancel()
                await asyncio.gather(playing, beating, return_exceptions=True)


async def test_a_node_that_stopped_answering_stays_planned_around_despite_its_last_beat(
    tmp_path: Path,
) -> None:
    secondary = node_info("us-1", "us")
    async with us2_pulls(tmp_path) as (registry, pulls):
        await registry.register(secondary)

        async def reachable() -> set[str]:
            return set(pulls._reachable((await registry.snapshot()).alive))

        assert "us-1" in await reachable()  # the pulls' last read of the registry
        await asyncio.sleep(0.05)
        await registry.heartbeat(secondary.id, secondary.node_group, NodeLoad())  # its last beat
        pulls._unanswering(secondary.id)  # then it died: a pull from it was lost
        assert "us-1" not in await reachable(), "the beat it sent before dying is no sign of life"
        assert "us-1" not in await reachable()
        await asyncio.sleep(0.05)
        await registry.heartbeat(secondary.id, secondary.node_group, NodeLoad())  # it lives
        assert "us-1" in await reachable()


async def test_an_upstream_that_closed_a_pull_itself_is_not_planned_around(
    tmp_path: Path,
) -> None:
    """It ended the stream (or gave its role up) and said so: it answers. Planning around it
    would let the next stream's first pull take over the role it has just claimed."""
    async with us2_pulls(tmp_path) as (registry, pulls):
        for name in ("us-1", "us-3"):
            await registry.register(node_info(name, "us"))
        pulls._pulls[S1] = Pull("LiveApp", S1, upstream=NodeId("us-1"))
        pulls._pulls[S2] = Pull("LiveApp", S2, upstream=NodeId("us-3"))
        alive = (await registry.snapshot()).alive
        assert {"us-1", "us-3"} <= set(pulls._reachable(alive))
        pulls.upstream_lost(S1, closed_by_upstream=True)
        pulls.upstream_lost(S2, closed_by_upstream=False)
        reachable = set(pulls._reachable((await registry.snapshot()).alive))
        assert "us-1" in reachable, "a node that closed the pull itself is not gone"
        assert "us-3" not in reachable, "a node whose pull failed or went silent is avoided"
        pulls._pulls.clear()
