"""Connections to the registry's database: one engine set-up per back-end.

Private plumbing of ``cluster.registry.registry`` and ``cluster.registry.migrate``; everything
else talks to the registry through ``Registry``.
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long an embedded-registry writer waits for another (process's) write to finish."""

POSTGRES_TIMEOUT_S = 10.0
"""Connect and statement timeout on PostgreSQL: a hung registry must surface as an error."""

POOL_TIMEOUT_S = 10.0
"""How long an operation waits for one of its process's pooled connections."""


def open_engine(
    url: str,
    *,
    pool_size: int = 5,
    sqlite_begin: str = "BEGIN",
    tls: ssl.SSLContext | str | None = None,
) -> AsyncEngine:
    """An engine for ``url`` (``postgresql+asyncpg://…`` or ``sqlite+aiosqlite:///path``).

    ``tls``: asyncpg's ``ssl`` on PostgreSQL (a mode such as ``"prefer"``, or a
    context that verifies the server; ``cluster.tls.registry_ssl``); None leaves
    asyncpg's own default, or what the URL's query says.

    It holds at most ``pool_size`` connections (no overflow: PostgreSQL's
    ``max_connections`` must cover nodes times pool size); an operation that finds
    them all busy waits up to ``POOL_TIMEOUT_S``, then fails.

    Statements run in autocommit mode: each is its own transaction, which is all
    a one-statement operation needs; it spares PostgreSQL two round trips and keeps
    SQLite from holding its write lock across event-loop turns. The few operations
    of several statements take a real transaction from ``transactional(engine)``.

    SQLite: WAL (readers never block the writer, and several node processes can
    share the file) and a busy timeout (a writer waits for another instead of
    failing at once). Its transactions are begun by us with ``sqlite_begin``, not
    by the driver (which begins only before DML, leaving reads outside). Plain
    ``BEGIN`` suits transactions whose first statement writes, or that only read;
    one that reads and then writes must pass ``BEGIN IMMEDIATE``.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a registry URL: {exc}") from exc
    if parsed.drivername == "postgresql+asyncpg":
        connect_args: dict[str, Any] = {
            "timeout": POSTGRES_TIMEOUT_S,
            "command_timeout": POSTGRES_TIMEOUT_S,
            "server_settings": {"application_name": "tierstream"},
        }
        if tls is not None:
            connect_args["ssl"] = tls
        return create_async_engine(
            parsed, isolation_level="AUTOCOMMIT", **_pool(pool_size), connect_args=connect_args
        )
    if parsed.drivername == "sqlite+aiosqlite" and parsed.database not in (None, "", ":memory:"):
        engine = create_async_engine(parsed, isolation_level="AUTOCOMMIT", **_pool(pool_size))
        _configure_sqlite(engine, sqlite_begin)
        return engine
    raise ValueError(
        f"unsupported registry URL {shown(parsed)}: "
        "use postgresql+asyncpg://… or sqlite+aiosqlite:///path/to/file"
    )


def _pool(size: int) -> dict[str, Any]:
    return {"pool_size": size, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT_S}


_SQLITE_TRANSACTION = "SERIALIZABLE"
"""SQLite's one transactional level; every SQLite transaction reads one snapshot."""


def transactional(engine: AsyncEngine, *, snapshot: bool = False) -> AsyncEngine:
    """``engine`` with real transactions: ``begin()`` … commit, all or nothing.

    ``snapshot``: the transaction's reads must agree with each other (PostgreSQL
    repeatable read; SQLite always does).
    """
    if engine.dialect.name == "sqlite":
        level = _SQLITE_TRANSACTION
    else:
        level = "REPEATABLE READ" if snapshot else "READ COMMITTED"
    return engine.execution_options(isolation_level=level)


def _configure_sqlite(engine: AsyncEngine, begin: str) -> None:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    def on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("isolation_level") == _SQLITE_TRANSACTION:
            connection.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)


def shown(url: URL) -> str:
    """The URL as logs and errors may show it: without its password."""
    return url.render_as_string(hide_password=True)


def error_text(exc: BaseException) -> str:
    """The driver's own message, first line: SQLAlchemy's wrapper adds the whole statement."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"its TLS certificate does not verify against clusterdb.sslrootcert "
            f"(clusterdb.sslmode): {cause.verify_message}"
        )
    text = str(cause).strip() or type(cause).__name__
    return text.splitlines()[0]
