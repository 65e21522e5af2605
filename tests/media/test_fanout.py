"""The native fan-out on its own (``media._fanout``): real sockets, real SRTP.

What players receive is decrypted with pylibsrtp (aiortc's own binding of libsrtp),
so the header rewrite, our SRTP framing on OpenSSL's ciphers (key derivation, IV,
rollover counter, tag) and the key layout are checked against an independent
implementation, for each profile aiortc negotiates.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pylibsrtp
import pytest

from media import _fanout
from media.forwarder import mid_extension

CM_SHA1_80 = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
GCM_128 = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
GCM_256 = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM
KEY_LENGTHS = {CM_SHA1_80: 30, GCM_128: 28, GCM_256: 44}
VP8_CLOCK = 90000


class Player:
    """A UDP socket on 127.0.0.1 and the SRTP session that decrypts what reaches it."""

    def __init__(self, profile: int = CM_SHA1_80) -> None:
        self.key = os.urandom(KEY_LENGTHS[profile])
        self.profile = profile
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.socket.setblocking(False)
        self._srtp = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=self.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
            )
        )
        self._srtp_retransmits = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=self.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
            )
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()
        return host, port

    def packets(self, *, replayed: bool = False) -> list[bytes]:
        """Every packet waiting on the socket, decrypted."""
        session = self._srtp_retransmits if replayed else self._srtp
        out: list[bytes] = []
        while True:
            try:
                data = self.socket.recv(2048)
            except BlockingIOError:
                return out
            out.append(session.unprotect(data))

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def outbound() -> Iterator[socket.socket]:
    """The relay's side: one non-blocking UDP socket, as aioice's are."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def sender_for(player: Player, outbound: socket.socket) -> _fanout.Sender:
    return _fanout.Sender(player.profile, player.key, outbound.fileno(), player.address)


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    """(first byte, marker+payload type, sequence number, timestamp, SSRC)."""
    first, marked, seq, timestamp, ssrc = struct.unpack_from("!BBHII", packet)
    return first, marked, seq, timestamp, ssrc


def frame(n: int, keyframe: bool = False, epoch: int = 1, packets: int = 3) -> _fanout.Frame:
    payloads = [bytes([n % 256, k]) * (300 + k) for k in range(packets)]
    return _fanout.Frame(payloads, n * 3000, keyframe, epoch)


