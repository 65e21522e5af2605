"""Alembic's entry point for the registry, run by ``cluster.registry.migrate.migrate``.

``migrate`` opens the connection (async engine, one transaction) and hands it over
in ``config.attributes["connection"]``, following Alembic's async cookbook
(``AsyncConnection.run_sync``); there is no alembic.ini and no offline mode.
On PostgreSQL the transaction first takes an advisory lock, so nodes that start
together and each migrate apply a revision once; SQLite's ``BEGIN IMMEDIATE``
does the same there.
"""

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from cluster.registry.schema import metadata

MIGRATION_LOCK = 0x7469_6572_7374
"""An arbitrary advisory-lock key ("tierst") owned by tierstream's migrations."""


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run migrations with `tierstream migrate` (cluster.registry.migrate.migrate)"
    )
_run(connection)
