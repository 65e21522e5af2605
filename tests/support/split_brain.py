"""The split-brain checker: replays the registry's history of secondary-origin terms.

A region has split brain for a stream when two nodes hold its secondary origin at
once. The registry writes every change of a term to ``secondary_origin_history`` in
the transaction that made it; this replays those rows per (stream, region) and names
every moment the rule broke:

- one epoch is held by one node (a second node under the same epoch is split brain);
- epochs only grow while the slot lives (a stream that ended starts again at epoch 1);
- a term by another node begins only once the lease before it ran out, was released
  or cleared: a claim whose ``previous_lease_expires_at`` is after its own ``at``
  overlaps the lease of the node before it. A ``taken_over`` claim is the one
  exception: it fences out, at its moment, the exact term its claimer saw stop
  answering (the old holder's renewals fail from then on);
- a term ends (``released``, ``cleared``) only as the term that held the slot.

``assert_no_split_brain(registry)`` is what tests call after a fault; ``split_brains``
takes the rows themselves, so the checker's own tests can hand it fabricated ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cluster.registry import Registry
from cluster.types import NodeGroup, NodeId, SecondaryOriginChange, StreamId

_BEGINS = ("claimed", "taken_over")


@dataclass
class _Slot:
    """One (stream, region) as replayed so far."""

    holder: SecondaryOriginChange | None = None
    """The row that began the current term; None before any, or after the stream ended."""
    epochs: dict[int, NodeId] = field(default_factory=dict)
    """Who held each epoch since the slot (re)started."""


def split_brains(history: Iterable[SecondaryOriginChange]) -> list[str]:
    """Every breach of the one-holder rule in ``history`` (rows in the order written)."""
    slots: dict[tuple[StreamId, NodeGroup], _Slot] = {}
    found: list[str] = []
    for row in history:
        where = f"{row.stream_id} in {row.node_group}"
        slot = slots.setdefault((row.stream_id, row.node_group), _Slot())
        if row.change == "ended":
            slots[(row.stream_id, row.node_group)] = _Slot()
            continue
        held = slot.holder
        if row.change in _BEGINS:
            if held is not None and (held.node_id, held.epoch) == (row.node_id, row.epoch):
                continue  # the holder claimed again while its term ran: a renewal
            owner = slot.epochs.setdefault(row.epoch, row.node_id)
            if owner != row.node_id:
                found.append(
                    f"{where}: epoch {row.epoch} held by {owner} and by {row.node_id} "
                    f"(at {row.at:%H:%M:%S.%f})"
                )
            if held is not None and row.epoch <= held.epoch:
                found.append(
                    f"{where}: {row.node_id} began epoch {row.epoch} after epoch {held.epoch} "
                    f"of {held.node_id} (at {row.at:%H:%M:%S.%f})"
                )
            overlap = (
                held is not None
                and held.node_id != row.node_id
                and row.change == "claimed"
                and row.previous_lease_expires_at is not None
                and row.previous_lease_expires_at > row.at
            )
            if overlap:
                assert held is not None and row.previous_lease_expires_at is not None
                found.append(
                    f"{where}: {row.node_id} claimed epoch {row.epoch} at "
                    f"{row.at:%H:%M:%S.%f} while {held.node_id}'s lease of epoch {held.epoch} "
                    f"ran until {row.previous_lease_expires_at:%H:%M:%S.%f}"
                )
            slot.holder = row
        elif held is None or (held.node_id, held.epoch) != (row.node_id, row.epoch):
            holding = f"{held.node_id} (epoch {held.epoch})" if held is not None else "nobody"
            found.append(
                f"{where}: {row.node_id} {row.change} epoch {row.epoch} "
                f"while {holding} held the role (at {row.at:%H:%M:%S.%f})"
            )
    return found


async def assert_no_split_brain(registry: Registry, stream_id: StreamId | None = None) -> int:
    """Fail naming every split brain in the registry's history; how many rows it replayed."""
    history = await registry.secondary_origin_history(stream_id)
    found = split_brains(history)
    assert not found, "split brain in the registry's history:\n" + "\n".join(found)
    return len(history)
