"""Whether this node should be sent new work: what ``/readyz`` answers, from memory.

DNS health checks and Kubernetes poll readiness every few seconds, so it is a
pure decision over what the node already holds (its state, how long since the
registry last heard it, its load against its limits) and costs microseconds.
"Full" has hysteresis: a node becomes full when any load reaches its limit and
ready again only once every load is under ``resume_percent`` of its limit, so a
node hovering at its limit does not flap in and out of DNS answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cluster.types import NodeCapacity, NodeLoad, NodeState

ReadyStatus = Literal["accepting", "draining", "full", "stale"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` is the one word health checks match; only "accepting" means ready."""

    status: ReadyStatus
    reason: str

    @property
    def ready(self) -> bool:
        return self.status == "accepting"


def load_fraction(load: NodeLoad, capacity: NodeCapacity, cpu_limit_percent: int) -> float:
    """The tightest of players, outgoing bitrate and CPU, each as a fraction of its limit."""
    return max(
        load.players / capacity.max_players,
        load.bitrate_out_kbps / capacity.max_bitrate_kbps,
        load.cpu * 100 / cpu_limit_percent,
    )


class Readiness:
    """Remembers whether the node was full, so leaving "full" needs a margin below the limit."""

    def __init__(self) -> None:
        self._full = False

    def check(
        self,
        state: NodeState,
        view_age_s: float,
        stale_after_s: float,
        load: NodeLoad,
        capacity: NodeCapacity,
        cpu_limit_percent: int,
        resume_percent: int,
    ) -> Verdict:
        """``view_age_s``: seconds since the cluster view was last read (infinite: never)."""
        used = load_fraction(load, capacity, cpu_limit_percent)
        if self._full:
            self._full = used >= resume_percent / 100
        else:
            self._full = used >= 1.0
        if state == "draining":
            return Verdict("draining", "the node is draining and takes no new work")
        if view_age_s > stale_after_s:
            shown = "never" if view_age_s == float("inf") else f"{view_age_s:.1f} s ago"
            return Verdict(
                "stale", f"the registry was last read {shown} (limit {stale_after_s:.1f} s)"
            )  # fmt: skip
        if self._full:
            return Verdict(
                "full",
                f"load at {used * 100:.0f}% of the tightest limit "
                f"(ready again under {resume_percent}%)",
            )
        return Verdict("accepting", f"load at {used * 100:.0f}% of the tightest limit")
