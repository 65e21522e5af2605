"""The one bounded wait the tests poll with, and the bound every other wait uses."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

import pytest

T = TypeVar("T")

WAIT = 10.0
"""Seconds: no wait in the tests is longer unless it says why."""


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]], what: str, timeout_s: float = WAIT
) -> T: ...
@overload
async def eventually(probe: Callable[[], T], what: str, timeout_s: float = WAIT) -> T: ...
async def eventually(probe: Callable[[], object], what: str, timeout_s: float = WAIT) -> object:
    """Call ``probe`` (sync or async) until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.1)
