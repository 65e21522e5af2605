"""A private gdnsd (Debian's GeoDNS server) on 127.0.0.1 for routing tests.

Its configuration comes from ``tierstream geodns --format gdnsd``; it is started
in the foreground on a free port, waited for with bounded DNS queries, and
stopped by its PID. gdnsd drops root to its own user, so its directory is a
world-readable temporary one (pytest's are private to root). A missing gdnsd
fails the test: ``.ci/install`` installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.support.processes import stop_process

GDNSD = Path("/usr/sbin/gdnsd")


def require_gdnsd() -> Path:
    if not GDNSD.exists():
        raise RuntimeError(f"{GDNSD} is missing: run bash .ci/install (it installs gdnsd)")
    return GDNSD


def resolve(port: int, name: str, client: str, timeout_s: float = 2.0) -> list[str]:
    """The A records gdnsd answers for ``name`` to a client at ``client`` (EDNS Client Subnet)."""
    prefix = 128 if ":" in client else 32
    query = dns.message.make_query(
        name, "A", use_edns=0, options=[dns.edns.ECSOption(client, prefix)]
    )
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout_s)
    if reply.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"gdnsd answered {dns.rcode.to_text(reply.rcode())} for {name}")
    return sorted(str(record) for rrset in reply.answer for record in rrset)


class Gdnsd:
    """One gdnsd process over a configuration directory it owns."""

    def __init__(self) -> None:
        require_gdnsd()
        self.dir = Path(tempfile.mkdtemp(prefix="tierstream-gdnsd-"))
        os.chmod(self.dir, 0o755)
        self.log = self.dir / "gdnsd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, zone: str, timeout_s: float = 20.0) -> None:
        if not (self.dir / "config").is_file():
            raise RuntimeError("no gdnsd config written: gdnsd would listen on port 53")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GDNSD), "-c", str(self.dir), "-D", "start"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        port = self.port()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gdnsd exited at start:\n{self.log_text()}")
            try:
                query = dns.message.make_query(zone, "SOA")
                dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
                return
            except (dns.exception.Timeout, OSError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gdnsd not answering in {timeout_s} s:\n{self.log_text()}")

    def port(self) -> int:
        for line in (self.dir / "config").read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("dns_port"):
                return int(line.split("=>")[1])
        raise RuntimeError("the gdnsd config names no dns_port")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by PID and a bounded wait (SIGKILL after); removes the directory."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, signal.SIGTERM, timeout_s)
        shutil.rmtree(self.dir, ignore_errors=True)
