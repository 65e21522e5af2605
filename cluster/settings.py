"""A node's configuration: one frozen object read once from the properties file and env.

Every key is declared once in ``KEYS`` with its parser, default and meaning;
the README's configuration reference mirrors that table. A key the file or the
environment names but ``KEYS`` does not, or a value its parser refuses, stops
start-up with the key's name and the reason, so a typo never runs silently
with a default.

Environment variables override the file: ``TIERSTREAM_`` followed by the key in
upper case with every non-alphanumeric character turned into ``_``
(``nodeGroup`` → ``TIERSTREAM_NODEGROUP``, ``http.port`` → ``TIERSTREAM_HTTP_PORT``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

from cluster.errors import ConfigError
from cluster.properties import read_properties
from cluster.types import NODE_GROUP_PATTERN, NodeGroup, NodeId

ENV_PREFIX = "TIERSTREAM_"

LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOG_LEVEL_ALIASES: dict[str, LogLevel] = {
    "ALL": "DEBUG",
    "TRACE": "DEBUG",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARN": "WARN",
    "WARNING": "WARN",
    "ERROR": "ERROR",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node is configured with. Replace, never mutate: see ``with_node_group``."""

    config_path: Path
    node_group: NodeGroup
    server_name: str
    log_level: LogLevel
    http_host: str
    http_port: int
    public_url: str
    internal_url: str
    cpu_limit: int
    allowed_dashboard_cidr: tuple[IpNetwork, ...]
    admin_token: str
    max_players: int
    max_bitrate_kbps: int
    data_dir: Path
    registry_url: str
    cluster_secret: str
    candidate_addresses: tuple[str, ...]
    ice_servers: tuple[str, ...]
    heartbeat_interval_s: float
    node_dead_timeout_s: float
    max_downstreams: int
    idle_pull_timeout_s: float
    origin_grace_s: float
    env_overrides: frozenset[str]

    @property
    def node_id(self) -> NodeId:
        """The node's identity in the registry: its ``server.name``."""
        return NodeId(self.server_name)

    @property
    def embedded_registry(self) -> bool:
        """True when the registry is the embedded SQLite file rather than a shared server."""
        return self.registry_url.startswith("sqlite")

    def with_node_group(self, group: NodeGroup) -> Settings:
        """The same settings in another region (a runtime ``changeServerSettings``)."""
        return replace(self, node_group=group)


# --- value parsers: each takes the raw text and returns the typed value or raises ValueError


def _text(raw: str) -> str:
    return raw.strip()


def _secret(raw: str) -> str:
    value = raw.strip()
    if value and len(value) < 32:
        raise ValueError(f"must be at least 32 characters to sign with HS256 (has {len(value)})")
    return value


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"{raw.strip()!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _node_group(raw: str) -> NodeGroup:
    value = raw.strip()
    if not NODE_GROUP_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
    return NodeGroup(value)


