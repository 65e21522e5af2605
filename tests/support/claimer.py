"""A stand-alone node process that races for one secondary origin.

``python -m tests.support.claimer URL PREFIX START_AT``: waits until the wall-clock time
``START_AT`` (so that several processes start together), makes ten concurrent
claims of stream ``s1``'s secondary origin in region ``us`` as nodes
``PREFIX-0`` … ``PREFIX-9``, and prints one line per claim: ``won node epoch``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from cluster.registry import Registry
from cluster.types import NodeGroup, NodeId, StreamId

CLAIMS = 10


async def main(url: str, prefix: str, start_at: float) -> None:
    registry = await Registry.connect(url, pool_size=CLAIMS)
    try:
        await asyncio.sleep(min(max(0.0, start_at - time.time()), 10.0))
        results = await asyncio.gather(
            *(
                registry.claim_secondary_origin(
                    StreamId("s1"), NodeGroup("us"), NodeId(f"{prefix}-{i}"), lease_s=30
                )
                for i in range(CLAIMS)
            )
        )
    finally:
        await registry.close()
    for result in results:
        print(int(result.won), result.holder.node_id, result.holder.epoch)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
