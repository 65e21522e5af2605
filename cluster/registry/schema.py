"""The registry's tables (DESIGN §4) and its clock, for PostgreSQL and SQLite alike.

``migrations/`` creates these tables; this module describes them so that the
registry can build statements, and a test checks the two agree.

Every timestamp is written by the database from its own clock (``db_now``), never
from a node's: nodes' clocks drift, and liveness and leases compare times written
by different nodes. On SQLite a timestamp is text of one fixed width
(``YYYY-MM-DD HH:MM:SS.SSS``, UTC) so that text order is time order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%f"
"""SQLite's ``strftime`` format for registry times: milliseconds, fixed width."""


class RegistryTime(TypeDecorator[datetime]):
    """A UTC instant: ``timestamptz`` on PostgreSQL, fixed-width text on SQLite.

    Values read back are always timezone-aware and in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(23))
        return self.impl_instance

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("registry times must be timezone-aware")
        if dialect.name != "sqlite":
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        if not isinstance(value, datetime):
            raise TypeError(f"not a registry time: {value!r}")
        return value.astimezone(UTC)


class db_now(FunctionElement[datetime]):
    """The registry's clock, plus ``offset_s`` seconds (negative looks back).

    Named in lower case because it reads as the SQL function it renders.

    One statement reads one instant, on both back-ends: SQLite's ``'now'`` is
    fixed for a statement, and on PostgreSQL we read ``statement_timestamp()``
    (not ``clock_timestamp()``, which moves between the expressions of one
    statement: a new row's ``heartbeat_at`` and ``registered_at`` would differ,
    and a claim's WHERE and SET would judge a lease at different times). A claim
    that waited for a row lock thus dates its lease from before the wait, which
    only ever shortens the lease: a winner never holds a lease longer than asked.
    """

    type = RegistryTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, offset_s: float = 0.0) -> None:
        super().__init__(literal(float(offset_s), Float()))


@compiles(db_now, "postgresql")
def _db_now_postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    offset = compiler.process(element.clauses, **kw)
    return f"(statement_timestamp() + make_interval(secs => {offset}))"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    offset = compiler.process(element.clauses, **kw)
    return f"strftime('{SQLITE_TIME_FORMAT}', 'now', printf('%+.3f seconds', {offset}))"


metadata = MetaData()

node = Table(
    "node",
    metadata,
    Column("id", Text, primary_key=True),
    Column("node_group", Text, nullable=False),
    Column("public_url", Text, nullable=False),
    Column("internal_url", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("cores", Integer, nullable=False),
    Column("max_players", Integer, nullable=False),
    Column("max_bitrate_kbps", Integer, nullable=False),
    Column("cpu", Float, nullable=False),
    Column("memory", Float, nullable=False),
    Column("players", Integer, nullable=False),
    Column("publishers", Integer, nullable=False),
    Column("pulls", Integer, nullable=False),
    Column("bitrate_in_kbps", Integer, nullable=False),
    Column("bitrate_out_kbps", Integer, nullable=False),
    Column("heartbeat_at", RegistryTime, nullable=False),
    Column("registered_at", RegistryTime, nullable=False),
    Column("cpu_limit", Integer, nullable=False, server_default="100"),
    Column("pending", Integer, nullable=False, server_default="0"),
    Column("pending_until", RegistryTime, nullable=True),
    CheckConstraint("state IN ('serving', 'draining')", name="node_state"),
    Index("node_heartbeat_at", "heartbeat_at"),
)
"""``pending``: clients routed to the node that its heartbeat does not count yet; they
lapse together at ``pending_until`` (a new reservation pushes it out), and the node's
heartbeat subtracts those that arrived. On the node's row, next to ``players``, so a
router's check of players + reservations and a heartbeat moving arrivals from one to
the other are each one statement on one row."""

stream = Table(
    "stream",
    metadata,
    Column("id", Text, primary_key=True),
    Column("app", Text, nullable=False),
    Column("origin_node", Text, nullable=False),
    Column("origin_group", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("codecs", Text, nullable=False),
    Column("lease_expires_at", RegistryTime, nullable=False),
    Column("updated_at", RegistryTime, nullable=False),
    Column("origin_players", Integer, nullable=False, server_default="0"),
    CheckConstraint("state IN ('live', 'ended', 'orphaned')", name="stream_state"),
)

secondary_origin = Table(  # the table keeps its first name: it holds secondary origins
    "regional_origin",
    metadata,
    Column("stream_id", Text, primary_key=True),
    Column("node_group", Text, primary_key=True),
    Column("node_id", Text, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("lease_expires_at", RegistryTime, nullable=False),
    Column("previous_lease_expires_at", RegistryTime, nullable=True),
)
"""``previous_lease_expires_at``: the lease the row held before its latest claim (NULL for
a new row), kept so that the claim's ``RETURNING`` can write it to the history."""

secondary_origin_history = Table(
    "secondary_origin_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream_id", Text, nullable=False),
    Column("node_group", Text, nullable=False),
    Column("node_id", Text, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("change", Text, nullable=False),
    Column("at", RegistryTime, nullable=False),
    Column("lease_expires_at", RegistryTime, nullable=False),
    Column("previous_lease_expires_at", RegistryTime, nullable=True),
    CheckConstraint(
        "change IN ('claimed', 'taken_over', 'released', 'cleared', 'ended')",
        name="secondary_origin_history_change",
    ),
    Index("secondary_origin_history_slot", "stream_id", "node_group", "id"),
)
"""Append-only: one row per change of a secondary-origin term, written in the transaction
of the change, so split-brain checks can replay who held each region's role when.
A claim row's ``previous_lease_expires_at`` is the lease the slot held just before it."""

pull = Table(
    "pull",
    metadata,
    Column("stream_id", Text, primary_key=True),
    Column("downstream", Text, primary_key=True),
    Column("upstream", Text, nullable=False),
    Column("since", RegistryTime, nullable=False),
    Column("players", Integer, nullable=False, server_default="0"),
    Index("pull_upstream", "upstream"),
)

stream_token = Table(
    "stream_token",
    metadata,
    Column("token", Text, primary_key=True),
    Column("stream_id", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("expires_at", RegistryTime, nullable=False),
    Column("created_at", RegistryTime, nullable=False),
    CheckConstraint("type IN ('publish', 'play')", name="stream_token_type"),
    Index("stream_token_expires_at", "expires_at"),
)
