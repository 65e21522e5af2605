"""Tokens: short-lived cluster tokens that let one node pull a stream from another, and the
JWT stream tokens of Ant Media that let a publisher or player in.

A pulling node signs ``{iss: its node id, sub: stream id, aud: tierstream-pull,
exp: now + 30 s}`` with ``cluster.secret`` (HS256); the upstream node checks the
signature, the audience, the expiry and that the token names the stream asked
for. A player cannot pull as a node, and a leaked token is useless for other
streams and within a minute.
"""

from __future__ import annotations

import time
from typing import Literal

import jwt

from cluster.errors import Forbidden, Unauthorized
from cluster.types import NodeId

PULL_AUDIENCE = "tierstream-pull"
LIFETIME_S = 30
LEEWAY_S = 5
"""Clock skew tolerated between nodes; leases use the registry's clock, tokens cannot."""


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
            options={"require": ["exp", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the cluster token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"the cluster token is not valid: {error}") from None
    if claims["sub"] != stream_id:
        raise Forbidden(f"the cluster token is for stream {claims['sub']}, not {stream_id}")
    return NodeId(str(claims["iss"]))


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
