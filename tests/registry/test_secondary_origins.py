"""Secondary (regional) origins: one holder per stream and region, fenced by an epoch."""

from __future__ import annotations

import asyncio
import sys
import time

from cluster.registry import Registry
from cluster.types import NodeGroup, NodeId, StreamId
from tests.support import REPO

S1 = StreamId("s1")
US, AP = NodeGroup("us"), NodeGroup("ap")
C, D = NodeId("node-c"), NodeId("node-d")
CONTENDERS = 50


async def test_free_slot_is_won_with_epoch_one(registry: Registry) -> None:
    result = await registry.claim_secondary_origin(S1, US, C, lease_s=10)

    assert result.won is True
    assert (result.holder.stream_id, result.holder.node_group) == (S1, US)
    assert (result.holder.node_id, result.holder.epoch) == (C, 1)
    assert await registry.secondary_origin(S1, US) == result.holder
    assert await registry.secondary_origin(S1, AP) is None


async def test_holder_claiming_again_renews_under_the_same_epoch(registry: Registry) -> None:
    first = await registry.claim_secondary_origin(S1, US, C, lease_s=1)

    again = await registry.claim_secondary_origin(S1, US, C, lease_s=10)

    assert again.won is True
    assert again.holder.epoch == first.holder.epoch == 1
    assert again.holder.lease_expires_at > first.holder.lease_expires_at


async def test_claim_while_the_lease_runs_is_lost_and_names_the_holder(
    registry: Registry,
) -> None:
    held = await registry.claim_secondary_origin(S1, US, C, lease_s=10)

    lost = await registry.claim_secondary_origin(S1, US, D, lease_s=10)

    assert lost.won is False
    assert lost.holder == held.holder
    assert (await registry.claim_secondary_origin(S1, AP, D, lease_s=10)).won is True


async def test_fifty_concurrent_claims_have_exactly_one_winner(registry_url: str) -> None:
    registry = await Registry.connect(registry_url, pool_size=CONTENDERS)
    try:
        contenders = [NodeId(f"node-{i:02d}") for i in range(CONTENDERS)]
        results = await asyncio.wait_for(
            asyncio.gather(
                *(registry.claim_secondary_origin(S1, US, node, lease_s=10) for node in contenders)
            ),
            timeout=60,
        )
        history = await registry.secondary_origin_history()
    finally:
        await registry.close()

    winners = [result.holder for result in results if result.won]
    assert len(winners) == 1
    [winner] = winners
    assert winner.epoch == 1
    assert {result.holder for result in results} == {winner}
    assert [(row.node_id, row.change) for row in history] == [(winner.node_id, "claimed")]


async def test_expired_lease_is_taken_over_with_the_next_epoch(registry: Registry) -> None:
    old = await registry.claim_secondary_origin(S1, US, C, lease_s=0.3)
    await asyncio.sleep(0.5)
    assert await registry.secondary_origin(S1, US) is None

    new = await registry.claim_secondary_origin(S1, US, D, lease_s=10)

    assert new.won is True
    assert (new.holder.node_id, new.holder.epoch) == (D, old.holder.epoch + 1)
    assert await registry.renew_secondary_origin(S1, US, C, old.holder.epoch, lease_s=10) is False
    assert (await registry.claim_secondary_origin(S1, US, C, lease_s=10)).won is False
    assert await registry.renew_secondary_origin(S1, US, D, new.holder.epoch, lease_s=10) is True


async def test_holder_reclaiming_its_expired_lease_starts_a_new_epoch(registry: Registry) -> None:
    old = await registry.claim_secondary_origin(S1, US, C, lease_s=0.3)
    await asyncio.sleep(0.5)

    new = await registry.claim_secondary_origin(S1, US, C, lease_s=10)

    assert new.won is True
    assert new.holder.epoch == old.holder.epoch + 1
    assert await registry.renew_secondary_origin(S1, US, C, old.holder.epoch, lease_s=10) is False


async def test_holder_renews_a_lapsed_lease_nobody_took(registry: Registry) -> None:
    held = await registry.claim_secondary_origin(S1, US, C, lease_s=0.3)
    await asyncio.sleep(0.5)

    assert await registry.renew_secondary_origin(S1, US, C, held.holder.epoch, lease_s=10) is True
    assert await registry.secondary_origin(S1, US) is not None


async def test_released_role_is_free_at_once_and_changes_epoch(registry: Registry) -> None:
    held = await registry.claim_secondary_origin(S1, US, C, lease_s=10)

    await registry.release_secondary_origin(S1, US, D, held.holder.epoch)
    assert await registry.secondary_origin(S1, US) == held.holder

    await registry.release_secondary_origin(S1, US, C, held.holder.epoch)
    assert await registry.secondary_origin(S1, US) is None

    taken = await registry.claim_secondary_origin(S1, US, D, lease_s=10)
    assert taken.won is True
    assert taken.holder.epoch == held.holder.epoch + 1
    assert await registry.renew_secondary_origin(S1, US, C, held.holder.epoch, lease_s=10) is False


async def test_node_processes_racing_for_a_region_have_exactly_one_winner(
    registry_url: str,
) -> None:
    start_at = time.time() + 2  # time enough for four interpreters to start
    outputs = await asyncio.gather(
        *(_claim_in_a_process(registry_url, f"proc{p}", start_at) for p in range(4))
    )

    claims = [line.split() for output in outputs for line in output.splitlines()]
    assert len(claims) == 40
    assert sum(int(won) for won, _, _ in claims) == 1
    assert len({(holder, epoch) for _, holder, epoch in claims}) == 1


async def _claim_in_a_process(url: str, prefix: str, start_at: float) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.claimer",
        url,
        prefix,
        str(start_at),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    return output.decode()
