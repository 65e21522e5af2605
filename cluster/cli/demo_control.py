"""Talking to a running demo: ``tierstream demo kill|restart|move ...`` from another shell.

A demo is known by its first node's port (like its dashboard URL), and listens
on a Unix socket named after it in the system's temporary directory, readable
by its user only. One request per connection, one JSON line each way:
``{"action": "kill", "node": "us-1"}`` → ``{"ok": true, "message": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster.errors import ClusterError

ACTIONS = {"kill": 1, "restart": 1, "move": 2}
"""Each action and how many arguments it takes (``move`` takes the node and its new region)."""
MAX_REQUEST = 4096
REPLY_TIMEOUT_S = 60.0

Handler = Callable[[str, list[str]], Awaitable[str]]
"""Carries out one action on the running demo; returns what happened, raises ClusterError."""


class NoDemo(ClusterError):
    """No demo is running with that first port."""


def socket_path(first_port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"tierstream-demo-{os.getuid()}-{first_port}.sock"


def parse_action(words: list[str]) -> tuple[str, list[str]]:
    """``["move", "us-2", "ap"]`` → ``("move", ["us-2", "ap"])``, or a ValueError saying why not."""
    if not words or words[0] not in ACTIONS:
        raise ValueError(f"the action must be one of {', '.join(ACTIONS)}")
    action, arguments = words[0], words[1:]
    if len(arguments) != ACTIONS[action]:
        usage = {"kill": "kill NODE", "restart": "restart NODE", "move": "move NODE REGION"}
        raise ValueError(f"usage: tierstream demo {usage[action]}")
    return action, arguments


@contextlib.asynccontextmanager
async def serving(first_port: int, handle: Handler) -> AsyncIterator[Path]:
    """Listen for actions while the demo runs; the socket is removed afterwards."""
    path = socket_path(first_port)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a demo that was SIGKILLed: its port check already passed

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await _answer(await reader.readline(), handle)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(on_client, path, limit=MAX_REQUEST)
    path.chmod(0o600)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _answer(line: bytes, handle: Handler) -> dict[str, Any]:
    try:
        request = json.loads(line)
        action, arguments = parse_action([request["action"], *request["arguments"]])
    except (ValueError, KeyError, TypeError) as error:
        return {"ok": False, "message": f"bad request: {error}"}
    try:
        return {"ok": True, "message": await handle(action, arguments)}
    except ClusterError as error:
        return {"ok": False, "message": str(error)}


async def send(first_port: int, action: str, arguments: list[str]) -> tuple[bool, str]:
    """Ask the demo whose first port is ``first_port`` to carry out ``action``."""
    path = socket_path(first_port)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoDemo(f"no demo is running with first port {first_port} (no {path})") from None
    try:
        writer.write(json.dumps({"action": action, "arguments": arguments}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            reply = json.loads(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bool(reply["ok"]), str(reply["message"])
