"""The registry client: the cluster's shared memory of nodes, streams and relays.

The only module that queries the registry. One class serves both back-ends
(PostgreSQL through asyncpg in production, an embedded SQLite file for one
machine) with the same statements; only connection set-up differs, and that is
``cluster.registry.database``'s.

Ownership is decided by the database, never by a read-then-write in Python:
each claim is one ``INSERT … ON CONFLICT … DO UPDATE … WHERE <claimable>
RETURNING`` statement, and every time is the database's clock (``db_now``), so
nodes whose clocks disagree still agree on who is alive and who holds a lease.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Select,
    and_,
    case,
    delete,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cluster.errors import RegistryUnavailable, StreamBusy
from cluster.registry.database import error_text, open_engine, shown, transactional
from cluster.registry.records import (
    load_values,
    node_record,
    pull_edge,
    secondary_origin_change,
    secondary_origin_record,
    stream_record,
)
from cluster.registry.schema import (
    db_now,
    node,
    pull,
    secondary_origin,
    secondary_origin_history,
    stream,
    stream_token,
)
from cluster.types import (
    AppName,
    ClaimResult,
    ClusterSnapshot,
    NodeGroup,
    NodeId,
    NodeInfo,
    NodeLoad,
    NodeRecord,
    RelayTree,
    SecondaryOrigin,
    SecondaryOriginChange,
    StreamId,
    StreamRecord,
    TermChange,
)

logger = logging.getLogger(__name__)

_CLAIM_ATTEMPTS = 3
"""A lost claim reads the holder back; if the slot was freed in between, claim again."""


class Registry:
    """Nodes, streams, secondary-origin claims and the relay tree, in one database.

    ``dead_after_s``: a node whose last heartbeat is older than this (by the
    registry's clock) is not listed. Every error reaching the database surfaces as
    ``RegistryUnavailable``; ``StreamBusy`` when a stream is live on another node.
    """

    def __init__(self, engine: AsyncEngine, *, dead_after_s: float) -> None:
        self._engine = engine
        self._dead_after_s = dead_after_s
        self._closed = False
        self._transactions = transactional(engine)
        self._snapshots = transactional(engine, snapshot=True)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        dead_after_s: float = 3.0,
        pool_size: int = 5,
        tls: ssl.SSLContext | str | None = None,
    ) -> Registry:
        """Open the registry at ``url`` and check it answers.

        ``pool_size`` bounds this process's connections; a burst past it waits its turn.
        ``tls``: as ``open_engine``'s (``cluster.tls.registry_ssl``).
        """
        registry = cls(open_engine(url, pool_size=pool_size, tls=tls), dead_after_s=dead_after_s)
        location = shown(registry._engine.url)
        try:
            await registry.now()
        except RegistryUnavailable as exc:
            await registry.close()
            raise RegistryUnavailable(f"{exc} (at {location})") from exc
        logger.info("registry at %s", location)
        return registry

    async def close(self) -> None:
        """Close every pooled connection; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _connection(
        self, doing: str, engine: AsyncEngine | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A connection from ``engine`` (default: autocommit), its errors made plain."""
        if self._closed:
            raise RegistryUnavailable(f"registry is closed; cannot {doing}")
        try:
            async with (engine or self._engine).begin() as connection:
                yield connection
        except (SQLAlchemyError, OSError) as exc:
            raise RegistryUnavailable(f"registry could not {doing}: {error_text(exc)}") from exc

    async def _rows(self, doing: str, statement: Executable) -> Sequence[Row[Any]]:
        async with self._connection(doing) as connection:
            return (await connection.execute(statement)).all()

    async def _changed(self, doing: str, statement: Executable) -> bool:
        """Run a statement that writes at most one row; whether it wrote one."""
        async with self._connection(doing) as connection:
            return (await connection.execute(statement)).rowcount == 1

    async def now(self) -> datetime:
        """The registry's clock (UTC), the only clock liveness and leases use."""
        rows = await self._rows("read its clock", select(db_now()))
        value: datetime = rows[0][0]
        return value

    # Nodes

    async def register(self, info: NodeInfo, *, new_life: bool = True) -> NodeRecord:
        """Add a node, or give a restarted node its row back: serving, zero load, seen now.

        ``new_life``: the process is starting, so whatever a previous process of
        the same node left behind is void, in the same transaction: its pull
        edges (it pulls nothing yet), its secondary-origin terms (expired, so the
        next claim fences them out) and its live main-origin claims (orphaned:
        its publishers died with it). A running node that the registry forgot
        registers again with ``new_life=False`` and keeps its work.
        """
        values = {
            "id": info.id,
            "node_group": info.node_group,
            "public_url": info.public_url,
            "internal_url": info.internal_url,
            "state": "serving",
            "cores": info.capacity.cores,
            "max_players": info.capacity.max_players,
            "max_bitrate_kbps": info.capacity.max_bitrate_kbps,
            "cpu_limit": info.capacity.cpu_limit,
            **load_values(NodeLoad()),
            "heartbeat_at": db_now(),
            "registered_at": db_now(),
        }
        inserting = self._insert(node).values(values)
        statement = inserting.on_conflict_do_update(
            index_elements=[node.c.id],
            set_={name: inserting.excluded[name] for name in values if name != "id"},
        ).returning(*node.c)
        doing = f"register node {info.id}"
        async with self._connection(doing, self._transactions) as connection:
            row = (await connection.execute(statement)).one()
            if new_life:
                await self._forget_previous_life(connection, info.id)
        logger.info("registered node %s in %s", info.id, info.node_group)
        return node_record(row)

    @staticmethod
    async def _forget_previous_life(connection: AsyncConnection, node_id: NodeId) -> None:
        cleared = (
            await connection.execute(delete(pull).where(pull.c.downstream == node_id))
        ).rowcount
        voided = (
            await connection.execute(
                update(secondary_origin)
                .where(secondary_origin.c.node_id == node_id)
                .where(secondary_origin.c.lease_expires_at > db_now())
                .values(lease_expires_at=db_now())
                .returning(*secondary_origin.c, db_now().label("at"))
            )
        ).all()
        for row in voided:
            await Registry._record_change(connection, row, "cleared")
        cleared += len(voided)
        cleared += (
            await connection.execute(
                update(stream)
                .where(stream.c.origin_node == node_id, stream.c.state == "live")
                .values(state="orphaned", updated_at=db_now())
            )
        ).rowcount
        if cleared:
            logger.info("cleared %d rows that a previous run of %s left behind", cleared, node_id)

    async def heartbeat(
        self, node_id: NodeId, node_group: NodeGroup, load: NodeLoad, arrived: int = 0
    ) -> bool:
        """Record that the node is alive, its load and its group (a region change shows here).

        ``arrived``: clients that came with a reservation since the last beat; ``load``
        counts them now, so the same statement takes them off the node's reservations.
        False when the node's row is gone (deregistered): the caller registers again.
        """
        values: dict[str, Any] = {"node_group": node_group, "heartbeat_at": db_now()}
        if arrived:
            held = self._pending()
            values["pending"] = case((held > arrived, held - arrived), else_=0)
        statement = update(node).where(node.c.id == node_id).values(**values, **load_values(load))
        return await self._changed(f"record a heartbeat of {node_id}", statement)

    async def reserve(self, node_id: NodeId, lease_s: float) -> bool:
        """Keep room on the node for one routed client, if it has room counting reservations.

        One statement on the node's row, where its players and its reservations both
        are: concurrent routers on different nodes cannot both take the last place,
        because PostgreSQL re-checks the ``WHERE`` of an ``UPDATE`` that waited on the
        row against the row's new version (SQLite runs writers one at a time). So a
        router that waited for a heartbeat moving arrivals from reservations to
        players sees both moved, never one without the other. Reservations lapse
        together ``lease_s`` after the latest.
        """
        held = self._pending()
        statement = (
            update(node)
            .where(node.c.id == node_id, node.c.players + held + 1 <= node.c.max_players)
            .values(pending=held + 1, pending_until=db_now(lease_s))
        )
        return await self._changed(f"reserve room on {node_id}", statement)

    @staticmethod
    def _pending() -> ColumnElement[int]:
        """A node's reservations that have not lapsed."""
        return case((node.c.pending_until > db_now(), node.c.pending), else_=0)

    def _nodes(self) -> Select[Any]:
        """Node rows with their unexpired reservations as ``reserved``."""
        return select(node, self._pending().label("reserved"))

    async def drain(self, node_id: NodeId) -> None:
        """Mark the node draining: it keeps its work but takes no new work."""
        statement = update(node).where(node.c.id == node_id).values(state="draining")
        await self._changed(f"drain node {node_id}", statement)

    async def deregister(self, node_id: NodeId) -> None:
        """Remove the node's row (a clean exit); unknown nodes are ignored."""
        await self._changed(f"deregister node {node_id}", delete(node).where(node.c.id == node_id))

    async def forget_dead_nodes(self, dead_for_s: float) -> list[NodeId]:
        """Delete nodes silent for over ``dead_for_s``, with their pull edges (and reservations).

        A killed node that is never started again would otherwise leave its pull rows
        (and the players they report) in every relay tree it was part of, for as long as
        the stream lives. The node row goes first, re-checked in its own ``DELETE``, so a
        node that beat meanwhile keeps its rows; one that wakes later finds itself
        forgotten and registers again, keeping its work (``new_life=False``). Cheap when
        nobody died: one range read of the heartbeat index.
        """
        silent = node.c.heartbeat_at <= db_now(-dead_for_s)
        async with self._connection("forget dead nodes", self._transactions) as connection:
            gone = [
                NodeId(node_id)
                for node_id in (
                    await connection.execute(delete(node).where(silent).returning(node.c.id))
                ).scalars()
            ]
            if gone:
                await connection.execute(delete(pull).where(pull.c.downstream.in_(gone)))
        if gone:
            logger.info(
                "forgot %s: no heartbeat for over %.1f s", ", ".join(sorted(gone)), dead_for_s
            )
        return gone

    def _alive(self) -> ColumnElement[bool]:
        return node.c.heartbeat_at > db_now(-self._dead_after_s)

    async def live_nodes(self, offset: int = 0, limit: int | None = None) -> list[NodeRecord]:
        """Nodes heard from within ``dead_after_s``, ordered by group then id (stable pages)."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError(f"offset and limit must not be negative: {offset}, {limit}")
        statement = (
            self._nodes()
            .where(self._alive())
            .order_by(node.c.node_group, node.c.id)
            .offset(offset)
            .limit(limit)
        )
        return [node_record(row) for row in await self._rows("list live nodes", statement)]

    async def count_live_nodes(self) -> int:
        """How many nodes ``live_nodes`` would list."""
        statement = select(func.count()).select_from(node).where(self._alive())
        count: int = (await self._rows("count live nodes", statement))[0][0]
        return count

    async def node(self, node_id: NodeId) -> NodeRecord | None:
        """The node's row, alive or not (``heartbeat_at`` tells); None if unknown."""
        statement = self._nodes().where(node.c.id == node_id)
        rows = await self._rows(f"read node {node_id}", statement)
        return node_record(rows[0]) if rows else None

    # Streams: the main origin

    async def claim_stream(
        self,
        stream_id: StreamId,
        app: AppName,
        node_id: NodeId,
        node_group: NodeGroup,
        codecs: Sequence[str],
        lease_s: float,
    ) -> StreamRecord:
        """Become the stream's main origin for ``lease_s`` seconds.

        Succeeds when the stream is new, not live (ended or orphaned), already ours,
        or its holder's lease has expired; otherwise raises ``StreamBusy`` naming
        the holder.
        """
        if any(not codec or "," in codec for codec in codecs):
            raise ValueError(f"codec names must be non-empty and without commas: {codecs!r}")
        values = {
            "id": stream_id,
            "app": app,
            "origin_node": node_id,
            "origin_group": node_group,
            "state": "live",
            "codecs": ",".join(codecs),
            "lease_expires_at": db_now(lease_s),
            "updated_at": db_now(),
        }
        inserting = self._insert(stream).values(values)
        held = stream.c
        statement = inserting.on_conflict_do_update(
            index_elements=[held.id],
            set_={name: inserting.excluded[name] for name in values if name != "id"},
            where=or_(
                held.state != "live",
                held.origin_node == inserting.excluded.origin_node,
                held.lease_expires_at <= db_now(),
            ),
        ).returning(*stream.c)
        rows = await self._rows(f"claim stream {stream_id}", statement)
        if rows:
            logger.info("node %s is the main origin of %s", node_id, stream_id)
            return stream_record(rows[0])
        holder = await self.stream(stream_id)
        busy_on = holder.origin_node if holder is not None else "another node"
        raise StreamBusy(f"stream {stream_id} is live on {busy_on}")

    async def renew_stream(
        self, stream_id: StreamId, node_id: NodeId, lease_s: float, players: int = 0
    ) -> bool:
        """Extend the main origin's lease and record its players.

        A stream orphaned while its main origin was cut off (frozen, or its
        heartbeats lost) is live again as soon as that origin renews it: its
        publisher never left, and the nodes holding its players resume. False
        if the node no longer holds the stream (it ended, or another node took it).
        """
        statement = (
            update(stream)
            .where(stream.c.id == stream_id, stream.c.origin_node == node_id)
            .where(stream.c.state.in_(("live", "orphaned")))
            .values(
                state="live",
                lease_expires_at=db_now(lease_s),
                updated_at=db_now(),
                origin_players=players,
            )
        )
        return await self._changed(f"renew stream {stream_id}", statement)

    async def end_stream(self, stream_id: StreamId, node_id: NodeId) -> None:
        """End the stream if ``node_id`` is its main origin, with its pulls and secondary origins.

        One transaction: nobody sees an ended stream that still has a relay tree.
        """
        ending = (
            update(stream)
            .where(stream.c.id == stream_id, stream.c.origin_node == node_id)
            .where(stream.c.state != "ended")
            .values(state="ended", lease_expires_at=db_now(), updated_at=db_now())
        )
        async with self._connection(f"end stream {stream_id}", self._transactions) as connection:
            if (await connection.execute(ending)).rowcount != 1:
                return
            await connection.execute(delete(pull).where(pull.c.stream_id == stream_id))
            gone = (
                await connection.execute(
                    delete(secondary_origin)
                    .where(secondary_origin.c.stream_id == stream_id)
                    .returning(*secondary_origin.c, db_now().label("at"))
                )
            ).all()
            for row in gone:
                await self._record_change(connection, row, "ended")
        logger.info("stream %s ended on %s", stream_id, node_id)

    async def orphan_stream(self, stream_id: StreamId, origin_node: NodeId) -> bool:
        """Mark a live stream orphaned because its main origin ``origin_node`` is gone.

        Only if that node still holds it: a stream re-published elsewhere in
        the meantime stays live. True when this call made it orphaned.
        """
        statement = (
            update(stream)
            .where(stream.c.id == stream_id, stream.c.origin_node == origin_node)
            .where(stream.c.state == "live")
            .values(state="orphaned", updated_at=db_now())
        )
        orphaned = await self._changed(f"orphan stream {stream_id}", statement)
        if orphaned:
            logger.info("stream %s orphaned: its main origin %s is gone", stream_id, origin_node)
        return orphaned

    async def prune_ended_streams(self, older_than_s: float) -> int:
        """Delete streams that ended (or stayed orphaned) over ``older_than_s`` ago; how many.

        An ended stream's row only answers "finished" to the broadcast REST
        call; kept forever, every stream id ever published would stay in the
        table. What still hangs off a pruned stream (the pulls and secondary
        origins of an orphan nobody ended, and the history of its secondary origins) goes
        with it, in the same transaction.
        """
        gone = and_(stream.c.state != "live", stream.c.updated_at < db_now(-older_than_s))
        known = select(stream.c.id)
        async with self._connection("prune ended streams", self._transactions) as connection:
            pruned: int = (await connection.execute(delete(stream).where(gone))).rowcount
            if pruned:
                await connection.execute(delete(pull).where(pull.c.stream_id.not_in(known)))
                for table in (secondary_origin, secondary_origin_history):
                    await connection.execute(delete(table).where(table.c.stream_id.not_in(known)))
        if pruned:
            logger.info("pruned %d streams that ended over %.0f s ago", pruned, older_than_s)
        return pruned

    async def stream(self, stream_id: StreamId) -> StreamRecord | None:
        """The stream's record, whatever its state; None if never published."""
        rows = await self._rows(
            f"read stream {stream_id}", select(stream).where(stream.c.id == stream_id)
        )
        return stream_record(rows[0]) if rows else None

    # Secondary origins

    async def claim_secondary_origin(
        self,
        stream_id: StreamId,
        node_group: NodeGroup,
        node_id: NodeId,
        lease_s: float,
        *,
        take_over: SecondaryOrigin | None = None,
    ) -> ClaimResult:
        """Try to become the secondary origin of ``stream_id`` in ``node_group``.

        A free slot is won with epoch 1. The holder's own claim renews its lease
        under the same epoch while the lease runs. An expired lease is taken over
        (even by its old holder) under epoch + 1, which fences out the previous
        term. ``take_over`` names a term the caller saw fail (its holder stopped
        answering a pull before the registry noticed): that exact holder and
        epoch are taken over at once, lease or not; a term that already changed
        hands is not. Otherwise the claim is lost and the result names the holder.

        A won claim is written to the history in its own transaction (``claimed``, or
        ``taken_over`` when it fenced out a running lease), with the lease it replaced.
        """
        held = secondary_origin.c
        inserting = self._insert(secondary_origin).values(
            stream_id=stream_id,
            node_group=node_group,
            node_id=node_id,
            epoch=1,
            lease_expires_at=db_now(lease_s),
        )
        ours = held.node_id == inserting.excluded.node_id
        statement = inserting.on_conflict_do_update(
            index_elements=[held.stream_id, held.node_group],
            set_={
                "node_id": inserting.excluded.node_id,
                "epoch": case(
                    (and_(ours, held.lease_expires_at > db_now()), held.epoch),
                    else_=held.epoch + 1,
                ),
                "lease_expires_at": inserting.excluded.lease_expires_at,
                "previous_lease_expires_at": held.lease_expires_at,
            },
            where=or_(
                ours,
                held.lease_expires_at <= db_now(),
                and_(held.node_id == take_over.node_id, held.epoch == take_over.epoch)
                if take_over is not None
                else false(),
            ),
        ).returning(*secondary_origin.c, db_now().label("at"))
        doing = f"claim the secondary origin of {stream_id} in {node_group}"
        for _ in range(_CLAIM_ATTEMPTS):
            async with self._connection(doing, self._transactions) as connection:
                rows = (await connection.execute(statement)).all()
                if rows:
                    row = rows[0]
                    previous = row.previous_lease_expires_at
                    fenced = (
                        take_over is not None
                        and take_over.node_id != node_id
                        and previous is not None
                        and previous > row.at
                    )
                    await self._record_change(
                        connection, row, "taken_over" if fenced else "claimed"
                    )
            if rows:
                holder = secondary_origin_record(rows[0])
                logger.info(
                    "node %s holds the secondary origin of %s in %s (epoch %d)",
                    node_id,
                    stream_id,
                    node_group,
                    holder.epoch,
                )
                return ClaimResult(won=True, holder=holder)
            current = await self._rows(
                doing, select(secondary_origin).where(self._slot(stream_id, node_group))
            )
            if current:
                return ClaimResult(won=False, holder=secondary_origin_record(current[0]))
        raise RegistryUnavailable(f"registry could not {doing}: the slot kept changing hands")

    @staticmethod
    def _slot(stream_id: StreamId, node_group: NodeGroup) -> ColumnElement[bool]:
        return and_(
            secondary_origin.c.stream_id == stream_id, secondary_origin.c.node_group == node_group
        )

    async def renew_secondary_origin(
        self,
        stream_id: StreamId,
        node_group: NodeGroup,
        node_id: NodeId,
        epoch: int,
        lease_s: float,
    ) -> bool:
        """Extend the holder's lease; False when fenced out (another holder or a newer epoch)."""
        statement = (
            update(secondary_origin)
            .where(self._slot(stream_id, node_group))
            .where(secondary_origin.c.node_id == node_id, secondary_origin.c.epoch == epoch)
            .values(lease_expires_at=db_now(lease_s))
        )
        return await self._changed(f"renew the secondary origin of {stream_id}", statement)

    async def release_secondary_origin(
        self, stream_id: StreamId, node_group: NodeGroup, node_id: NodeId, epoch: int
    ) -> None:
        """Give the role up now (a hand-off): the lease expires, the next claim gets epoch + 1."""
        statement = (
            update(secondary_origin)
            .where(self._slot(stream_id, node_group))
            .where(secondary_origin.c.node_id == node_id, secondary_origin.c.epoch == epoch)
            .where(secondary_origin.c.lease_expires_at > db_now())
            .values(lease_expires_at=db_now())
            .returning(*secondary_origin.c, db_now().label("at"))
        )
        doing = f"release the secondary origin of {stream_id}"
        async with self._connection(doing, self._transactions) as connection:
            for row in (await connection.execute(statement)).all():
                await self._record_change(connection, row, "released")

    @staticmethod
    async def _record_change(
        connection: AsyncConnection, row: Row[*tuple[Any, ...]], change: TermChange
    ) -> None:
        """Append a term's change to the history, in the transaction that made it.

        ``row`` is the slot as the change's ``RETURNING`` gave it, with ``at``, the
        registry's clock of that statement. A term that ended keeps ``at`` as its lease.
        """
        begun = change in ("claimed", "taken_over")
        await connection.execute(
            secondary_origin_history.insert().values(
                stream_id=row.stream_id,
                node_group=row.node_group,
                node_id=row.node_id,
                epoch=row.epoch,
                change=change,
                at=row.at,
                lease_expires_at=row.lease_expires_at if begun else row.at,
                previous_lease_expires_at=row.previous_lease_expires_at if begun else None,
            )
        )

    async def secondary_origin_history(
        self, stream_id: StreamId | None = None
    ) -> list[SecondaryOriginChange]:
        """Every recorded change of secondary-origin terms (of one stream), in order."""
        statement = select(secondary_origin_history).order_by(secondary_origin_history.c.id)
        if stream_id is not None:
            statement = statement.where(secondary_origin_history.c.stream_id == stream_id)
        rows = await self._rows("read the history of secondary origins", statement)
        return [secondary_origin_change(row) for row in rows]

    async def secondary_origin(
        self, stream_id: StreamId, node_group: NodeGroup
    ) -> SecondaryOrigin | None:
        """The region's current secondary origin; None when nobody holds a running lease."""
        statement = (
            select(secondary_origin)
            .where(self._slot(stream_id, node_group))
            .where(secondary_origin.c.lease_expires_at > db_now())
        )
        rows = await self._rows(f"read the secondary origin of {stream_id}", statement)
        return secondary_origin_record(rows[0]) if rows else None

    # One-time stream tokens

    async def create_stream_token(
        self, token: str, stream_id: StreamId, app: AppName, kind: str, expires_at: datetime
    ) -> None:
        """Store a one-time token; expired tokens of every stream go at the same time."""
        async with self._connection(
            f"create a token for {stream_id}", self._transactions
        ) as connection:
            await connection.execute(
                delete(stream_token).where(stream_token.c.expires_at <= db_now())
            )
            await connection.execute(
                self._insert(stream_token).values(
                    token=token,
                    stream_id=stream_id,
                    app=app,
                    type=kind,
                    expires_at=expires_at,
                    created_at=db_now(),
                )
            )

    async def spend_stream_token(
        self, token: str, stream_id: StreamId, app: AppName, kind: str
    ) -> bool:
        """Spend a one-time token: True for exactly one caller, cluster-wide, before it expires.

        One ``DELETE … RETURNING``: two nodes spending the same token at once
        cannot both win. A token of another stream, app or type is left alone.
        """
        statement = (
            delete(stream_token)
            .where(stream_token.c.token == token, stream_token.c.stream_id == stream_id)
            .where(stream_token.c.app == app, stream_token.c.type == kind)
            .where(stream_token.c.expires_at > db_now())
            .returning(stream_token.c.token)
        )
        return bool(await self._rows(f"spend a token for {stream_id}", statement))

    # Pulls: the relay tree's edges

    async def record_pull(
        self, stream_id: StreamId, downstream: NodeId, upstream: NodeId, players: int = 0
    ) -> None:
        """Record that ``downstream`` pulls the stream from ``upstream``, with its players.

        Recording the same edge again keeps its ``since``; a new upstream restarts it.
        """
        inserting = self._insert(pull).values(
            stream_id=stream_id,
            downstream=downstream,
            upstream=upstream,
            since=db_now(),
            players=players,
        )
        statement = inserting.on_conflict_do_update(
            index_elements=[pull.c.stream_id, pull.c.downstream],
            set_={
                "upstream": inserting.excluded.upstream,
                "players": inserting.excluded.players,
                "since": case(
                    (pull.c.upstream == inserting.excluded.upstream, pull.c.since),
                    else_=inserting.excluded.since,
                ),
            },
        )
        await self._changed(f"record a pull of {stream_id} by {downstream}", statement)

    async def remove_pull(self, stream_id: StreamId, downstream: NodeId) -> None:
        """Forget ``downstream``'s pull of the stream; unknown pulls are ignored."""
        statement = delete(pull).where(
            pull.c.stream_id == stream_id, pull.c.downstream == downstream
        )
        await self._changed(f"remove a pull of {stream_id} by {downstream}", statement)

    async def snapshot(self, stream_id: StreamId | None = None) -> ClusterSnapshot:
        """Live nodes, streams not ended, running secondary origins and pulls, in one snapshot.

        With ``stream_id``, the stream parts are that stream's only: what a
        pull decides from at each step, in one transaction instead of one
        read per part.
        """
        nodes = self._nodes().where(self._alive()).order_by(node.c.node_group, node.c.id)
        streams = select(stream).where(stream.c.state != "ended").order_by(stream.c.id)
        origins = (
            select(secondary_origin)
            .where(secondary_origin.c.lease_expires_at > db_now())
            .order_by(secondary_origin.c.stream_id, secondary_origin.c.node_group)
        )
        pulls = select(pull).order_by(pull.c.stream_id, pull.c.upstream, pull.c.downstream)
        if stream_id is not None:
            streams = streams.where(stream.c.id == stream_id)
            origins = origins.where(secondary_origin.c.stream_id == stream_id)
            pulls = pulls.where(pull.c.stream_id == stream_id)
        doing = "read the cluster" if stream_id is None else f"read the cluster around {stream_id}"
        async with self._connection(doing, self._snapshots) as connection:
            read_at: datetime = (await connection.execute(select(db_now()))).scalar_one()
            node_rows = (await connection.execute(nodes)).all()
            stream_rows = (await connection.execute(streams)).all()
            origin_rows = (await connection.execute(origins)).all()
            pull_rows = (await connection.execute(pulls)).all()
        return ClusterSnapshot(
            read_at=read_at,
            nodes=tuple(node_record(row) for row in node_rows),
            streams=tuple(stream_record(row) for row in stream_rows),
            secondary_origins=tuple(secondary_origin_record(row) for row in origin_rows),
            pulls=tuple(pull_edge(row) for row in pull_rows),
        )

    async def relay_tree(self, stream_id: StreamId) -> RelayTree | None:
        """The stream, its running secondary origins and its pulls; None if never published.

        Read from one snapshot, so the three parts agree with each other.
        """
        origins = (
            select(secondary_origin)
            .where(secondary_origin.c.stream_id == stream_id)
            .where(secondary_origin.c.lease_expires_at > db_now())
            .order_by(secondary_origin.c.node_group)
        )
        pulls = (
            select(pull)
            .where(pull.c.stream_id == stream_id)
            .order_by(pull.c.upstream, pull.c.downstream)
        )
        async with self._connection(
            f"read the relay tree of {stream_id}", self._snapshots
        ) as connection:
            stream_row = (
                await connection.execute(select(stream).where(stream.c.id == stream_id))
            ).first()
            if stream_row is None:
                return None
            origin_rows = (await connection.execute(origins)).all()
            pull_rows = (await connection.execute(pulls)).all()
        return RelayTree(
            stream=stream_record(stream_row),
            secondary_origins=tuple(secondary_origin_record(row) for row in origin_rows),
            pulls=tuple(pull_edge(row) for row in pull_rows),
        )
