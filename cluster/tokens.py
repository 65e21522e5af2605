"""Tokens: short-lived cluster tokens that let one node pull a stream from another, and the
JWT stream tokens of Ant Media that let a publisher or player in.

A pulling node signs ``{iss: its node id, sub: stream id, aud: tierstream-pull,
exp: now + 30 s}`` with ``cluster.secret`` (HS256); the upstream node checks the
signature, the audience, the expiry and that the token names the stream asked
for. A player cannot pull as a node, and a leaked token is useless for other
streams and within a minute: a token whose lifetime (``exp - iat``) is over 30 s
is refused, whoever signed it, and so is one whose issuer is not a node name.
"""

from __future__ import annotations

import re
import time
from typing import Literal

import jwt

from cluster.errors import Forbidden, Unauthorized
from cluster.types import NodeId

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


StreamTokenType = Literal["publish", "play"]


def sign_stream_token(secret: str, stream_id: str, kind: StreamTokenType, expires_at: int) -> str:
    """An Ant Media JWT stream token: ``{streamId, type, exp}`` signed HS256 with the app's key."""
    claims = {"streamId": stream_id, "type": kind, "exp": expires_at}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_stream_token(secret: str, token: str, stream_id: str, kind: StreamTokenType) -> None:
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
