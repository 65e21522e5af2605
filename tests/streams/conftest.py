"""Fixtures of the stream tests: a cluster of real node processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import ClusterFactory
from tests.support.nodes import NodeProcess, start_all


@pytest.fixture
def make_cluster(tmp_path: Path, postgres_url: str) -> Iterator[ClusterFactory]:
    """Starts named nodes (``eu-1`` is in region ``eu``) on a fresh registry; stops them all."""
    started: list[NodeProcess] = []

    def make(*names: str, **config: str) -> dict[str, NodeProcess]:
        nodes = {
            name: NodeProcess(tmp_path, name, name.split("-")[0], postgres_url, **config)
            for name in names
        }
        started.extend(nodes.values())
        start_all(list(nodes.values()))
        return nodes

    yield make
    for node in started:
        node.kill()
