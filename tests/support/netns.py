"""Hosts of their own for partition tests: network namespaces joined by veth links.

A ``Network`` makes one network namespace per host (``ip netns``, named after
this process's PID so parallel runs never meet), gives each host one private
address on its loopback (``10.77.0.N/32``, which exists only inside these
namespaces: no address or route is ever added to this machine's own
interfaces), and joins the hosts it is told to with veth pairs created directly
inside the two namespaces, each end routing the other host's address. Every
packet between hosts crosses exactly one veth pair, so cutting that pair
partitions exactly those two hosts.

A cut is an nftables ``netdev`` ingress chain with policy drop on both ends of
the pair: every packet (ARP included) vanishes silently, while the interfaces,
addresses and routes stay as they were. That is what a partition looks like from
a node: silence and timeouts, never an instant "network unreachable" or a reset
(which ``ip link set down`` gives, by flushing the routes, and which no remote
failure produces). Restoring deletes the chains; nothing else changed.

Processes run inside a host with ``ip netns exec`` (which execs, so the PID we
hold is the program's own and we stop it by that PID). The test process itself
stays in the root namespace and acts inside a host from that host's threads,
which entered the namespace with ``setns(2)``: ``Host.run`` awaits a coroutine on
the host's own event loop (real aiortc peers, HTTP clients), ``Host.call`` runs a
blocking call. Sockets belong to the namespace they were created in, so a peer
made there lives on that host.

Everything needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): without it, creating a
network raises ``NamespacesUnavailable`` saying so. ``close()`` removes every
namespace (and with them their links) and stops the host threads; it is
idempotent and runs however the test ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import itertools
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"
"""Hosts get ``10.77.0.1``, ``.2``, ... inside their namespaces only."""
NETWORK = f"{SUBNET}.0/24"
"""Every host address of every ``Network``."""
COMMAND_TIMEOUT_S = 10.0
_networks = itertools.count(1)


class NamespacesUnavailable(RuntimeError):
    """This process cannot create network namespaces (not root, or a tool is missing)."""


def _run(*argv: str, stdin: str = "") -> None:
    """Run an ``ip``/``nft`` command; fail naming the command and what it said."""
    done = subprocess.run(
        argv, input=stdin.encode(), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise NamespacesUnavailable(f"`{' '.join(argv)}` failed: {said}")


def _enter(netns: str) -> None:
    """Move the calling thread (only it) into the network namespace ``netns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class Host:
    """One namespace: its address, a way to run programs in it, and threads that live in it."""

    def __init__(self, name: str, netns: str, address: str) -> None:
        self.name = name
        self.netns = netns
        self.address = address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._calls: concurrent.futures.ThreadPoolExecutor | None = None

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def start(self) -> None:
        """Start the host's event-loop thread and its thread for blocking calls."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            try:
                _enter(self.netns)
            except OSError as error:
                failed.append(error)
                ready.set()
                return
            loop = asyncio.new_event_loop()
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"host {self.name}", daemon=True)
        self._thread.start()
        ready.wait(COMMAND_TIMEOUT_S)
        if failed or self._loop is None:
            raise NamespacesUnavailable(f"cannot enter namespace {self.netns}: {failed}")
        self._calls = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"host {self.name} calls",
            initializer=_enter,
            initargs=(self.netns,),
        )

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on this host's event loop: its sockets are this host's."""
        assert self._loop is not None, "start() first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def call(self, function: Callable[[], T]) -> T:
        """Run the blocking ``function`` on this host and return what it returns."""
        assert self._calls is not None, "start() first"
        return self._calls.submit(function).result()

    def close(self) -> None:
        """Stop the host's threads (idempotent). Its peers must be closed before."""
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.shutdown(wait=True)
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(COMMAND_TIMEOUT_S)


