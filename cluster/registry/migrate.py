"""Bring the registry's schema to the newest revision in ``migrations/``.

Programmatic Alembic: the script location is the installed ``migrations``
package, so no alembic.ini is needed. Safe to run any number of times, and by
several node processes at once (the migration transaction is serialised, see
``migrations/env.py``). Alembic's work is synchronous (it loads the
migration scripts and runs the DDL), so it runs on a thread with an event
loop of its own and never blocks the caller's loop; one at a time per process,
since Alembic keeps its migration context in module-level state.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

import migrations
from cluster.errors import RegistryUnavailable
from cluster.registry.database import error_text, open_engine, transactional

logger = logging.getLogger(__name__)

_ONE_AT_A_TIME = threading.Lock()


def _upgrade(connection: Connection) -> str | None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return MigrationContext.configure(connection).get_current_revision()


async def migrate(url: str, *, tls: ssl.SSLContext | str | None = None) -> None:
    """Apply every pending migration to the registry at ``url``; a no-op when at head.

    ``tls``: as ``open_engine``'s; Alembic runs on that engine's connection, so
    migrations travel the same encrypted, verified link as the node's queries.
    """
    await asyncio.to_thread(_migrate_on_this_thread, url, tls)


def _migrate_on_this_thread(url: str, tls: ssl.SSLContext | str | None) -> None:
    with _ONE_AT_A_TIME:
        asyncio.run(_migrate(url, tls))


async def _migrate(url: str, tls: ssl.SSLContext | str | None) -> None:
    # Alembic reads the current revision before it writes: on SQLite the
    # transaction must hold the write lock from its start.
    engine = open_engine(url, pool_size=1, sqlite_begin="BEGIN IMMEDIATE", tls=tls)
    try:
        async with transactional(engine).begin() as connection:
            revision = await connection.run_sync(_upgrade)
    except (SQLAlchemyError, OSError, CommandError) as exc:
        # CommandError: e.g. the database is at a revision this program does not know.
        raise RegistryUnavailable(f"could not migrate the registry: {error_text(exc)}") from exc
    finally:
        await engine.dispose()
    logger.info("registry schema at revision %s", revision)
