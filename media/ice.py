"""Which addresses and ICE servers our peer connections use: the one ICE knob.

aioice gathers a host candidate on every interface except 127.0.0.1, and aiortc
falls back to a public STUN server when given none. A node must advertise
exactly the addresses its configuration names (the public IP behind a 1:1 NAT,
or 127.0.0.1 in tests) and use only the ICE servers it names. Both the engine
and the test/bench clients build their peer connections here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from aioice import Candidate
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from media import aiortc_seam


def peer_connection(ice_servers: Sequence[str]) -> RTCPeerConnection:
    """A peer connection that uses only ``ice_servers`` (none means none, not Google's)."""
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])
    )


def restrict_host_candidates(pc: RTCPeerConnection, addresses: Sequence[str]) -> None:
    """Make every ICE transport of ``pc`` gather host candidates on ``addresses`` only."""
    named = tuple(addresses)
    for connection in aiortc_seam.ice_connections(pc):
        gather = connection.get_component_candidates
        if getattr(gather, "restricted_to", None) is not None:
            continue

        async def on_addresses(
            component: int, addresses: list[str], *args: Any, _gather: Any = gather, **kw: Any
        ) -> list[Candidate]:
            found: list[Candidate] = await _gather(component, list(named), *args, **kw)
            return found

        on_addresses.restricted_to = named  # type: ignore[attr-defined]
        connection.get_component_candidates = on_addresses  # type: ignore[method-assign]


async def describe(
    pc: RTCPeerConnection, kind: Literal["offer", "answer"], addresses: Sequence[str]
) -> str:
    """Create and set our local description, candidates gathered on ``addresses``."""
    restrict_host_candidates(pc, addresses)
    description: RTCSessionDescription = (
        await pc.createOffer() if kind == "offer" else await pc.createAnswer()
    )
    await pc.setLocalDescription(description)
    local = pc.localDescription
    assert local is not None
    return str(local.sdp)