class Link:
    """The veth pair between two hosts; ``cut()`` and ``restore()`` partition them."""

    def __init__(self, a: Host, b: Host) -> None:
        self.ends = ((a, f"to-{b.name}"), (b, f"to-{a.name}"))
        self.is_cut = False

    def _table(self, device: str) -> str:
        return "cut_" + device.replace("-", "_")

    def cut(self) -> None:
        """Drop every packet arriving at either end: silence both ways, nothing reset."""
        for host, device in self.ends:
            rules = (
                f"table netdev {self._table(device)} {{\n  chain ingress {{\n    type filter hook"
                f' ingress device "{device}" priority 0; policy drop;\n  }}\n}}\n'
            )
            _run(*host.command("nft", "-f", "-"), stdin=rules)
        self.is_cut = True
        logger.info("cut the link %s <-> %s", self.ends[0][0].name, self.ends[1][0].name)

    def restore(self) -> None:
        """Let packets through again (harmless when not cut)."""
        if not self.is_cut:
            return
        for host, device in self.ends:
            _run(*host.command("nft", "delete", "table", "netdev", self._table(device)))
        self.is_cut = False
        logger.info("restored the link %s <-> %s", self.ends[0][0].name, self.ends[1][0].name)


class Network:
    """Hosts in namespaces of their own, joined by the links asked for.

    ``Network(["eu", "us", "registry"], [("eu", "us"), ("eu", "registry"),
    ("us", "registry")])``; ``hosts["eu"]``, ``link("eu", "us")``.
    """

    def __init__(self, names: Sequence[str], links: Sequence[tuple[str, str]]) -> None:
        prefix = f"ts{os.getpid()}n{next(_networks)}"
        self.hosts = {
            name: Host(name, f"{prefix}-{name}", f"{SUBNET}.{number}")
            for number, name in enumerate(names, start=1)
        }
        self._links = {
            frozenset(pair): Link(self.hosts[pair[0]], self.hosts[pair[1]]) for pair in links
        }
        self._created: list[Host] = []

    def link(self, a: str, b: str) -> Link:
        return self._links[frozenset((a, b))]

    def create(self) -> Network:
        """Make the namespaces, addresses, links and routes; on failure remove what was made."""
        if os.geteuid() != 0:
            raise NamespacesUnavailable(
                "network-partition tests put nodes in network namespaces (ip netns), which needs "
                f"root (CAP_NET_ADMIN, CAP_SYS_ADMIN); this process runs as uid {os.geteuid()}. "
                "Run them as root, as CI does."
            )
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise NamespacesUnavailable(
                    f"`{tool}` is missing (iproute2, nftables): bash .ci/install installs it"
                )
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        for host in self.hosts.values():
            _run("ip", "netns", "add", host.netns)
            self._created.append(host)
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/32", "dev", "lo")
        for link in self._links.values():
            (a, a_device), (b, b_device) = link.ends
            _run(
                *("ip", "-n", a.netns, "link", "add", a_device, "type", "veth"),
                *("peer", "name", b_device, "netns", b.netns),
            )
            for (host, device), (other, _) in (link.ends, link.ends[::-1]):
                _run("ip", "-n", host.netns, "link", "set", device, "up")
                _run(
                    *("ip", "-n", host.netns, "route", "add", f"{other.address}/32"),
                    *("dev", device, "src", host.address),
                )
        for host in self.hosts.values():
            host.start()

    def close(self) -> None:
        """Stop the host threads and delete every namespace this network made (idempotent).

        Processes started in a host must be stopped first (by their PIDs).
        """
        for host in self.hosts.values():
            host.close()
        created, self._created = self._created, []
        for host in created:
            with contextlib.suppress(NamespacesUnavailable, subprocess.TimeoutExpired):
                _run("ip", "netns", "del", host.netns)


@contextlib.contextmanager
def network(names: Sequence[str], links: Sequence[tuple[str, str]]) -> Iterator[Network]:
    """A created ``Network``, closed when the block ends however it ends."""
    made = Network(names, links).create()
    try:
        yield made
    finally:
        made.close()
