"""The media engine's configuration: one frozen object, read once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaConfig:
    """What the media engine needs from the node's configuration.

    ``candidate_addresses`` are the only host ICE candidates the node advertises
    (the public IP behind a 1:1 NAT, or 127.0.0.1 in tests); ``ice_servers`` are
    STUN/TURN URLs, none by default so that nothing leaves the configured
    addresses. Queue limits count encoded frames per player and per track. A
    session that has not connected ``connect_timeout_s`` after its offer or
    answer (a WHIP client that never trickled its candidates, a player that
    vanished) ends, so that it cannot hold a stream id. A pull that hears nothing
    at all from its upstream (no RTP, no RTCP) for ``upstream_silence_s`` is lost:
    a frozen upstream, or one on a machine that died, sends nothing, and ICE
    consent would take ~30 s to notice. Both ends of a pull send the other a
    keepalive packet each ``keepalive_interval_s``, media or not: downstream
    sessions, so that a node holding a stream without media (which would
    otherwise send only sender reports, up to 1.5 s apart) is not taken for dead
    and the silence that means death can be a fraction of a second (keep it
    several keepalive intervals long, so that a busy moment is not taken for
    death); pulls, so that the moment an upstream's process is gone its host
    answers the next one "port unreachable", and the pull is lost after only two
    keepalive intervals of silence.
    ``fanout_threads`` is how many threads send each frame to the players (the
    event loop hands each frame to them and goes on); 0 means one per core the
    process may run on. The threads are the process's, started by its first
    engine. While forwarding kept the event loop's thread, the fan-out threads or
    the cores they share ``busy_limit`` busy over the last second or more, new
    players are refused, and after a few such seconds the newest players are shed
    (``media.load``). At most ``handshake_slots`` players
    handshake at a time (from their offer to their connection); the others wait
    their turn for up to ``handshake_wait_s`` before they are refused
    (``media.admission``).
    """

    candidate_addresses: tuple[str, ...]
    ice_servers: tuple[str, ...] = ()
    play_queue_limit: int = 120
    keyframe_request_interval_s: float = 0.25
    connect_timeout_s: float = 30.0
    upstream_silence_s: float = 0.6
    keepalive_interval_s: float = 0.1
    fanout_threads: int = 0
    busy_limit: float = 0.9
    handshake_slots: int = 16
    handshake_wait_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.candidate_addresses:
            raise ValueError("candidate_addresses: name at least one address to advertise")
        if self.play_queue_limit < 2:
            raise ValueError(f"play_queue_limit: {self.play_queue_limit} is below 2")
        if not 0 < self.busy_limit <= 1:
            raise ValueError(f"busy_limit: {self.busy_limit} is not in (0, 1]")
        if self.handshake_slots < 1:
            raise ValueError(f"handshake_slots: {self.handshake_slots} is below 1")
        if self.handshake_wait_s < 0:
            raise ValueError(f"handshake_wait_s: {self.handshake_wait_s} is negative")
        if self.fanout_threads < 0:
            raise ValueError(f"fanout_threads: {self.fanout_threads} is negative")
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s: {self.connect_timeout_s} is not positive")
        if not 0 < self.keepalive_interval_s < self.upstream_silence_s / 2:
            raise ValueError(
                f"keepalive_interval_s: {self.keepalive_interval_s} must be positive and under "
                f"half of upstream_silence_s ({self.upstream_silence_s})"
            )
        if self.keyframe_request_interval_s <= 0:
            raise ValueError(
                f"keyframe_request_interval_s: {self.keyframe_request_interval_s} is not positive"
            )
