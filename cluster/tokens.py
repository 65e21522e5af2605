"""Tokens: short-lived cluster tokens that let one node pull a stream from another, redirect
tickets, and the JWT stream tokens of Ant Media that let a publisher or player in.

A pulling node signs ``{iss: its node id, sub: stream id, aud: tierstream-pull,
exp: now + 30 s}`` with ``cluster.secret`` (HS256); the upstream node checks the
signature, the audience, the expiry and that the token names the stream asked
for. A player cannot pull as a node, and a leaked token is useless for other
streams and within a minute: a token whose lifetime (``exp - iat``) is over 30 s
is refused, whoever signed it, and so is one whose issuer is not a node name.

A redirect ticket (``aud: tierstream-ticket``) rides in the ``Location`` of a
307: it names the node it sends the client to, the app, stream and kind, and
whether the access checks and a reservation were done, so the target serves the
request as decided and never redirects it again. A ticket opens one session:
its target remembers it (``SpentTickets``) until it expires. Each kind of token
opens only its own door: the audiences differ, and a stream token has none.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import jwt

from cluster.errors import Forbidden, Unauthorized
from cluster.types import NodeId, SessionKind

PULL_AUDIENCE = "tierstream-pull"
LIFETIME_S = 30
LEEWAY_S = 5
"""Clock skew tolerated between nodes; leases use the registry's clock, tokens cannot."""
NODE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
"""What ``server.name`` allows: a token naming anything else is not from one of our nodes."""
SHOWN_CHARS = 64


def sign_pull_token(secret: str, node_id: NodeId, stream_id: str) -> str:
    if not secret:
        raise Forbidden("cluster.secret is not set: this node cannot pull from other nodes")
    now = int(time.time())
    claims = {
        "iss": node_id,
        "sub": stream_id,
        "aud": PULL_AUDIENCE,
        "iat": now,
        "exp": now + LIFETIME_S,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_pull_token(secret: str, authorization: str, stream_id: str) -> NodeId:
    """The pulling node's id, from an ``Authorization: Bearer <token>`` header value."""
    if not secret:
        raise Forbidden("cluster.secret is not set: this node serves no pulls")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a pull needs 'Authorization: Bearer <cluster token>'")
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=["HS256"],
            audience=PULL_AUDIENCE,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the cluster token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"the cluster token is not valid: {error}") from None
    lifetime = claims.get("exp", 0) - claims.get("iat", 0)
    if not isinstance(lifetime, int) or lifetime > LIFETIME_S:
        raise Unauthorized(f"the cluster token's lifetime is over {LIFETIME_S} s")
    issuer, subject = claims["iss"], claims["sub"]
    if not isinstance(issuer, str) or not NODE_NAME.fullmatch(issuer):
        raise Unauthorized(f"the cluster token names no node: {_shown(issuer)}")
    if subject != stream_id:
        raise Forbidden(f"the cluster token is for stream {_shown(subject)}, not {stream_id}")
    return NodeId(issuer)


def _shown(value: object) -> str:
    """An untrusted claim as messages quote it: short, whatever its length."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def sign_stream_token(secret: str, stream_id: str, kind: SessionKind, expires_at: int) -> str:
    """An Ant Media JWT stream token: ``{streamId, type, exp}`` signed HS256 with the app's key."""
    claims = {"streamId": stream_id, "type": kind, "exp": expires_at}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_stream_token(secret: str, token: str, stream_id: str, kind: SessionKind) -> None:
    """Check an Ant Media JWT stream token for ``stream_id`` and ``kind``.

    ``Unauthorized`` for a token that does not verify or has expired (Ant Media
    requires ``exp``), ``Forbidden`` for a valid one of another stream or type. A
    cluster token never passes, even signed with the same secret: it carries an
    audience and no ``streamId``/``type``.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=LEEWAY_S,
            options={"require": ["exp", "streamId", "type"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the stream token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"the stream token is not valid: {error}") from None
    if claims["streamId"] != stream_id:
        raise Forbidden(f"the stream token is for stream {claims['streamId']}, not {stream_id}")
    if claims["type"] != kind:
        raise Forbidden(f"the stream token is for {claims['type']}, not {kind}")


TICKET_AUDIENCE = "tierstream-ticket"
TICKET_LIFETIME_S = 15
"""Long enough for a browser's preflight and POST to the target; a redirect is followed at once."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a redirecting node decided for one client, so the target neither re-decides nor
    asks for the ``Authorization`` a browser drops on a cross-origin redirect."""

    decided_by: NodeId
    target: NodeId
    app: str
    stream_id: str
    kind: SessionKind
    access_checked: bool
    """The deciding node ran the stream's access checks (token, one-time token) already."""
    reserved: bool
    """The target's registry reservation was taken for this client."""


def sign_ticket(secret: str, ticket: Ticket) -> str:
    if not secret:
        raise Forbidden("cluster.secret is not set: this node cannot redirect to other nodes")
    now = int(time.time())
    claims = {
        "iss": ticket.decided_by, "aud": TICKET_AUDIENCE, "node": ticket.target,
        "app": ticket.app, "sub": ticket.stream_id, "typ": ticket.kind,
        "acc": ticket.access_checked, "res": ticket.reserved,
        "iat": now, "exp": now + TICKET_LIFETIME_S, "jti": secrets.token_urlsafe(12),
    }  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


class SpentTickets:
    """The redirect tickets this node honoured, each until it expires.

    A ticket used twice would open a second session past the access checks its
    deciding node ran once (a one-time token's second use), and its second
    arrival would settle a reservation another client holds. Tickets name their
    target, so the target's own memory is the whole record: one entry per
    ticket, kept no longer than its lifetime (and the clock leeway).
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        """Ticket id -> when it can be forgotten; in signing order, so the oldest come first."""

    def spend(self, ticket_id: str, expires_at: float) -> None:
        """Record a ticket's use; ``Forbidden`` if it was used already."""
        now = time.time()
        while self._until and next(iter(self._until.values())) < now:
            del self._until[next(iter(self._until))]
        if ticket_id in self._until:
            raise Forbidden("the redirect ticket was used already; start again at any node")
        self._until[ticket_id] = expires_at + LEEWAY_S

    def __len__(self) -> int:
        return len(self._until)


def verify_ticket(
    secret: str,
    token: str,
    me: NodeId,
    app: str,
    stream_id: str,
    kind: SessionKind,
    spent: SpentTickets,
) -> Ticket:
    """The ticket, if it is genuine, unexpired, for this node and for exactly this request,
    and not used before (it is ``spent`` from now on)."""
    if not secret:
        raise Forbidden("cluster.secret is not set: this node honours no redirect tickets")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=TICKET_AUDIENCE, leeway=LEEWAY_S,
            options={"require": ["exp", "iss", "sub", "aud", "node", "typ", "app", "jti"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the redirect ticket has expired; start again at any node") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"the redirect ticket is not valid: {error}") from None
    if claims["node"] != me:
        raise Forbidden(f"the redirect ticket is for node {claims['node']}, not {me}")
    if (claims["app"], claims["sub"], claims["typ"]) != (app, stream_id, kind):
        raise Forbidden(
            f"the redirect ticket is for {claims['typ']} of {claims['app']}/{claims['sub']}"
        )
    spent.spend(str(claims["jti"]), float(claims["exp"]))
    return Ticket(
        decided_by=NodeId(str(claims["iss"])),
        target=me,
        app=app,
        stream_id=stream_id,
        kind=kind,
        access_checked=bool(claims.get("acc")),
        reserved=bool(claims.get("res")),
    )
