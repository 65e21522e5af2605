"""Stopping a process a test started: by its PID, with bounded waits, never by name."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], sig: signal.Signals, timeout_s: float) -> bool:
    """Send ``sig`` unless it has exited, wait ``timeout_s``, then SIGKILL (and 5 s more).

    True when it ended on the signal (or had already), False when it had to be killed:
    the caller decides whether that is a failure."""
    if process.poll() is not None:
        return True
    process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        return False
    return True
