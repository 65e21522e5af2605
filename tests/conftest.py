"""Fixtures for tests that need a registry database, on both back-ends.

- ``postgres_server`` (session): a private PostgreSQL on 127.0.0.1 (``tests.support.postgres``),
  started once, stopped by its PID at the end of the session.
- ``database_url`` (per test, parametrised ``embedded`` / ``postgres``): the URL of a
  new, empty database — a SQLite file in ``tmp_path``, or a new PostgreSQL database.
- ``registry_url`` (per test, parametrised likewise): the same, migrated to head.
  Use it for anything that must hold on both back-ends.
- ``postgres_url`` (per test): a new migrated PostgreSQL database only, for tests
  (e.g. multi-process node tests) that need the production back-end.
- ``registry``: a ``Registry`` connected to ``registry_url``, closed after the test.
- ``postgres_registry``: a ``Registry`` on ``postgres_url`` (the test's own PostgreSQL database).
- ``module_postgres_url`` (per module): one migrated PostgreSQL database shared by a test
  module whose node processes outlive single tests; ``module_registry`` is a ``Registry`` on it.

``peers`` (from ``tests.support.peers``) opens real aiortc publishers and players over WHIP/WHEP
and closes them after the test; ``browser``, ``page`` and ``artifacts`` (from
``tests.support.browser``) drive Debian's headless Chromium.

The ``postgres`` variants carry the ``postgres`` marker: ``-m "not postgres"`` runs
the embedded half without starting a server.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cluster.registry import Registry
from cluster.registry.migrate import migrate
from tests.support.postgres import PostgresServer
from tests.support.registry import connected

pytest_plugins = ["tests.support.peers", "tests.support.browser"]

_database_numbers = itertools.count(1)

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _new_postgres_database(server: PostgresServer) -> str:
    return await server.create_database(f"test_{os.getpid()}_{next(_database_numbers)}")


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "embedded":
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    return await _new_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
async def registry_url(database_url: str) -> str:
    await migrate(database_url)
    return database_url


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> str:
    url = await _new_postgres_database(postgres_server)
    await migrate(url)
    return url


@pytest.fixture
async def registry(registry_url: str) -> AsyncIterator[Registry]:
    async with connected(registry_url) as registry:
        yield registry


@pytest.fixture
async def postgres_registry(postgres_url: str) -> AsyncIterator[Registry]:
    async with connected(postgres_url) as registry:
        yield registry


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    module = request.module.__name__.rsplit(".", 1)[-1]
    url = asyncio.run(postgres_server.create_database(f"{module}_{os.getpid()}"))
    asyncio.run(migrate(url))
    return url


@pytest.fixture
async def module_registry(module_postgres_url: str) -> AsyncIterator[Registry]:
    async with connected(module_postgres_url) as registry:
        yield registry
