"""Redirect tickets: only a genuine, fresh ticket for this node and this request is honoured."""

from __future__ import annotations

import time

import jwt
import pytest

from cluster.errors import Forbidden, Unauthorized
from cluster.tokens import (
    LEEWAY_S,
    TICKET_AUDIENCE,
    SpentTickets,
    Ticket,
    sign_pull_token,
    sign_ticket,
    verify_ticket,
)
from cluster.types import NodeId

SECRET = "test-cluster-secret-0123456789abcdef"
TICKET = Ticket(NodeId("eu-1"), NodeId("us-1"), "LiveApp", "s1", "play", True, True)


def test_a_ticket_round_trips_for_its_target() -> None:
    token = sign_ticket(SECRET, TICKET)
    assert (
        verify_ticket(SECRET, token, NodeId("us-1"), "LiveApp", "s1", "play", SpentTickets())
        == TICKET
    )


@pytest.mark.parametrize(
    ("me", "app", "stream", "kind", "error", "words"),
    [
        ("ap-1", "LiveApp", "s1", "play", Forbidden, "for node us-1"),
        ("us-1", "LiveApp", "s2", "play", Forbidden, "for play of LiveApp/s1"),
        ("us-1", "LiveApp", "s1", "publish", Forbidden, "for play of LiveApp/s1"),
        ("us-1", "Other", "s1", "play", Forbidden, "for play of LiveApp/s1"),
    ],
    ids=["another node's ticket", "another stream", "another kind", "another app"],
)
def test_a_ticket_opens_only_its_own_request(
    me: str, app: str, stream: str, kind: str, error: type[Exception], words: str
) -> None:
    token = sign_ticket(SECRET, TICKET)
    with pytest.raises(error, match=words):
        verify_ticket(SECRET, token, NodeId(me), app, stream, kind, SpentTickets())  # type: ignore[arg-type]


def test_a_forged_ticket_is_refused() -> None:
    token = sign_ticket("another-secret-0123456789abcdef0123", TICKET)
    with pytest.raises(Unauthorized, match="not valid"):
        verify_ticket(SECRET, token, NodeId("us-1"), "LiveApp", "s1", "play", SpentTickets())


def test_an_expired_ticket_is_refused() -> None:
    claims = {"iss": "eu-1", "aud": TICKET_AUDIENCE, "node": "us-1", "app": "LiveApp",
              "sub": "s1", "typ": "play", "jti": "j1", "exp": int(time.time()) - 60}  # fmt: skip
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="expired"):
        verify_ticket(SECRET, token, NodeId("us-1"), "LiveApp", "s1", "play", SpentTickets())


def test_a_pull_token_is_no_ticket() -> None:
    token = sign_pull_token(SECRET, NodeId("us-1"), "s1")
    with pytest.raises(Unauthorized, match="not valid"):
        verify_ticket(SECRET, token, NodeId("us-1"), "LiveApp", "s1", "play", SpentTickets())


def test_garbage_is_refused() -> None:
    with pytest.raises(Unauthorized):
        verify_ticket(
            SECRET, "not.a.token", NodeId("us-1"), "LiveApp", "s1", "play", SpentTickets()
        )


def test_a_ticket_opens_one_session_only() -> None:
    spent = SpentTickets()
    token = sign_ticket(SECRET, TICKET)
    verify_ticket(SECRET, token, NodeId("us-1"), "LiveApp", "s1", "play", spent)
    with pytest.raises(Forbidden, match="used already"):
        verify_ticket(SECRET, token, NodeId("us-1"), "LiveApp", "s1", "play", spent)
    other = sign_ticket(SECRET, TICKET)  # the same decision again: another ticket
    assert verify_ticket(SECRET, other, NodeId("us-1"), "LiveApp", "s1", "play", spent) == TICKET


def test_spent_tickets_are_forgotten_once_they_expire() -> None:
    spent = SpentTickets()
    now = time.time()
    spent.spend("old", now - LEEWAY_S - 1)
    spent.spend("fresh", now + 15)
    spent.spend("newer", now + 15)
    assert len(spent) == 2
    with pytest.raises(Forbidden):
        spent.spend("fresh", now + 15)
