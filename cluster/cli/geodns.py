"""``tierstream geodns --format gdnsd``: a GeoDNS configuration for the cluster, from the registry.

One datacenter per region (``auto_dc_coords`` from ``region.<name>.latitude``/
``longitude``, explicit ``countries``/``continents`` as map entries that win over
distance), each node of a region as one address of its datacenter, and a health
monitor per address on the node's ``/readyz``, so a full, draining or dead node
leaves the answers and a region with none left fails over to the next nearest.

``--monitor http`` (default) is gdnsd's ``http_status`` on the node's port and
``/readyz``. gdnsd connects to the answer address itself; where the answer
addresses are not the nodes' own (loopback tests, NAT), ``--monitor extmon``
runs a small probe that maps each answer address to its node's readiness URL.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cluster.errors import ConfigError
from cluster.registry import Registry
from cluster.routing.regions import great_circle_km
from cluster.settings import Settings
from cluster.tls import registry_ssl
from cluster.types import NodeGroup, NodeId, NodeRecord, Region

Monitor = Literal["http", "extmon"]

PROBE = """item=$1; shift; url=
for pair in "$@"; do case "$pair" in "$item="*) url=${pair#*=};; esac; done
[ -n "$url" ] || exit 2
body=$(curl -fsS --max-time TIMEOUT CACERT "$url") || exit 1
case "$body" in *'"accepting"'*) exit 0;; esac
exit 1
"""
"""Exit 0 only when the node behind the answer address says it is accepting (sh and curl:
a check must start in well under gdnsd's one-second timeout on a busy machine). https
nodes are verified against ``server.tlsCA`` when the node's configuration names one."""


@dataclass(frozen=True, slots=True)
class GeoDnsOptions:
    zone: str
    name: str
    geoip_db: Path
    monitor: Monitor = "http"
    interval_s: int = 2
    ttl_s: int = 30
    answers: Mapping[NodeId, str] | None = None
    """Answer address per node; default: the host of the node's public URL (an IP)."""
    listen: str = "0.0.0.0"
    port: int = 53
    run_dir: Path | None = None
    state_dir: Path | None = None
    ca: Path | None = None
    """The CA the extmon probe verifies https nodes with (``server.tlsCA``); None: curl's."""


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _answer(node: NodeRecord, answers: Mapping[NodeId, str]) -> str:
    address = answers.get(node.id) or urlsplit(node.public_url).hostname or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise ConfigError(
            "server.publicUrl",
            f"node {node.id}'s public host {address!r} is not an IP address; "
            f"give its DNS answer with --answer {node.id}=<address>",
        ) from None


def _ordered_from(region: Region, others: Sequence[Region]) -> list[NodeGroup]:
    """``region`` first, then the others by distance from it (unlocated last)."""

    def distance(other: Region) -> float:
        if region.latitude is None or region.longitude is None:
            return 0.0
        if other.latitude is None or other.longitude is None:
            return float("inf")
        return great_circle_km(region.latitude, region.longitude, other.latitude, other.longitude)

    rest = sorted((r for r in others if r.name != region.name), key=lambda r: (distance(r), r.name))
    return [region.name, *(r.name for r in rest)]


CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")


def gdnsd_files(
    nodes: Sequence[NodeRecord], regions: Sequence[Region], options: GeoDnsOptions
) -> dict[str, str]:
    """The files of a gdnsd configuration directory: ``config`` and ``zones/<zone>``."""
    answers = options.answers or {}
    configured = {r.name: r for r in regions}
    groups = sorted({n.node_group for n in nodes} | set(configured))
    by_group: dict[NodeGroup, list[NodeRecord]] = {g: [] for g in groups}
    for node in nodes:
        by_group[node.node_group].append(node)
    groups = [g for g in groups if by_group[g]]
    if not groups:
        raise ConfigError("geodns", "the registry lists no live nodes to answer with")
    known = [configured.get(g, Region(g)) for g in groups]
    located = [r for r in known if r.located]
    if not located:
        raise ConfigError("region.<name>.latitude", "no region of a live node has coordinates")

    lines = ["options => {", f"  listen => {options.listen}", f"  dns_port => {options.port}"]
    if options.run_dir is not None:
        lines.append(f"  run_dir => {_quote(str(options.run_dir))}")
    if options.state_dir is not None:
        lines.append(f"  state_dir => {_quote(str(options.state_dir))}")
    lines += ["}", "service_types => {", "  readyz => {"]
    if options.monitor == "http":
        if any(n.internal_url.startswith("https://") for n in nodes):
            raise ConfigError(
                "geodns",
                "gdnsd's http_status plugin speaks plain HTTP and these nodes serve HTTPS "
                "(server.tlsCertificate): use --monitor extmon",
            )
        ports = {urlsplit(n.internal_url).port or 80 for n in nodes}
        if len(ports) != 1:
            raise ConfigError("geodns", "http monitoring needs every node on one port; use extmon")
        lines += ["    plugin => http_status", f"    port => {ports.pop()}",
                  "    url_path => /readyz", "    ok_codes => [200]"]  # fmt: skip
    else:
        urls = [f"{_answer(n, answers)}={n.internal_url}/readyz" for n in nodes]
        timeout = max(1, options.interval_s - 1)
        cacert = f"--cacert {shlex.quote(str(options.ca))}" if options.ca is not None else ""
        probe = PROBE.replace("TIMEOUT", str(timeout)).replace("CACERT", cacert)
        command = ["/bin/sh", "-c", probe, "readyz-probe", "%%ITEM%%", *urls]
        lines += ["    plugin => extmon", "    direct => true",
                  "    cmd => [" + ", ".join(_quote(c) for c in command) + "]"]  # fmt: skip
        lines.append(f"    timeout => {timeout}")
    lines += [f"    interval => {options.interval_s}", "    up_thresh => 2",
              "    ok_thresh => 2", "    down_thresh => 2", "  }", "}"]  # fmt: skip

    lines += ["plugins => { geoip => {", "  maps => { tierstream => {",
              f"    geoip2_db => {_quote(str(options.geoip_db))}",
              f"    datacenters => [{', '.join(groups)}]",
              f"    auto_dc_limit => {len(groups)}",
              "    auto_dc_coords => {"]  # fmt: skip
    lines += [f"      {r.name} => [{r.latitude}, {r.longitude}]" for r in located]
    lines.append("    }")
    mapped = _explicit_map(known)
    if mapped:
        lines.append("    map => {")
        lines += [f"      {line}" for line in mapped]
        lines.append("    }")
    lines += ["  }}", "  resources => { tierstream => {", "    map => tierstream",
              "    service_types => readyz", "    dcmap => {"]  # fmt: skip
    for group in groups:
        lines.append(f"      {group} => {{")
        lines.append("        up_thresh => 0.01")
        lines += [f"        {n.id} => {_answer(n, answers)}" for n in by_group[group]]
        lines.append("      }")
    lines += ["    }", "  }}", "}}", ""]

    zone = options.zone.rstrip(".")
    zone_file = "\n".join([
        f"$TTL {options.ttl_s}",
        f"@ SOA ns1 hostmaster 1 7200 1800 259200 {options.ttl_s}",
        "@ NS ns1",
        "ns1 A 127.0.0.1" if options.listen.startswith("127.") else f"ns1 A {options.listen}",
        f"{options.name} {options.ttl_s} DYNA geoip!tierstream",
        "",
    ])  # fmt: skip
    return {"config": "\n".join(lines), f"zones/{zone}": zone_file}


def _explicit_map(regions: Sequence[Region]) -> list[str]:
    """Continent and country entries; a country is listed under every continent (only its own
    ever matches), so no country-to-continent table is needed."""
    continents: dict[str, list[NodeGroup]] = {}
    countries: dict[str, list[NodeGroup]] = {}
    for region in regions:
        order = _ordered_from(region, regions)
        for code in sorted(region.continents):
            continents.setdefault(code, order)
        for code in sorted(region.countries):
            countries.setdefault(code, order)
    if not continents and not countries:
        return []
    lines = []
    for continent in CONTINENTS:
        inner = [f"{code} => [{', '.join(order)}]" for code, order in sorted(countries.items())]
        default = continents.get(continent)
        inner.insert(0, f"default => [{', '.join(default)}]" if default else "default => auto")
        if default is None and not countries:
            continue
        lines.append(f"{continent} => {{ {', '.join(inner)} }}")
    return lines


def write_gdnsd(directory: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("conf/red5.properties"))
    parser.add_argument("--format", choices=["gdnsd"], required=True, help="the GeoDNS server")
    parser.add_argument("--out", type=Path, required=True, help="configuration directory to write")
    parser.add_argument("--zone", required=True, help="the zone served, e.g. example.net")
    parser.add_argument("--name", default="live", help="the name clients resolve (default live)")
    parser.add_argument("--monitor", choices=["http", "extmon"], default="http")
    parser.add_argument("--interval", type=int, default=2, help="health check seconds (>= 2)")
    parser.add_argument("--ttl", type=int, default=30, help="answer TTL in seconds")
    parser.add_argument("--listen", default="0.0.0.0", help="address gdnsd listens on")
    parser.add_argument("--port", type=int, default=53, help="DNS port")
    parser.add_argument("--run-dir", type=Path, help="gdnsd's run_dir (default /run/gdnsd)")
    parser.add_argument("--state-dir", type=Path, help="gdnsd's state_dir")
    parser.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="NODE=ADDRESS",
        help="DNS answer for a node whose public URL host is not its address (repeatable)",
    )


