"""Janus 1.1.2's Streaming plugin as a fan-out baseline (Debian's ``janus`` package).

Used by ``bench/fanout.py`` when ``/usr/bin/janus`` exists (``apt-get install
janus``; the bench needs nothing else, and tierstream itself never does). Janus
runs in its own process with ``event_loops = 1`` (one thread serves every
player's media) pinned to the relay core, with a private configuration in a
temporary folder: the HTTP API on 127.0.0.1, the Streaming plugin with one RTP
mountpoint (VP8, fed as plain RTP on 127.0.0.1 by the bench, a keyframe every
2 s because Janus cannot ask a plain RTP feed for one), every other plugin and
transport disabled.

Janus skips loopback interfaces when it gathers ICE candidates, so it is started
with ``LD_PRELOAD`` of a small wrapper around ``getifaddrs`` (compiled here with
the system compiler) that hides every address but 127.0.0.1 and clears the
loopback flag: Janus then offers 127.0.0.1 only. The wrapper is loaded into the
Janus process alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

JANUS = "/usr/bin/janus"
LIBRARIES = "/usr/lib/x86_64-linux-gnu/janus"
MOUNTPOINT = 1
PAYLOAD_TYPE = 96

_GETIFADDRS = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>

/* Only 127.0.0.1, and not flagged as loopback: the other entries lose their
   address (glibc frees the list as one block, so none is unlinked). */
int getifaddrs(struct ifaddrs **out) {
    static int (*real)(struct ifaddrs **);
    if (real == NULL) {
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    }
    int rc = real(out);
    if (rc != 0) {
        return rc;
    }
    for (struct ifaddrs *ifa = *out; ifa != NULL; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr != NULL && ifa->ifa_addr->sa_family == AF_INET &&
            ((struct sockaddr_in *)ifa->ifa_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
            ifa->ifa_flags &= ~IFF_LOOPBACK;
        } else {
            ifa->ifa_addr = NULL;
        }
    }
    return 0;
}
"""


def available() -> bool:
    return Path(JANUS).exists() and shutil.which("gcc") is not None


def _config(folder: Path, http_port: int, video_port: int) -> None:
    plugins = ",".join(
        p.name
        for p in (Path(LIBRARIES) / "plugins").glob("libjanus_*.so")
        if p.name != "libjanus_streaming.so"
    )
    transports = ",".join(
        p.name
        for p in (Path(LIBRARIES) / "transports").glob("libjanus_*.so")
        if p.name != "libjanus_http.so"
    )
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{LIBRARIES}/plugins"
    transports_folder = "{LIBRARIES}/transports"
    events_folder = "{LIBRARIES}/events"
    loggers_folder = "{LIBRARIES}/loggers"
    debug_level = 2
    session_timeout = 0
    event_loops = 1
}}
media: {{
    ipv6 = false
}}
nat: {{
    ice_lite = false
    ignore_mdns = true
}}
plugins: {{
    disable = "{plugins}"
}}
transports: {{
    disable = "{transports}"
}}
events: {{
    broadcast = false
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"""
    )
    (folder / "janus.plugin.streaming.jcfg").write_text(
        f"""general: {{
}}
bench: {{
    type = "rtp"
    id = {MOUNTPOINT}
    description = "bench"
    audio = false
    video = true
    videoport = {video_port}
    videoiface = "127.0.0.1"
    videopt = {PAYLOAD_TYPE}
    videocodec = "vp8"
}}
"""
    )


class Janus:
    """One Janus process with the bench's configuration; stopped by its PID."""

    def __init__(self, cores: set[int], http_port: int, video_port: int) -> None:
        self.video_port = video_port
        self._url = f"http://127.0.0.1:{http_port}/janus"
        self._folder = Path(tempfile.mkdtemp(prefix="bench-janus-"))
        _config(self._folder, http_port, video_port)
        wrapper = self._folder / "getifaddrs.so"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(wrapper), "-x", "c", "-", "-ldl"],
            input=_GETIFADDRS.encode(),
            check=True,
        )
        self._log = open(self._folder / "janus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [JANUS, "-F", str(self._folder), "-C", str(self._folder / "janus.jcfg"), "-N"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LD_PRELOAD": str(wrapper)},
        )
        psutil.Process(self.process.pid).cpu_affinity(sorted(cores))
        self._http = httpx.AsyncClient(timeout=30)

    async def ready(self) -> None:
        """Wait (bounded) until the HTTP API answers."""
        for _ in range(100):
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited; see {self._folder / 'janus.log'}")
            try:
                await self._http.get(self._url + "/info")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        raise RuntimeError("janus did not answer on its HTTP API within 10 s")

    def usage(self) -> dict[str, Any]:
        process = psutil.Process(self.process.pid)
        times = process.cpu_times()
        return {"user": times.user, "sys": times.system, "rss": process.memory_info().rss}

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self._http.post(
            self._url + path, json={**body, "transaction": uuid.uuid4().hex}
        )
        data: dict[str, Any] = reply.json()
        if data.get("janus") == "error":
            raise RuntimeError(f"janus refused {body}: {data['error']}")
        return data

    async def watch(self) -> tuple[str, str]:
        """A new player's session: (its path, Janus's offer)."""
        session = (await self._call("", {"janus": "create"}))["data"]["id"]
        handle = (
            await self._call(f"/{session}", {"janus": "attach", "plugin": "janus.plugin.streaming"})
        )["data"]["id"]
        path = f"/{session}/{handle}"
        await self._call(path, {"janus": "message", "body": {"request": "watch", "id": MOUNTPOINT}})
        for _ in range(10):
            events = (await self._http.get(f"{self._url}/{session}?maxev=10")).json()
            for event in events if isinstance(events, list) else [events]:
                if "jsep" in event:
                    return path, str(event["jsep"]["sdp"])
        raise RuntimeError("janus sent no offer for a watch request")

    async def start(self, path: str, answer: str) -> None:
        await self._call(
            path,
            {
                "janus": "message",
                "body": {"request": "start"},
                "jsep": {"type": "answer", "sdp": answer},
            },
        )

    async def stop(self) -> None:
        await self._http.aclose()
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 5)
        self._log.close()
        shutil.rmtree(self._folder, ignore_errors=True)
