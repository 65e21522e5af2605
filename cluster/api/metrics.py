"""``/metrics``: the node in Prometheus' text format, read from the node itself at scrape time.

A collector, not counters updated along the way: every figure is the same one
the heartbeat and the REST views report, so the three never disagree, and the
media plane's hot path pays nothing for being observed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from cluster.node import Node


class NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        settings = node.settings
        stats = node.streams.stats()
        load = node.sampler.last
        yield InfoMetricFamily(
            "tierstream_node",
            "The node's identity and region.",
            value={
                "node": settings.node_id,
                "node_group": settings.node_group,
                "state": node.state,
            },
        )
        gauges = {
            "registry_reachable": (
                "1 while heartbeats reach the registry.",
                node.heartbeat.healthy,
            ),
            "cpu_ratio": ("CPU of the node process, share of its cores (last sample).", load.cpu),
            "memory_ratio": ("Resident memory, share of the machine's.", load.memory),
            "publishers": ("Publishers connected to this node.", stats.publishers),
            "players": ("Players connected to this node.", stats.players),
            "downstreams": ("Other nodes pulling streams from this node.", stats.downstreams),
            "pulls": ("Streams this node pulls from other nodes.", stats.pulls),
            "bitrate_in_kbps": ("Media received, kbit/s.", stats.bitrate_in_kbps),
            "bitrate_out_kbps": ("Media sent, kbit/s.", stats.bitrate_out_kbps),
        }
        for name, (text, value) in gauges.items():
            yield GaugeMetricFamily(f"tierstream_{name}", text, value=float(value))
        per_stream = GaugeMetricFamily(
            "tierstream_stream_players", "Players of each stream on this node.", labels=["stream"]
        )
        for stream_id, players in stats.players_per_stream:
            per_stream.add_metric([stream_id], players)
        yield per_stream


def metrics_endpoint(node: Node, *more: Collector) -> Callable[[Request], Awaitable[Response]]:
    """Build the ``/metrics`` handler for ``node`` (and ``more`` collectors), with a registry of
    its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    for collector in more:
        registry.register(collector)

    async def metrics(request: Request) -> Response:
        """---
        summary: Prometheus metrics
        responses:
          "200":
            description: Prometheus' text format.
            content: {text/plain: {schema: {type: string}}}
        """
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