def options_from(
    args: argparse.Namespace, geoip_db: Path | None, ca: Path | None = None
) -> GeoDnsOptions:
    if geoip_db is None:
        raise ConfigError("geoip.db", "the GeoDNS server needs the GeoIP City database; set it")
    if args.interval < 2:
        raise ConfigError("--interval", "gdnsd checks health every 2 seconds at the most")
    answers: dict[NodeId, str] = {}
    for item in args.answer:
        name, sep, address = item.partition("=")
        if not sep:
            raise ConfigError("--answer", f"{item!r} is not NODE=ADDRESS")
        answers[NodeId(name)] = address
    return GeoDnsOptions(
        zone=args.zone,
        name=args.name,
        geoip_db=geoip_db,
        monitor=args.monitor,
        interval_s=args.interval,
        ttl_s=args.ttl,
        answers=answers,
        listen=args.listen,
        port=args.port,
        run_dir=args.run_dir,
        state_dir=args.state_dir,
        ca=ca,
    )


async def write_from_registry(settings: Settings, options: GeoDnsOptions, out: Path) -> int:
    """Read the live nodes and write the configuration; how many nodes it answers with."""
    registry = await Registry.connect(
        settings.registry_url,
        dead_after_s=settings.node_dead_timeout_s,
        tls=registry_ssl(settings),
    )
    try:
        nodes = [n for n in await registry.live_nodes() if n.state == "serving"]
    finally:
        await registry.close()
    write_gdnsd(out, gdnsd_files(nodes, settings.regions, options))
    return len(nodes)
