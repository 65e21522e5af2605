"""Pulls: how a node comes to carry a stream published elsewhere, and keeps carrying it.

One ``Pull`` per pulled stream, driven by one task. Each step reads the
registry, asks ``placement`` where to pull from, claims the region's secondary
origin when placement says so, pulls over internal WHEP with a cluster token,
and records the pull edge with this node's player count. A step runs every
heartbeat interval, and at once when the media plane reports the upstream lost
or the node changes region.

Players never see any of this: the media engine holds them while the pull
re-plans and switches their source without renegotiation. They end only when
the stream ends, when its main origin stays lost past ``cluster.originGraceMs``,
or when nobody has watched for ``cluster.idlePullTimeoutMs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import httpx

from cluster.errors import (
    ClusterError,
    NotFound,
    RegistryUnavailable,
    UpstreamFailed,
    UpstreamTimeout,
)
from cluster.registry import Registry
from cluster.routing.placement import (
    ClaimSecondary,
    IsOrigin,
    Snapshot,
    Upstream,
    WaitForLease,
    holds_on,
    keeps_upstream,
    plan,
    plan_after_claim,
    replans_orphan,
)
from cluster.settings import Settings
from cluster.streams.whip_client import WhipClient
from cluster.tls import refusal, tls_failure
from cluster.tokens import sign_pull_token
from cluster.types import NodeId, NodeRecord, SecondaryOrigin, StreamId
from media.engine import MediaEngine
from media.errors import MediaError
from media.types import Exchange

logger = logging.getLogger(__name__)

FIRST_PULL_TIMEOUT_S = 10.0
"""How long a first player waits for its node to start pulling before it gets 504."""

RETRY_S = 0.25
"""After a failed pull attempt, the next one comes this soon (the registry may have moved on)."""

FIRST_PULL_ATTEMPTS = 3
"""Failed attempts after which a first pull gives up; an established pull keeps trying."""

CLOSE_TIMEOUT_S = 5.0

NODE_CALL_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
"""Every node-to-node request: 1 s to connect, 2 s for each other phase. Nodes answer a pull
in tens of milliseconds; one that takes longer is frozen, cut off or overloaded, and is
treated as a lost upstream rather than waited for."""

REFUSED_FOR_S = 30.0
"""A node refused over TLS (its certificate does not verify) is not pulled from for this long:
unlike a frozen node, its next heartbeat does not mend it; a replaced certificate is tried
again after this."""

EXCHANGE_TIMEOUT_S = 3.0
"""The whole pull offer/answer exchange, whatever the phases: the same reasoning."""


def internal_pull_path(app: str, stream_id: str) -> str:
    """Where a node serves pulls of a stream to other nodes (internal WHEP)."""
    return f"/internal/v1/{app}/pull/{stream_id}"


@dataclass(eq=False)
class Pull:
    """One stream this node pulls: where from, under which role, and its timers."""

    app: str
    stream_id: StreamId
    upstream: NodeId | None = None
    client: WhipClient | None = None
    secondary: SecondaryOrigin | None = None
    """Our claim, while we are our region's secondary origin for the stream."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failure: ClusterError | None = None
    waiters: int = 0
    failed_attempts: int = 0
    handed_over: bool = False
    """A publisher took the stream over here: stopping the pull must leave its players."""
    idle_since: float | None = None
    orphaned_since: float | None = None
    orphan_receiving: bool = False
    """The stream is orphaned in the registry while its media still arrives here."""
    task: asyncio.Task[None] | None = None


