"""Real headless Chromium for page tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Playwright's own browser builds are never downloaded (``.ci/install`` sets
``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD``); the executable is Debian's, launched with
the flags every page test needs on a loopback-only machine: no sandbox (root in
CI), no GPU, none of Chromium's background traffic, and WebRTC allowed to use
127.0.0.1. Every Playwright wait has a bounded default timeout, and each test's
screenshots go under ``test-artifacts/<test name>/`` at the checkout's root.

Fixtures: ``browser`` (one Chromium per test), ``page`` (a fresh context and
page, closed after the test; ``open_page`` for more than one) and ``artifacts``
(the test's screenshot folder). Chromium has a fake camera and microphone.
``screenshot(page, artifacts, name)`` saves a PNG and returns its path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support import REPO

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    # A synthetic camera and microphone, granted without a prompt, for pages that publish.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
TIMEOUT_MS = 10_000
"""Default bound of every Playwright action and wait in a page test."""

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run bash .ci/install (it installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=FLAGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def open_page(browser: Browser) -> Page:
    """A page in a context of its own (close it with ``page.context.close()``)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    # Pages on 127.0.0.1 reaching other loopback ports (another node, a WebSocket).
    await context.grant_permissions(["local-network-access"])
    context.set_default_timeout(TIMEOUT_MS)
    return await context.new_page()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    opened = await open_page(browser)
    try:
        yield opened
    finally:
        await opened.context.close()


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    """Save a full-page PNG as a test artifact; the path is printed so a failing run shows it."""
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
