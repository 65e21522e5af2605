"""A registry client for a test or fixture, closed whatever the test did."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from cluster.registry import Registry


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Registry]:
    registry = await Registry.connect(url)
    try:
        yield registry
    finally:
        await registry.close()
