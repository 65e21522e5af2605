"""Cluster tokens: what a node signs for a pull, and what an upstream refuses."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from cluster.errors import Forbidden, Unauthorized
from cluster.tokens import LIFETIME_S, PULL_AUDIENCE, sign_pull_token, verify_pull_token
from cluster.types import NodeId

SECRET = "a-cluster-secret-of-at-least-32-characters"


def bearer(**claims: Any) -> str:
    now = int(time.time())
    base = {"iss": "eu-1", "sub": "s1", "aud": PULL_AUDIENCE, "iat": now, "exp": now + LIFETIME_S}
    return "Bearer " + jwt.encode(base | claims, SECRET, algorithm="HS256")


def test_a_node_signs_what_an_upstream_accepts() -> None:
    token = sign_pull_token(SECRET, NodeId("us-2"), "s1")
    assert verify_pull_token(SECRET, f"Bearer {token}", "s1") == "us-2"


@pytest.mark.parametrize(
    ("issued", "expires"),
    [(0, 365 * 86400), (-3600, 60)],
    ids=["a year's lifetime", "an hour's lifetime, most of it spent"],
)
def test_a_token_that_lives_longer_than_a_pull_token_may_is_refused(
    issued: int, expires: int
) -> None:
    """Times are taken when the test runs, not when it is collected: the suite takes minutes."""
    now = int(time.time())
    token = bearer(iat=now + issued, exp=now + expires)
    with pytest.raises(Unauthorized, match=f"lifetime is over {LIFETIME_S} s"):
        verify_pull_token(SECRET, token, "s1")


def test_a_token_without_an_issue_time_is_refused() -> None:
    token = jwt.encode(
        {"iss": "eu-1", "sub": "s1", "aud": PULL_AUDIENCE, "exp": int(time.time()) + 10},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized, match="iat"):
        verify_pull_token(SECRET, f"Bearer {token}", "s1")


@pytest.mark.parametrize(
    "claims",
    [{"iss": "x" * 10_000}, {"iss": "eu 1\nFAKE LOG LINE"}],
    ids=["a 10 KB name", "a name with a newline"],
)
def test_a_token_naming_no_node_is_refused_with_a_short_message(claims: Any) -> None:
    with pytest.raises(Unauthorized, match="names no node") as raised:
        verify_pull_token(SECRET, bearer(**claims), "s1")
    assert len(str(raised.value)) < 120
    assert "\n" not in str(raised.value)


def test_a_token_for_another_stream_is_forbidden_and_quoted_short() -> None:
    with pytest.raises(Forbidden) as raised:
        verify_pull_token(SECRET, bearer(sub="y" * 10_000), "s1")
    assert len(str(raised.value)) < 120
