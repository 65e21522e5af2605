"""Short-lived tokens that let one node pull a stream from another.

A pulling node signs ``{iss: its node id, sub: stream id, aud: tierstream-pull,
exp: now + 30 s}`` with ``cluster.secret`` (HS256); the upstream node checks the
signature, the audience, the expiry and that the token names the stream asked
for. A player cannot pull as a node, and a leaked token is useless for other
streams and within a minute.
"""

from __future__ import annotations

import time

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
    claims = {"iss": node_id, "sub": stream_id, "aud": PULL_AUDIENCE, "iat": now,
              "exp": now + LIFETIME_S}  # fmt: skip
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
            token.strip(), secret, algorithms=["HS256"], audience=PULL_AUDIENCE,
            leeway=LEEWAY_S, options={"require": ["exp", "iss", "sub", "aud"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the cluster token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"the cluster token is not valid: {error}") from None
    if claims["sub"] != stream_id:
        raise Forbidden(f"the cluster token is for stream {claims['sub']}, not {stream_id}")
    return NodeId(str(claims["iss"]))
