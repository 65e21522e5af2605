"""The demo's terminal summary: per region, its nodes, players, pulls and bitrate, and the origins.

Read once a second over the nodes' own REST (the live node list and the
stream's topology) from any node still running, so the terminal shows what
the cluster itself reports; the demo's players add whether they receive.
Drawn with ``rich``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cluster.cli.demo_nodes import DemoNode
from cluster.cli.demo_peers import DemoPlayer


@dataclass
class Picture:
    """One reading of the cluster: live nodes by id and the stream's topology (None: not live)."""

    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    topology: dict[str, Any] | None = None
    reachable: bool = False


async def observe(http: httpx.AsyncClient, nodes: Sequence[DemoNode], stream: str) -> Picture:
    """Ask the first running node that answers; an empty picture when none does."""
    for node in nodes:
        if not node.running:
            continue
        with contextlib.suppress(httpx.TransportError, ValueError):
            listed = await http.get(f"{node.url}/rest/v2/cluster/nodes/0/1000", timeout=1.0)
            if listed.status_code != 200:
                continue
            tree = await http.get(f"{node.url}/rest/v2/streams/{stream}/topology", timeout=1.0)
            topology = tree.json() if tree.status_code == 200 else None
            if topology is not None and topology.get("state") == "ended":
                topology = None
            return Picture({n["id"]: n for n in listed.json()}, topology, reachable=True)
    return Picture()


def render(
    picture: Picture,
    nodes: Sequence[DemoNode],
    players: Sequence[DemoPlayer],
    stream: str,
    dashboard_url: str,
    notes: Sequence[str],
) -> RenderableType:
    topology = picture.topology or {}
    main = (topology.get("mainOrigin") or {}).get("node")
    secondary = {o["nodeGroup"]: o for o in topology.get("secondaryOrigins", [])}
    pulls_into = {p["downstream"] for p in topology.get("pulls", [])}
    head = Text.assemble(
        ("stream ", "bold"),
        (stream, "bold cyan"),
        "  main origin ",
        (main or "none (not live)", "green" if main else "red"),
        "   dashboard ",
        (dashboard_url, "underline"),
    )
    table = Table(expand=True, show_edge=False)
    for title in (
        "region",
        "nodes",
        "players",
        "demo players receiving",
        "pulls",
        "kbit/s in/out",
        "secondary origin (epoch)",
    ):
        table.add_column(title)
    regions: dict[str, list[DemoNode]] = {}
    for node in nodes:
        record = picture.live.get(node.name)
        regions.setdefault(record["nodeGroup"] if record else node.region, []).append(node)
    for region, members in regions.items():
        records = [picture.live[n.name] for n in members if n.name in picture.live]
        states = Text(" ").join(_state(n, picture.live.get(n.name)) for n in members)
        mine = [p for p in players if p.node in members]
        receiving = sum(1 for p in mine if p.receiving)
        held = secondary.get(region)
        if held is not None:
            origin = f"{held['node']} ({held['epoch']})"
        elif main is not None and any(n.name == main for n in members):
            origin = f"main origin {main}"
        else:
            origin = "-"
        table.add_row(
            region,
            states,
            str(sum(r["load"]["players"] for r in records)),
            Text(f"{receiving}/{len(mine)}", style="green" if receiving == len(mine) else "yellow"),
            str(sum(1 for n in members if n.name in pulls_into)),
            f"{sum(r['load']['bitrateInKbps'] for r in records)}"
            f" / {sum(r['load']['bitrateOutKbps'] for r in records)}",
            origin,
        )
    status = (
        Text("")
        if picture.reachable
        else Text("no node answers: the cluster cannot be read right now", style="bold red")
    )
    hint = Text(
        "another shell: tierstream demo kill NODE | restart NODE | move NODE REGION"
        f" --port {nodes[0].port}    Ctrl-C stops the demo",
        style="dim",
    )
    return Group(head, table, status, *(Text(note, style="italic") for note in notes[-3:]), hint)


def _state(node: DemoNode, record: dict[str, Any] | None) -> Text:
    if record is not None:
        style = "green" if record["state"] == "serving" else "yellow"
        return Text(f"{node.name} {record['state']} {record['cpu']:.0f}%", style=style)
    return Text(f"{node.name} {'starting' if node.running else 'dead'}", style="red")
