"""Readiness: only a serving node, fresh in the registry and with room, says "accepting"."""

from __future__ import annotations

import pytest

from cluster.routing.readiness import Readiness, Verdict
from cluster.types import NodeCapacity, NodeLoad, NodeState

CAPACITY = NodeCapacity(cores=4, max_players=10, max_bitrate_kbps=10_000)
IDLE = NodeLoad()


def check(
    readiness: Readiness,
    load: NodeLoad = IDLE,
    state: NodeState = "serving",
    age: float = 0.5,
) -> Verdict:
    return readiness.check(state, age, 10.0, load, CAPACITY, 80, 90)


@pytest.mark.parametrize(
    ("load", "state", "age", "status"),
    [
        (NodeLoad(players=3), "serving", 0.5, "accepting"),
        (NodeLoad(), "draining", 0.5, "draining"),
        (NodeLoad(), "serving", float("inf"), "stale"),
        (NodeLoad(), "serving", 10.5, "stale"),
        (NodeLoad(players=10), "serving", 0.5, "full"),
        (NodeLoad(bitrate_out_kbps=10_000), "serving", 0.5, "full"),
        (NodeLoad(cpu=0.8), "serving", 0.5, "full"),
    ],
    ids=[
        "serving, fresh, with room",
        "draining",
        "never acknowledged by the registry",
        "registry silent past the staleness limit",
        "players at server.maxViewers",
        "outgoing bitrate at its limit",
        "CPU at server.cpu_limit",
    ],
)
def test_status(load: NodeLoad, state: NodeState, age: float, status: str) -> None:
    verdict = check(Readiness(), load, state, age)
    assert verdict.status == status
    assert verdict.ready == (status == "accepting")


def test_the_word_accepting_appears_only_when_ready() -> None:
    readiness = Readiness()
    for load, state, age in [
        (NodeLoad(players=10), "serving", 0.5),
        (NodeLoad(), "draining", 0.5),
        (NodeLoad(), "serving", 30.0),
    ]:
        verdict = check(readiness, load, state, age)  # type: ignore[arg-type]
        assert "accepting" not in verdict.status + verdict.reason


def test_full_has_hysteresis_down_to_the_resume_percent() -> None:
    readiness = Readiness()
    history = [check(readiness, NodeLoad(players=n)).status for n in (8, 9, 10, 9, 10, 9, 8)]
    assert history == ["accepting", "accepting", "full", "full", "full", "full", "accepting"]
