"""Bring the registry's schema to the newest revision in ``migrations/``.

Programmatic Alembic: the script location is the installed ``migrations``
package, so no alembic.ini is needed. Safe to run any number of times, and by
several node processes at once (the migration transaction is serialised, see
``migrations/env.py``). Within one process, do not run two at once: Alembic
keeps its migration context in module-level state.
"""

from __future__ import annotations

import logging
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


def _upgrade(connection: Connection) -> str | None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return MigrationContext.configure(connection).get_current_revision()


async def migrate(url: str) -> None:
    """Apply every pending migration to the registry at ``url``; a no-op when at head."""
    # Alembic reads the current revision before it writes: on SQLite the
    # transaction must hold the write lock from its start.
    engine = open_engine(url, pool_size=1, sqlite_begin="BEGIN IMMEDIATE")
    try:
        async with transactional(engine).begin() as connection:
            revision = await connection.run_sync(_upgrade)
    except (SQLAlchemyError, OSError, CommandError) as exc:
        # CommandError: e.g. the database is at a revision this program does not know.
        raise RegistryUnavailable(f"could not migrate the registry: {error_text(exc)}") from exc
    finally:
        await engine.dispose()
    logger.info("registry schema at revision %s", revision)
