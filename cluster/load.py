"""What a node reports as its load: its own CPU and memory, plus the media plane's counters.

CPU is the node process's share of the cores it may run on (0..1), not the
machine's: several nodes can share one machine (the demo, the tests) and each
must report what it costs, and a node limited to some cores must not look idle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

import psutil

from cluster.types import NodeLoad
from media.types import MediaStats


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which is what it can use."""
    return len(os.sched_getaffinity(0)) or 1


class LoadSampler:
    """Samples the process's CPU since the previous sample, and its resident memory."""

    def __init__(self, media: Callable[[], MediaStats]) -> None:
        self._process = psutil.Process()
        self._cores = usable_cores()
        self._total_memory = psutil.virtual_memory().total
        self._media = media
        self._process.cpu_percent(None)  # the first call only starts the measurement window
        self.last = NodeLoad()
        """The latest sample: what admission checks compare with the node's limits."""

    def sample(self) -> NodeLoad:
        cpu = self._process.cpu_percent(None) / (100.0 * self._cores)
        memory = self._process.memory_info().rss / self._total_memory
        self.last = replace(self.current(), cpu=round(min(cpu, 1.0), 4), memory=round(memory, 4))
        return self.last

    def current(self) -> NodeLoad:
        """The media counters as they are now, with the last sample's CPU and memory."""
        counters = self._media()
        return replace(
            self.last,
            players=counters.players,
            publishers=counters.publishers,
            pulls=counters.pulls,
            bitrate_in_kbps=round(counters.bitrate_in_kbps),
            bitrate_out_kbps=round(counters.bitrate_out_kbps),
        )

    def latest(self) -> NodeLoad:
        """The latest sample, without taking a new one."""
        return self.last