def wait_for(condition: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


@pytest.mark.parametrize(
    "profile", [CM_SHA1_80, GCM_128, GCM_256], ids=["AES-CM+HMAC", "AES-128-GCM", "AES-256-GCM"]
)
def test_players_get_their_own_headers_protected_by_their_own_keys(
    outbound: socket.socket, profile: int
) -> None:
    players = [Player(profile) for _ in range(3)]
    fanout = _fanout.Fanout()
    extension = mid_extension(4, "0")
    slots = [
        _fanout.Slot(sender_for(p, outbound), 0x1000 + i, 96 + i, extension, 65534, 7000, VP8_CLOCK)
        for i, p in enumerate(players)
    ]
    for slot in slots:
        fanout.add(slot, [])

    reports = [fanout.send(frame(1))]  # before the first keyframe: nothing goes out
    reports += [fanout.send(frame(2, keyframe=True)), fanout.flush()]
    sent, overflowed = map(sum, zip(*reports, strict=True))

    assert overflowed == 0 and sent > 3 * 3 * 300
    for i, player in enumerate(players):
        packets = player.packets()
        assert [header(p) for p in packets] == [
            (0x90, 96 + i, 65534, 7000, 0x1000 + i),
            (0x90, 96 + i, 65535, 7000, 0x1000 + i),
            (0x90, 0x80 | (96 + i), 0, 7000, 0x1000 + i),  # marker on the last, seq wraps
        ]
        for k, packet in enumerate(packets):
            assert packet[12 : 12 + len(extension)] == extension
            assert packet[12 + len(extension) :] == bytes([2, k]) * (300 + k)
        player.close()
    assert [(s.packets, s.octets, s.frames, s.sequence) for s in slots] == [(3, 1806, 1, 1)] * 3


def test_a_slot_without_extension_and_its_sender_report_counters(outbound: socket.socket) -> None:
    player = Player()
    fanout = _fanout.Fanout()
    slot = _fanout.Slot(sender_for(player, outbound), 42, 111, b"", 10, 480, 48000)
    fanout.add(slot, [])
    before = time.time()
    fanout.send(_fanout.Frame([b"opus"], 960, True, 1))
    fanout.flush()

    (packet,) = player.packets()
    assert header(packet) == (0x80, 0x80 | 111, 10, 480, 42) and packet[12:] == b"opus"
    seconds = (slot.last_sent_ntp >> 32) - 2208988800
    assert before - 1 <= seconds <= time.time() + 1
    assert (slot.last_timestamp, slot.packets, slot.octets) == (480, 1, 4)
    player.close()


def test_a_joining_slot_starts_at_the_cached_keyframe(outbound: socket.socket) -> None:
    player = Player()
    fanout = _fanout.Fanout()
    slot = _fanout.Slot(sender_for(player, outbound), 1, 96, b"", 0, 0, VP8_CLOCK)

    fanout.add(slot, [frame(0), frame(1, keyframe=True), frame(2)])

    packets = player.packets()
    assert [p[12:14] for p in packets] == [bytes([n, k]) for n in (1, 2) for k in range(3)]
    assert [header(p)[3] for p in packets] == [0] * 3 + [3000] * 3
    player.close()


def test_sequence_and_timestamps_continue_across_a_new_upstream(outbound: socket.socket) -> None:
    player = Player()
    fanout = _fanout.Fanout()
    slot = _fanout.Slot(sender_for(player, outbound), 1, 96, b"", 500, 1000, VP8_CLOCK)
    fanout.add(slot, [])
    fanout.send(frame(1, keyframe=True, epoch=1))
    fanout.send(frame(2, epoch=1))
    fanout.flush()
    old = player.packets()

    time.sleep(0.2)
    fanout.wait_for_keyframe()
    fanout.send(frame(900, epoch=2))  # the new upstream's first frame is no keyframe
    fanout.send(frame(50, keyframe=True, epoch=2))  # and its clock is elsewhere
    fanout.send(frame(51, epoch=2))
    fanout.flush()
    new = player.packets()

    assert [header(p)[2] for p in old + new] == list(range(500, 512))
    last_old, first_new = header(old[-1])[3], header(new[0])[3]
    assert last_old == 1000 + 3000
    assert abs((first_new - last_old) - 0.2 * VP8_CLOCK) < 0.1 * VP8_CLOCK
    assert header(new[-1])[3] - first_new == 3000
    assert new[0][12] == 50
    player.close()


def test_a_nacked_packet_is_sent_again_byte_for_byte(outbound: socket.socket) -> None:
    player = Player()
    fanout = _fanout.Fanout()
    slot = _fanout.Slot(sender_for(player, outbound), 1, 96, b"", 100, 0, VP8_CLOCK)
    fanout.add(slot, [])
    fanout.send(frame(1, keyframe=True))
    fanout.flush()
    first = player.packets()

    assert slot.retransmit([101, 102, 99, 5000]) == []  # the slot sends them itself
    again = player.packets(replayed=True)

    assert again == first[1:]
    player.close()


@pytest.mark.parametrize("profile", [CM_SHA1_80, GCM_128], ids=["AES-CM+HMAC", "AES-GCM"])
def test_a_retransmission_keeps_the_rollover_counter_it_was_first_sent_in(
    outbound: socket.socket, profile: int
) -> None:
    player = Player(profile)
    fanout = _fanout.Fanout()
    slot = _fanout.Slot(sender_for(player, outbound), 1, 96, b"", 65534, 0, VP8_CLOCK)
    fanout.add(slot, [])
    fanout.send(frame(1, keyframe=True))  # 65534, 65535, then 0: the counter rolls over
    fanout.flush()
    first = player.packets()
    fanout.send(frame(2))
    fanout.flush()
    assert [header(p)[2] for p in player.packets()] == [1, 2, 3]

    assert slot.retransmit([65535]) == []
    # A receiver that has not seen it takes rollover counter 0 for 65535: only a packet
    # protected in that counter, not the current one, decrypts.
    assert player.packets(replayed=True) == [first[1]]
    player.close()


def test_a_sender_without_socket_hands_protected_packets_back() -> None:
    player = Player(GCM_128)
    sender = _fanout.Sender(player.profile, player.key, -1, None)
    slot = _fanout.Slot(sender, 9, 96, b"", 7, 0, VP8_CLOCK)
    with pytest.raises(ValueError, match="no socket"):
        _fanout.Fanout().add(slot, [])

    packets = slot.protect(frame(1, keyframe=True)) + slot.retransmit([8])
    assert len(packets) == 4
    assert [header(p)[2] for p in packets] == [7, 8, 9, 8]
    player.close()


def test_a_player_whose_socket_is_full_skips_to_the_next_keyframe_alone(
    outbound: socket.socket,
) -> None:
    full, reading = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # nobody reads ``full``
    full.setblocking(False)
    full.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    player = Player()
    fanout = _fanout.Fanout()
    stalled = _fanout.Slot(
        _fanout.Sender(CM_SHA1_80, player.key, full.fileno(), None), 1, 96, b"", 0, 0, VP8_CLOCK
    )
    healthy = _fanout.Slot(sender_for(player, outbound), 2, 96, b"", 0, 0, VP8_CLOCK)
    fanout.add(stalled, [])
    fanout.add(healthy, [])

    results = [fanout.send(frame(n, keyframe=n == 0, packets=4)) for n in range(40)]
    results.append(fanout.flush())

    assert sum(overflowed for _, overflowed in results) == 1, "full once, then waiting"
    assert stalled.waiting_for_keyframe and stalled.overflows == 1
    assert len(player.packets()) == 40 * 4, "the other player got everything"
    reading.setblocking(False)
    while True:
        try:
            reading.recv(2048)
        except BlockingIOError:
            break
    fanout.send(frame(40, keyframe=True))
    fanout.flush()
    assert not stalled.waiting_for_keyframe
    full.close()
    reading.close()
    player.close()


def test_a_player_leaving_mid_frame_gets_nothing_once_removed(outbound: socket.socket) -> None:
    players = [Player() for _ in range(64)]
    fanout = _fanout.Fanout()
    slots = [
        _fanout.Slot(sender_for(p, outbound), i, 96, b"", 0, 0, VP8_CLOCK)
        for i, p in enumerate(players)
    ]
    for slot in slots:
        fanout.add(slot, [])
    fanout.send(frame(0, keyframe=True, packets=40))
    running = True

    def send_frames() -> None:  # another thread, sending without the GIL meanwhile
        n = 1
        while running:
            fanout.send(frame(n, packets=40))
            n += 1

    thread = threading.Thread(target=send_frames)
    thread.start()
    try:
        wait_for(lambda: slots[0].frames > 3)
        leaving = slots[:32]
        for slot in leaving:
            assert fanout.remove(slot)
        counts = [s.packets for s in leaving]
        time.sleep(0.1)
        assert [s.packets for s in leaving] == counts, "removed: nothing more is built"
        assert all(s.frames > 3 for s in slots[32:])
    finally:
        running = False
        thread.join(5)
    assert len(fanout) == 32 and not fanout.remove(slots[0])
    for player in players:
        player.close()


def test_a_closed_sender_sends_nothing_more(outbound: socket.socket) -> None:
    player = Player()
    sender = sender_for(player, outbound)
    fanout = _fanout.Fanout()
    fanout.add(_fanout.Slot(sender, 1, 96, b"", 0, 0, VP8_CLOCK), [])
    sender.close()
    reports = [fanout.send(frame(0, keyframe=True)), fanout.flush()]
    sent, overflowed = map(sum, zip(*reports, strict=True))
    assert (sent, overflowed, player.packets()) == (0, 0, [])
    player.close()


def test_bad_arguments_are_refused_with_a_reason(outbound: socket.socket) -> None:
    with pytest.raises(ValueError, match="needs a 30-byte key"):
        _fanout.Sender(CM_SHA1_80, b"short", -1, None)
    with pytest.raises(ValueError, match="profile 2 is not supported"):
        _fanout.Sender(2, bytes(30), -1, None)
    with pytest.raises(ValueError, match="not an IP address"):
        _fanout.Sender(CM_SHA1_80, bytes(30), outbound.fileno(), ("example.org", 1))
    sender = _fanout.Sender(CM_SHA1_80, bytes(30), -1, None)
    with pytest.raises(ValueError, match="whole 32-bit words"):
        _fanout.Slot(sender, 1, 96, b"abc", 0, 0, VP8_CLOCK)
    with pytest.raises(ValueError, match="too large"):
        _fanout.Frame([bytes(1500)], 0, True, 1)


def test_the_fanout_threads_follow_the_process_affinity() -> None:
    assert _fanout.usable_cores() == len(os.sched_getaffinity(0))
    _fanout.start_workers()
    assert _fanout.workers() >= 1


def test_the_caller_hands_frames_over_and_the_workers_send_them(outbound: socket.socket) -> None:
    """The event loop's thread must not spend its time on the fan-out: its CPU for
    queueing frames is a small fraction of what the workers spend sending them."""
    players = [Player() for _ in range(64)]
    fanout = _fanout.Fanout()
    for i, player in enumerate(players):
        fanout.add(_fanout.Slot(sender_for(player, outbound), i, 96, b"", 0, 0, VP8_CLOCK), [])
    frames = [frame(n, keyframe=n == 0, packets=10) for n in range(30)]
    workers_before, caller_before = _fanout.cpu_time(), time.thread_time()

    for f in frames:
        fanout.send(f)
    caller = time.thread_time() - caller_before
    fanout.flush()

    workers = _fanout.cpu_time() - workers_before
    assert sum(len(p.packets()) for p in players) == 64 * 30 * 10
    assert caller < workers / 5, (
        f"the caller used {caller * 1e3:.1f} ms, the workers {workers * 1e3:.1f}"
    )
    for player in players:
        player.close()


def test_equal_sized_packets_of_a_frame_arrive_as_separate_datagrams(
    outbound: socket.socket,
) -> None:
    """The packetisers cut frames into equal payloads and a shorter last one: such a frame
    leaves in one UDP GSO send where the kernel offers it, and players still receive one
    datagram per packet, in order."""
    player = Player()
    fanout = _fanout.Fanout()
    fanout.add(_fanout.Slot(sender_for(player, outbound), 1, 96, b"", 0, 0, VP8_CLOCK), [])
    payloads = [bytes([k]) * 1300 for k in range(8)] + [b"end"]

    fanout.send(_fanout.Frame(payloads, 0, True, 1))
    fanout.flush()

    packets = player.packets()
    assert [p[12:] for p in packets] == payloads
    assert [header(p)[1] & 0x80 for p in packets] == [0] * 8 + [0x80]
    player.close()


def test_each_track_gets_its_frames_in_order_while_tracks_are_sent_side_by_side(
    outbound: socket.socket,
) -> None:
    """The workers send different fan-outs' frames at once, one fan-out's one after
    another: every player of every track sees one unbroken, ordered sequence."""
    tracks = [(_fanout.Fanout(), [Player() for _ in range(4)]) for _ in range(8)]
    for t, (fanout, players) in enumerate(tracks):
        for i, player in enumerate(players):
            slot = _fanout.Slot(sender_for(player, outbound), t * 16 + i, 96, b"", 0, 0, VP8_CLOCK)
            fanout.add(slot, [])
    for n in range(25):
        for fanout, _ in tracks:
            fanout.send(frame(n, keyframe=n == 0, packets=5))
    for fanout, _ in tracks:
        fanout.flush()

    for _, players in tracks:
        for player in players:
            packets = player.packets()
            assert [header(p)[2] for p in packets] == list(range(25 * 5))
            assert [p[12] for p in packets] == [n for n in range(25) for _ in range(5)]
            player.close()


def test_sends_joins_leaves_and_nacks_from_several_threads_never_hang(
    outbound: socket.socket,
) -> None:
    """Production calls come from the event loop alone, but nothing in the extension may
    depend on it: a send that waited while another thread removed every slot once left a
    job nobody could run, and every later join hung on it."""
    sink = Player()
    fanouts = [_fanout.Fanout() for _ in range(4)]
    attached: dict[int, list[_fanout.Slot]] = {id(f): [] for f in fanouts}
    guard = threading.Lock()
    frames = [frame(n, keyframe=n % 30 == 0, packets=3) for n in range(60)]
    deadline = time.monotonic() + 3.0
    rng = random.Random(7)

    def send() -> None:
        n = 0
        while time.monotonic() < deadline:
            for fanout in fanouts:
                fanout.send(frames[n % 60])
            n += 1

    def churn() -> None:
        i = 0
        while time.monotonic() < deadline:
            fanout = rng.choice(fanouts)
            with guard:
                slots = attached[id(fanout)]
                if slots and rng.random() < 0.5:
                    assert fanout.remove(slots.pop(rng.randrange(len(slots))))
                else:
                    slots.append(
                        _fanout.Slot(sender_for(sink, outbound), i, 96, b"", 0, 0, VP8_CLOCK)
                    )
                    fanout.add(slots[-1], frames[: rng.randrange(4)])
                    i += 1

    def meddle() -> None:
        while time.monotonic() < deadline:
            fanout = rng.choice(fanouts)
            fanout.flush()
            fanout.wait_for_keyframe()
            with guard:
                slots = list(attached[id(fanout)])
            if slots:
                rng.choice(slots).retransmit([rng.randrange(300) for _ in range(4)])

    threads = [threading.Thread(target=t, daemon=True) for t in (send, churn, meddle, meddle)]
    for thread in threads:
        thread.start()
    while time.monotonic() < deadline:
        try:
            sink.socket.recv(2048)
        except BlockingIOError:
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a call hung"
    for fanout in fanouts:
        fanout.flush()
        assert len(fanout) == len(attached[id(fanout)])
    sink.close()