def _server_name(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", value):
        raise ValueError(f"{value!r} must be 1 to 128 of A-Z a-z 0-9 _ . : -")
    return value


def _log_level(raw: str) -> LogLevel:
    value = raw.strip().upper()
    if value not in _LOG_LEVEL_ALIASES:
        raise ValueError(f"{raw.strip()!r} is not one of {', '.join(_LOG_LEVEL_ALIASES)}")
    return _LOG_LEVEL_ALIASES[value]


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _networks(raw: str) -> tuple[IpNetwork, ...]:
    networks: list[IpNetwork] = []
    for item in _items(raw):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network such as 10.0.0.0/8") from None
    return tuple(networks)


def _ip_addresses(raw: str) -> tuple[str, ...]:
    addresses: list[str] = []
    for item in _items(raw):
        try:
            addresses.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    if not addresses:
        raise ValueError("name at least one address to advertise")
    return tuple(addresses)


def _ice_servers(raw: str) -> tuple[str, ...]:
    servers = tuple(_items(raw))
    for server in servers:
        if not re.match(r"(stun|stuns|turn|turns):", server):
            raise ValueError(f"{server!r} is not a stun:, stuns:, turn: or turns: URL")
    return servers


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if value and not re.fullmatch(r"https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
    return value


def _registry_url(raw: str) -> str:
    value = raw.strip()
    if value and not re.match(r"(postgresql\+asyncpg|sqlite\+aiosqlite)://", value):
        raise ValueError("must start with postgresql+asyncpg:// or sqlite+aiosqlite://")
    return value


def _milliseconds(low: int, high: int) -> Callable[[str], float]:
    parse_int = _integer(low, high)
    return lambda raw: parse_int(raw) / 1000.0


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its name in the file, where it lands, and how it is read."""

    name: str
    field: str
    parse: Callable[[str], Any]
    default: str
    doc: str

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()


KEYS: tuple[Key, ...] = (
    Key(
        "nodeGroup",
        "node_group",
        _node_group,
        "default",
        "The node's region. Players are served by nodes of their region.",
    ),
    Key(
        "server.name",
        "server_name",
        _server_name,
        "",
        "The node's name and registry id; empty means <hostname>-<http.port>.",
    ),
    Key(
        "server.log_level",
        "log_level",
        _log_level,
        "INFO",
        "DEBUG, INFO, WARN or ERROR (TRACE/ALL read as DEBUG).",
    ),
    Key(
        "http.host",
        "http_host",
        _text,
        "127.0.0.1",
        "Address the HTTP/WebSocket server listens on; 0.0.0.0 for all interfaces.",
    ),
    Key("http.port", "http_port", _integer(1, 65535), "5080", "HTTP/WebSocket port."),
    Key(
        "server.publicUrl",
        "public_url",
        _url,
        "",
        "URL players and publishers reach this node at; empty means http://<host>:<port>.",
    ),
    Key(
        "server.internalUrl",
        "internal_url",
        _url,
        "",
        "URL other nodes reach this node at; empty means the public URL.",
    ),
    Key(
        "server.cpu_limit",
        "cpu_limit",
        _integer(10, 100),
        "75",
        "CPU percentage above which the node takes no new publishers or players.",
    ),
    Key(
        "server.allowed_dashboard_CIDR",
        "allowed_dashboard_cidr",
        _networks,
        "0.0.0.0/0,::/0",
        "Comma-separated networks that may call state-changing REST.",
    ),
    Key(
        "server.adminToken",
        "admin_token",
        _text,
        "",
        "Bearer token for state-changing REST; empty disables those calls.",
    ),
    Key(
        "server.maxViewers",
        "max_players",
        _integer(1, 1_000_000),
        "1000",
        "Players this node serves at most.",
    ),
    Key(
        "server.maxBitrateKbps",
        "max_bitrate_kbps",
        _integer(1, 100_000_000),
        "1000000",
        "Outgoing media bitrate this node serves at most, in kbit/s.",
    ),
    Key(
        "server.dataDir",
        "data_dir",
        _text,
        "../var",
        "Directory for the embedded registry; relative to the properties file's directory.",
    ),
    Key(
        "clusterdb.url",
        "registry_url",
        _registry_url,
        "",
        "Registry URL (postgresql+asyncpg://... or sqlite+aiosqlite:///...); empty means "
        "clusterdb.host if set, else the embedded registry in server.dataDir.",
    ),
    Key("clusterdb.host", "clusterdb_host", _text, "", "PostgreSQL host of the registry."),
    Key(
        "clusterdb.port",
        "clusterdb_port",
        _integer(1, 65535),
        "5432",
        "PostgreSQL port of the registry.",
    ),
    Key("clusterdb.user", "clusterdb_user", _text, "tierstream", "PostgreSQL user."),
    Key("clusterdb.password", "clusterdb_password", _text, "", "PostgreSQL password."),
    Key("clusterdb.name", "clusterdb_name", _text, "tierstream", "PostgreSQL database name."),
    Key(
        "cluster.secret",
        "cluster_secret",
        _secret,
        "",
        "Secret shared by all nodes to sign node-to-node pulls: empty, or at least 32 "
        "characters; required with a PostgreSQL registry.",
    ),
    Key(
        "webrtc.candidateAddresses",
        "candidate_addresses",
        _ip_addresses,
        "127.0.0.1",
        "Comma-separated IP addresses the node advertises as ICE host candidates.",
    ),
    Key(
        "webrtc.iceServers",
        "ice_servers",
        _ice_servers,
        "",
        "Comma-separated STUN/TURN URLs; empty means none (no public STUN traffic).",
    ),
    Key(
        "cluster.heartbeatIntervalMs",
        "heartbeat_interval_s",
        _milliseconds(100, 60_000),
        "1000",
        "How often the node reports itself and its load to the registry.",
    ),
    Key(
        "cluster.nodeDeadTimeoutMs",
        "node_dead_timeout_s",
        _milliseconds(200, 600_000),
        "3000",
        "A node without a heartbeat for this long is not alive.",
    ),
    Key(
        "cluster.maxDownstreams",
        "max_downstreams",
        _integer(1, 1000),
        "8",
        "Pulling nodes one node serves at most before new ones pull from a node below it.",
    ),
    Key(
        "cluster.idlePullTimeoutMs",
        "idle_pull_timeout_s",
        _milliseconds(0, 3_600_000),
        "10000",
        "A pull with no players and no pulling nodes stops after this long.",
    ),
    Key(
        "cluster.originGraceMs",
        "origin_grace_s",
        _milliseconds(0, 3_600_000),
        "10000",
        "Players are held this long when a stream's main origin is lost, "
        "in case the stream is published again.",
    ),
)
KEYS_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


def load_settings(config_path: Path, environ: Mapping[str, str]) -> Settings:
    """Read ``config_path`` and ``TIERSTREAM_*`` variables into a validated ``Settings``.

    Raises ``ConfigError`` naming the first bad key.
    """
    try:
        written = read_properties(config_path)
    except OSError as error:
        raise ConfigError(str(config_path), f"cannot read: {error.strerror}") from None
    for name in written:
        if name not in KEYS_BY_NAME:
            raise ConfigError(name, f"unknown key in {config_path}")
    env_names = {key.env_name: key for key in KEYS}
    for variable in environ:
        if variable.startswith(ENV_PREFIX) and variable not in env_names:
            raise ConfigError(variable, "unknown environment variable")

    values: dict[str, Any] = {}
    overrides: set[str] = set()
    for key in KEYS:
        raw = written.get(key.name, key.default)
        if key.env_name in environ:
            raw = environ[key.env_name]
            overrides.add(key.name)
        try:
            values[key.field] = key.parse(raw)
        except ValueError as error:
            raise ConfigError(key.name, str(error)) from None
    return _derive(config_path, values, frozenset(overrides))


def _derive(config_path: Path, values: dict[str, Any], overrides: frozenset[str]) -> Settings:
    """Fill the values that default from others, and check the keys that depend on each other."""
    port = cast(int, values["http_port"])
    host = cast(str, values["http_host"])
    server_name = values["server_name"] or f"{socket.gethostname()}-{port}"
    reachable_host = host if host not in ("0.0.0.0", "::", "") else socket.gethostname()
    if ":" in reachable_host:
        reachable_host = f"[{reachable_host}]"
    public_url = values["public_url"] or f"http://{reachable_host}:{port}"
    internal_url = values["internal_url"] or public_url
    data_dir = (config_path.parent / cast(str, values["data_dir"])).resolve()

    registry_url = cast(str, values["registry_url"])
    db_host = cast(str, values["clusterdb_host"])
    if registry_url and db_host:
        raise ConfigError("clusterdb.url", "set either clusterdb.url or clusterdb.host, not both")
    if db_host:
        user = quote(cast(str, values["clusterdb_user"]), safe="")
        password = quote(cast(str, values["clusterdb_password"]), safe="")
        credentials = f"{user}:{password}" if password else user
        registry_url = (
            f"postgresql+asyncpg://{credentials}@{db_host}:{values['clusterdb_port']}"
            f"/{values['clusterdb_name']}"
        )
    if not registry_url:
        registry_url = f"sqlite+aiosqlite:///{data_dir / 'registry.db'}"
    secret = cast(str, values["cluster_secret"])
    if registry_url.startswith("postgresql") and not secret:
        raise ConfigError("cluster.secret", "is required when the registry is PostgreSQL")
    if values["node_dead_timeout_s"] <= values["heartbeat_interval_s"]:
        raise ConfigError(
            "cluster.nodeDeadTimeoutMs", "must be longer than cluster.heartbeatIntervalMs"
        )

    direct = {f.name: values[f.name] for f in fields(Settings) if f.name in values}
    return Settings(
        **{
            **direct,
            "config_path": config_path,
            "server_name": server_name,
            "public_url": public_url,
            "internal_url": internal_url,
            "data_dir": data_dir,
            "registry_url": registry_url,
            "env_overrides": overrides,
        }
    )
