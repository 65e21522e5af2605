"""A private PostgreSQL server for tests and benchmarks, on 127.0.0.1 only.

The registry's real back-end is PostgreSQL, so tests run against a real one:
a throw-away cluster in a temporary directory, started on a free port, with
``trust`` auth and fsync off (speed over durability; it is deleted at stop).

With ``tls`` (a certificate and key, e.g. from ``tests.support.certificates``) it
also serves TLS (``ssl=on``), so tests can reach it with ``verify-full``; plain
connections stay allowed, so one server serves both kinds of test.

PostgreSQL refuses to run as root, so when we are root its programs run as the
``postgres`` user (``subprocess``'s ``user=``, which keeps the postmaster our
direct child: we stop it by its PID and reap it, never by name).

Given a ``host`` (``tests.support.netns``), the server runs inside that host's
network namespace and listens on the host's address (``url()``, for nodes in
other hosts); there ``ip netns exec`` needs root, so the switch to ``postgres``
is made by ``setpriv``, which execs like ``ip netns exec`` does: the PID we hold
is still the postmaster's. The test process itself reaches the server wherever
it runs through its Unix socket (``socket_url()``), which no partition cuts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.support.certificates import Issued
from tests.support.netns import NETWORK, Host
from tests.support.processes import stop_process

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _binaries() -> Path:
    """The newest installed PostgreSQL's ``bin`` directory (Debian layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL found under /usr/lib/postgresql/*/bin")
    return Path(found[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One private PostgreSQL cluster: ``start()``, ``create_database()``, ``stop()``.

    ``stop()`` is idempotent and always removes the temporary directory. ``halt()`` and
    ``resume()`` take the server away and bring it back with its data, on its port: a
    registry outage for the fault tests.
    """

    user = "postgres"

    def __init__(
        self, *, max_connections: int = 300, tls: Issued | None = None, host: Host | None = None
    ) -> None:
        self.port = 0
        self._host = host
        self.address = host.address if host is not None else "127.0.0.1"
        self._max_connections = max_connections
        self._tls = tls
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Create a cluster in a new temporary directory and start it; wait until it accepts.

        On any failure, whatever was started is stopped and removed before raising.
        """
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        binaries = _binaries()
        self._root = Path(tempfile.mkdtemp(prefix="tierstream-pg-"))
        data, sockets = self._root / "data", self._root / "sockets"
        sockets.mkdir()
        if self._run_as is not None:
            for path in (self._root, sockets):
                shutil.chown(path, self._run_as, self._run_as)
        initdb = subprocess.run(
            [
                binaries / "initdb",
                "-D",
                data,
                "-U",
                self.user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            user=self._run_as,
            capture_output=True,
            timeout=timeout_s,
            cwd=self._root,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stderr.decode(errors='replace')}")
        if self._host is not None:  # nodes on the other hosts connect over TCP
            with (data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.write(f"host all all {NETWORK} trust\n")
        self.port = free_port()
        self._launch(binaries, timeout_s)

    def _launch(self, binaries: Path, timeout_s: float) -> None:
        assert self._root is not None
        data, sockets = self._root / "data", self._root / "sockets"
        argv = [
            str(binaries / "postgres"),
            *("-D", str(data), "-h", self.address, "-p", str(self.port), "-k", str(sockets)),
            *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            *("-c", f"max_connections={self._max_connections}"),
            *self._tls_options(),
        ]
        run_as = self._run_as
        if self._host is not None:
            if run_as is not None:
                argv = ["setpriv", f"--reuid={run_as}", f"--regid={run_as}", "--init-groups", *argv]
            argv, run_as = self._host.command(*argv), None
        log = (self._root / "postgres.log").open("ab")
        with log:
            self._process = subprocess.Popen(
                argv,
                user=run_as,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._root,
            )
        self._wait_ready(binaries, timeout_s)

    def _tls_options(self) -> list[str]:
        """``ssl=on`` with copies of the certificate and key that the server's user owns
        (PostgreSQL refuses a key file others can read)."""
        if self._tls is None:
            return []
        assert self._root is not None
        options = ["-c", "ssl=on"]
        for name, source in (("cert", self._tls.certificate), ("key", self._tls.key)):
            copy = self._root / f"server.{name}"
            shutil.copyfile(source, copy)
            copy.chmod(0o600)
            if self._run_as is not None:
                shutil.chown(copy, self._run_as, self._run_as)
            options += ["-c", f"ssl_{name}_file={copy}"]
        return options

    def _wait_ready(self, binaries: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up:\n{self.log_tail()}")
            probe = subprocess.run(
                [binaries / "pg_isready", "-q", "-h", str(self._sockets), "-p", str(self.port)],
                check=False,
                timeout=5,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres not ready after {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, to explain a failure."""
        if self._root is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self._root / "postgres.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    @property
    def _sockets(self) -> Path:
        assert self._root is not None, "start() first"
        return self._root / "sockets"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server, over TCP (what nodes use)."""
        return f"postgresql+asyncpg://{self.user}@{self.address}:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` over the server's Unix socket, from this machine."""
        return f"postgresql+asyncpg://{self.user}@/{database}?host={self._sockets}&port={self.port}"

    async def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        connection = await asyncpg.connect(
            host=str(self._sockets), port=self.port, user=self.user, database="postgres", timeout=10
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close(timeout=10)
        return self.url(name)

    def halt(self, *, timeout_s: float = 15.0) -> None:
        """Shut the server down, keeping its data: clients' connections break, new ones fail."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, signal.SIGINT, timeout_s)  # fast shutdown: connections close

    def resume(self, *, timeout_s: float = 30.0) -> None:
        """Start a halted server again, on the same port with the same data; wait until ready."""
        if self._root is None or self._process is not None:
            raise RuntimeError("resume() is for a server that was started, then halted")
        self._launch(_binaries(), timeout_s)

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """Fast shutdown by the postmaster's PID (SIGINT), SIGKILL if it hangs; remove its files."""
        self.halt(timeout_s=timeout_s)
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