class Pulls:
    """Every stream this node pulls, each with its supervising task."""

    def __init__(
        self,
        registry: Registry,
        settings: Callable[[], Settings],
        engine: MediaEngine,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: what upstreams are verified with and this node's certificate presented
        through (``cluster.tls.client_context``); None: the system's CAs, no certificate."""
        self._registry = registry
        self._settings = settings
        self._engine = engine
        self._verify: ssl.SSLContext | bool = tls if tls is not None else True
        self._pulls: dict[str, Pull] = {}
        self._closed = False
        self._unanswered: dict[NodeId, datetime | None] = {}
        """Nodes that did not answer us (a pull went silent or timed out), with the
        heartbeat the next registry read showed (None until then): not pulled from
        until the registry shows a newer one."""
        self._refused: dict[NodeId, float] = {}
        """Nodes whose TLS certificate did not verify, with when (monotonic) to try again."""
        self._closing: set[asyncio.Task[None]] = set()
        """Sessions with upstreams we left, being closed (``_close_later``)."""

    async def ensure(self, app: str, stream_id: str) -> None:
        """Return once this node carries ``stream_id``, pulling it if needed.

        Concurrent first plays of one stream share one pull. Raises
        ``NotFound`` when the stream is not live in ``app`` anywhere, and
        ``UpstreamTimeout`` when no pull could be started in time.
        """
        pull = self._pulls.get(stream_id)
        if pull is None:
            stream = await self._registry.stream(StreamId(stream_id))
            if stream is None or stream.state != "live" or stream.app != app:
                raise NotFound(f"stream {stream_id} is not live in {app}")
            pull = self._pulls.get(stream_id)  # another play may have started it meanwhile
            if pull is None:
                pull = Pull(app, StreamId(stream_id))
                self._pulls[stream_id] = pull
                pull.task = asyncio.create_task(self._supervise(pull), name=f"pull {stream_id}")
        if pull.app != app:
            raise NotFound(f"stream {stream_id} is not live in {app}")
        pull.waiters += 1
        try:
            async with asyncio.timeout(FIRST_PULL_TIMEOUT_S):
                await pull.ready.wait()
        except TimeoutError:
            raise UpstreamTimeout(
                f"could not start pulling {stream_id} within {FIRST_PULL_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            pull.waiters -= 1
        if pull.failure is not None:
            raise pull.failure

    async def hand_over(self, stream_id: str) -> None:
        """Stop pulling ``stream_id`` without ending it: a publisher takes it over here.

        The pull edge and any secondary-origin claim are given back; the players
        stay in the media engine for the publisher to feed.
        """
        pull = self._pulls.pop(stream_id, None)
        if pull is None or pull.task is None:
            return
        pull.handed_over = True
        pull.task.cancel()
        await asyncio.gather(pull.task, return_exceptions=True)
        logger.info("stopped pulling %s: it is published on this node now", stream_id)

    def adopt(self, app: str, stream_id: str) -> None:
        """Supervise again a stream held here without a pull (a takeover that failed)."""
        if stream_id in self._pulls or self._closed:
            return
        pull = Pull(app, StreamId(stream_id))
        pull.ready.set()
        self._pulls[stream_id] = pull
        pull.task = asyncio.create_task(self._supervise(pull), name=f"pull {stream_id}")

    def app_of(self, stream_id: str) -> str | None:
        """The app of a stream this node pulls; None when it pulls no such stream."""
        pull = self._pulls.get(stream_id)
        return pull.app if pull is not None else None

    def upstream_lost(self, stream_id: str, closed_by_upstream: bool) -> None:
        """The media plane lost a pull's upstream: re-plan now, around that node unless it
        closed the pull itself (it answers: it ended the stream, or gave its role up).

        Planning around a node that closed a pull would let the next stream's first
        pull take the secondary-origin role it has just claimed over, as if it were gone.
        """
        pull = self._pulls.get(stream_id)
        if pull is not None:
            logger.info("lost the upstream %s of %s; re-planning", pull.upstream, stream_id)
            if pull.upstream is not None and not closed_by_upstream:
                self._unanswering(pull.upstream)
            pull.upstream = None
            pull.wake.set()

    def _unanswering(self, node_id: NodeId) -> None:
        """``node_id`` did not answer: every pull plans around it until it heartbeats again.

        "Again" counts from the next registry read, not the last one: a node that died
        just after a heartbeat shows that beat in the next read, and it must not pass
        for a sign of life (its downstreams would pull from it once more, and wait out
        a refused connection before claiming its role).
        """
        if node_id not in self._unanswered:
            self._unanswered[node_id] = None
            for pull in self._pulls.values():
                if pull.upstream == node_id:
                    pull.wake.set()

    def _reachable(self, alive: Mapping[NodeId, NodeRecord]) -> dict[NodeId, NodeRecord]:
        """The live nodes, less those that did not answer us since their last heartbeat.

        The registry's view lags a frozen or killed node by up to
        ``cluster.nodeDeadTimeoutMs``; our own pulls see it first.
        """
        for node_id, heard_at in list(self._unanswered.items()):
            record = alive.get(node_id)
            if heard_at is None:
                if record is not None:
                    self._unanswered[node_id] = record.heartbeat_at
            elif record is None or record.heartbeat_at > heard_at:
                del self._unanswered[node_id]
        now = time.monotonic()
        self._refused = {n: until for n, until in self._refused.items() if until > now}
        return {
            n: r for n, r in alive.items() if n not in self._unanswered and n not in self._refused
        }

    def wake_all(self) -> None:
        """Re-plan every pull now (the node changed region)."""
        for pull in self._pulls.values():
            pull.wake.set()

    async def close(self) -> None:
        """Stop every pull: players end, pull edges and claims are given back.

        Each loop is woken to finish on its own, so its clean-up runs while the
        registry is still open; one that does not finish in time is cancelled. The
        sessions with upstreams we left are given the same time to close.
        """
        self._closed = True
        self.wake_all()
        await _finish([r.task for r in self._pulls.values() if r.task is not None])
        await _finish(list(self._closing))

    # The supervising loop

    async def _supervise(self, pull: Pull) -> None:
        try:
            while not self._closed:
                pull.wake.clear()  # before the step: a wake-up during it triggers the next
                try:
                    if not await self._step(pull):
                        break
                except RegistryUnavailable as error:
                    logger.warning("pull of %s: %s; retrying", pull.stream_id, error)
                interval = self._settings().heartbeat_interval_s
                if pull.upstream is None:
                    interval = min(interval, RETRY_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pull.wake.wait(), interval)
        except Exception:
            logger.exception("pull of %s failed", pull.stream_id)
            pull.failure = pull.failure or NotFound(f"stream {pull.stream_id} could not pull")
        finally:
            if self._pulls.get(pull.stream_id) is pull:
                del self._pulls[pull.stream_id]
            pull.failure = pull.failure or NotFound(f"stream {pull.stream_id} is not live")
            pull.ready.set()
            await self._stop(pull)

    async def _step(self, pull: Pull) -> bool:
        """One round of supervision; False when the pull should stop."""
        settings = self._settings()
        cluster = await self._registry.snapshot(pull.stream_id)
        stream, registered = cluster.stream(pull.stream_id), cluster.alive
        alive = self._reachable(registered)
        if stream is None or stream.state == "ended":
            if pull.ready.is_set():
                logger.info("stream %s ended; ending its players here", pull.stream_id)
            return False
        if stream.state == "live" and stream.origin_node not in registered:
            await self._registry.orphan_stream(pull.stream_id, stream.origin_node)
            stream = replace(stream, state="orphaned")
        snapshot = replace(Snapshot.of(cluster, stream, settings.node_group), alive=alive)
        if stream.state == "orphaned":
            receiving = self._engine.receiving(pull.stream_id)
            lost = pull.upstream is None and not receiving
            if not (lost and replans_orphan(settings.node_id, snapshot)):
                return await self._hold_orphan(pull, settings, receiving)
        pull.orphaned_since, pull.orphan_receiving = None, False
        await self._keep_secondary_role(pull, settings)
        if self._idle(pull, settings):
            return False
        if pull.secondary is not None:  # renewed just now, after the snapshot was read
            snapshot = replace(snapshot, secondary_origin=pull.secondary)
        decision = await self._plan(pull, snapshot, settings)
        if decision is None:
            if pull.upstream not in alive:
                pull.upstream = None  # retry soon: the engine holds the players meanwhile
            return True
        if isinstance(decision, IsOrigin):
            return False
        target = decision.node
        if pull.upstream is not None and keeps_upstream(
            pull.upstream, decision, alive, settings.node_group
        ):
            target = pull.upstream
        # The main origin cannot be planned around: it is pulled from even when unanswering.
        if target != pull.upstream:
            async with self._leased(pull):
                pulled = await self._pull_from(pull, registered[target])
            if not pulled:
                return pull.ready.is_set() or pull.failed_attempts < FIRST_PULL_ATTEMPTS
        assert pull.upstream is not None
        await self._registry.record_pull(
            pull.stream_id,
            settings.node_id,
            pull.upstream,
            players=self._engine.players(pull.stream_id),
        )
        return True

    async def _hold_orphan(self, pull: Pull, settings: Settings, receiving: bool) -> bool:
        """Hold the players of a stream whose main origin is lost, for the grace period.

        The registry's word is not enough to end a stream: a main origin cut off
        from the registry alone still sends, and while its media arrives here the
        grace period does not start and a secondary origin keeps renewing its term
        (it still serves its region). ``receiving``: media of it arrived here in the
        last two seconds.
        """
        if not pull.ready.is_set():
            pull.failure = NotFound(f"stream {pull.stream_id} lost its main origin")
            return False
        if receiving:
            if not pull.orphan_receiving:
                logger.warning(
                    "main origin of %s is gone from the registry but its media still"
                    " arrives; serving its players",
                    pull.stream_id,
                )
            pull.orphaned_since, pull.orphan_receiving = None, True
            await self._keep_secondary_role(pull, settings)
            return True
        pull.orphan_receiving = False
        now = time.monotonic()
        if pull.orphaned_since is None:
            pull.orphaned_since = now
            logger.warning(
                "main origin of %s lost; holding its players for %.0f s",
                pull.stream_id,
                settings.origin_grace_s,
            )
        if now - pull.orphaned_since >= settings.origin_grace_s:
            logger.info("stream %s was not published again; ending its players", pull.stream_id)
            return False
        return True

    async def _keep_secondary_role(self, pull: Pull, settings: Settings) -> None:
        """Renew our secondary-origin claim, or give it up if we left its region or lost it."""
        held = pull.secondary
        if held is None:
            return
        if held.node_group != settings.node_group:
            await self._registry.release_secondary_origin(
                pull.stream_id, held.node_group, settings.node_id, held.epoch
            )
            logger.info(
                "handed over the secondary origin of %s in %s (this node moved to %s)",
                pull.stream_id,
                held.node_group,
                settings.node_group,
            )
            pull.secondary = None
            return
        await self._renew_secondary_role(pull, held, settings)

    async def _renew_secondary_role(
        self, pull: Pull, held: SecondaryOrigin, settings: Settings
    ) -> None:
        """Extend ``held``'s lease; if it was fenced out, give the role up and re-plan."""
        renewed = await self._registry.renew_secondary_origin(
            pull.stream_id,
            held.node_group,
            settings.node_id,
            held.epoch,
            settings.node_dead_timeout_s,
        )
        if not renewed and pull.secondary is held:
            logger.warning(
                "lost the secondary origin of %s in %s (epoch %d); re-planning",
                pull.stream_id,
                held.node_group,
                held.epoch,
            )
            pull.secondary = None
            pull.wake.set()

    @contextlib.asynccontextmanager
    async def _leased(self, pull: Pull) -> AsyncIterator[None]:
        """Keep our secondary-origin claim renewed each heartbeat while the body runs.

        A pull's negotiation is bounded by ``EXCHANGE_TIMEOUT_S``, longer than a lease
        (``cluster.nodeDeadTimeoutMs``), and on a loaded node it can take that long:
        the claim just taken would lapse under its live holder, and another node of
        the region would take the role over, a second failover for nothing. The
        renewal in flight when the body ends is let finish, not cancelled.
        """
        done = asyncio.Event()

        async def renew() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), self._settings().heartbeat_interval_s)
                held, settings = pull.secondary, self._settings()
                if done.is_set() or held is None or held.node_group != settings.node_group:
                    return
                try:
                    await self._renew_secondary_role(pull, held, settings)
                except RegistryUnavailable as error:
                    logger.warning(
                        "could not renew the secondary origin of %s: %s", pull.stream_id, error
                    )

        task = asyncio.create_task(renew(), name=f"renew the claim on {pull.stream_id}")
        try:
            yield
        finally:
            done.set()
            await task

    def _idle(self, pull: Pull, settings: Settings) -> bool:
        """True once nobody has played or pulled the stream here for the idle timeout."""
        if not pull.ready.is_set() or pull.waiters:
            return False
        watched = self._engine.players(pull.stream_id) + self._engine.downstreams(pull.stream_id)
        if watched:
            pull.idle_since = None
            return False
        now = time.monotonic()
        pull.idle_since = pull.idle_since or now
        if now - pull.idle_since < settings.idle_pull_timeout_s:
            return False
        logger.info("nobody watches %s here; stopping its pull", pull.stream_id)
        return True

    async def _plan(
        self, pull: Pull, snapshot: Snapshot, settings: Settings
    ) -> Upstream | IsOrigin | None:
        """Where to pull from now; None while nobody can hold the region's secondary origin."""
        me, group = settings.node_id, settings.node_group
        decision = plan(me, group, snapshot, settings.max_downstreams)
        if not isinstance(decision, ClaimSecondary):
            return decision
        if holds_on(pull.upstream, snapshot, group):
            assert pull.upstream is not None
            return Upstream(pull.upstream)
        held = snapshot.secondary_origin
        unanswering = (
            held
            if held is not None
            and (held.node_id in self._unanswered or held.node_id in self._refused)
            else None
        )
        claim = await self._registry.claim_secondary_origin(
            pull.stream_id, group, me, settings.node_dead_timeout_s, take_over=unanswering
        )
        if claim.won:
            pull.secondary = claim.holder
            logger.info(
                "claimed the secondary origin of %s in %s (epoch %d); pulling from %s",
                pull.stream_id,
                group,
                claim.holder.epoch,
                snapshot.stream.origin_node,
            )
        after = plan_after_claim(me, group, snapshot, claim.holder, settings.max_downstreams)
        if isinstance(after, WaitForLease):
            logger.info(
                "the secondary origin of %s in %s is still leased to %s, which is gone; "
                "waiting for the lease to run out",
                pull.stream_id,
                group,
                after.holder,
            )
            return None
        return after

    async def _pull_from(self, pull: Pull, upstream: NodeRecord) -> bool:
        """Pull from ``upstream``; False (and logged) when the attempt failed."""
        settings = self._settings()
        url = upstream.internal_url + internal_pull_path(pull.app, pull.stream_id)
        client: WhipClient | None = None
        try:
            client = WhipClient(
                url,
                lambda: sign_pull_token(settings.cluster_secret, settings.node_id, pull.stream_id),
                NODE_CALL_TIMEOUT,
                verify=self._verify,
            )
            await self._engine.pull(pull.stream_id, _bounded(client.exchange))
        except (ClusterError, MediaError, httpx.HTTPError, TimeoutError) as error:
            if client is not None:
                await client.close()
            pull.failed_attempts += 1
            if isinstance(error, httpx.TransportError | TimeoutError):
                self._unanswering(upstream.id)
            if tls_failure(error) is not None:
                self._refused[upstream.id] = time.monotonic() + REFUSED_FOR_S
            reason = _failure_reason(error, upstream.internal_url)
            logger.warning("could not pull %s from %s: %s", pull.stream_id, upstream.id, reason)
            pull.failure = UpstreamFailed(
                f"could not pull {pull.stream_id} from {upstream.id}: {reason}"
            )
            return False
        previous, pull.client = pull.client, client
        if previous is not None:
            self._close_later(previous)
        pull.upstream = upstream.id
        pull.failed_attempts = 0
        pull.failure = None
        pull.ready.set()
        logger.info("pulling %s from %s (%s)", pull.stream_id, upstream.id, upstream.node_group)
        return True

    def _close_later(self, client: WhipClient) -> None:
        """End the session with an upstream we left, without waiting for it.

        That upstream is often the one that failed: a frozen node accepts the DELETE's
        connection and answers nothing, and waiting out its deadline (seconds) would hold
        up the pull's next steps, among them the renewal of a secondary-origin claim just
        taken, whose lease could lapse meanwhile.
        """
        task = asyncio.create_task(client.close(), name=f"close the pull from {client.endpoint}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _stop(self, pull: Pull) -> None:
        """Give everything back: players, the upstream session, the pull edge, the claim."""
        settings = self._settings()
        with contextlib.suppress(MediaError):
            if self._engine.has_stream(pull.stream_id) and not pull.handed_over:
                await self._engine.end_stream(pull.stream_id)
        if pull.client is not None:
            await pull.client.close()
        try:
            await self._registry.remove_pull(pull.stream_id, settings.node_id)
            if pull.secondary is not None:
                await self._registry.release_secondary_origin(
                    pull.stream_id,
                    pull.secondary.node_group,
                    settings.node_id,
                    pull.secondary.epoch,
                )
        except RegistryUnavailable as error:
            logger.warning("could not clear the pull of %s: %s", pull.stream_id, error)


def _failure_reason(error: BaseException, url: str) -> str:
    """Why a pull attempt failed, in words; TLS failures name the URL and what did not verify.

    A node whose certificate does not verify is refused like one that does not
    answer (a lost upstream). One that refuses *our* certificate (mutual TLS)
    cannot say so over TLS 1.3: asyncio closes the connection without sending
    the alert, so we see only a closed connection, and its own log says why.
    """
    tls_error = tls_failure(error)
    if tls_error is not None:
        return f"{url} refused: {refusal(tls_error)}"
    text = str(error) or type(error).__name__
    if url.startswith("https://") and isinstance(
        error, httpx.ReadError | httpx.RemoteProtocolError
    ):
        return (
            f"{url} closed the connection ({text}); a node that refuses this node's TLS "
            "certificate does that, and its log says why"
        )
    return text


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Let ``tasks`` end on their own for ``CLOSE_TIMEOUT_S``, then cancel the late ones."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)


def _bounded(exchange: Exchange) -> Exchange:
    """``exchange`` with a deadline on the whole of it, not only on each HTTP phase."""

    async def bounded(offer_sdp: str) -> str:
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            return await exchange(offer_sdp)

    return bounded
