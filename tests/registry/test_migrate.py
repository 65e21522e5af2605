"""Migrations: ``migrate`` builds the declared schema, once, however often it runs."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cluster.errors import RegistryUnavailable
from cluster.registry import Registry
from cluster.registry.database import open_engine
from cluster.registry.migrate import migrate
from cluster.registry.schema import RegistryTime, metadata
from cluster.types import NodeId
from tests.support import REPO
from tests.support.factories import node_info

MIGRATE_SCRIPT = (
    "import asyncio, sys; from cluster.registry.migrate import migrate; "
    "asyncio.run(migrate(sys.argv[1]))"
)
TABLES = {
    "alembic_version",
    "node",
    "pull",
    "regional_origin",
    "secondary_origin_history",
    "stream",
    "stream_token",
}
HEAD = "0007"


def _same_time_type(
    _context: MigrationContext, _inspected: Any, metadata_column: Any, *_types: Any
) -> bool | None:
    """RegistryTime is stored as the migration's DateTime: not a difference."""
    return False if isinstance(metadata_column.type, RegistryTime) else None


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": _same_time_type})
    return list(compare_metadata(context, metadata))


def _schema(connection: Connection) -> tuple[set[str], str | None]:
    revision = MigrationContext.configure(connection).get_current_revision()
    return set(inspect(connection).get_table_names()), revision


async def _inspect(url: str) -> tuple[set[str], str | None, list[Any]]:
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            tables, revision = await connection.run_sync(_schema)
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    return tables, revision, differences


async def test_migrate_builds_exactly_the_declared_schema(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cluster.registry.migrate"):
        await migrate(database_url)

    tables, revision, differences = await _inspect(database_url)
    assert tables == TABLES
    assert revision == HEAD
    assert differences == []
    assert f"registry schema at revision {HEAD}" in caplog.messages


async def test_migrating_again_changes_nothing_and_keeps_data(registry_url: str) -> None:
    registry = await Registry.connect(registry_url)
    try:
        await registry.register(node_info("node-a"))

        await migrate(registry_url)

        assert await registry.node(NodeId("node-a")) is not None
    finally:
        await registry.close()
    tables, revision, _ = await _inspect(registry_url)
    assert (tables, revision) == (TABLES, HEAD)


async def _migrate_in_a_process(url: str) -> int:
    """Run ``migrate`` in its own interpreter, as a starting node would; its exit status."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MIGRATE_SCRIPT, url, cwd=REPO
    )
    try:
        return await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_nodes_migrating_at_once_apply_each_revision_once(database_url: str) -> None:
    statuses = await asyncio.gather(*(_migrate_in_a_process(database_url) for _ in range(4)))

    assert statuses == [0, 0, 0, 0]
    tables, revision, _ = await _inspect(database_url)
    assert (tables, revision) == (TABLES, HEAD)


@pytest.mark.postgres
async def test_postgres_url_is_a_fresh_migrated_database(postgres_url: str) -> None:
    registry = await Registry.connect(postgres_url)
    try:
        assert await registry.live_nodes() == []
    finally:
        await registry.close()
    tables, revision, _ = await _inspect(postgres_url)
    assert (tables, revision) == (TABLES, HEAD)


async def test_database_ahead_of_this_program_is_refused_by_name(registry_url: str) -> None:
    engine = open_engine(registry_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await engine.dispose()

    with pytest.raises(RegistryUnavailable, match="9999"):
        await migrate(registry_url)
