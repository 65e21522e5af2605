"""A node's configuration: one frozen object read once from the properties file and env.

Every key is declared once, as a field of ``Settings`` made by ``key()``: its name
in the file, its parser (whose return type mypy checks against the field's
annotation) and its default; the docstring under the field says what it means.
The README's configuration table and ``conf/red5.properties`` name every key,
which a test checks. A key the file or the environment names but ``Settings``
does not declare, or a value its parser refuses, stops start-up with the key's
name and the reason, so a typo never runs silently with a default.

Environment variables override the file: ``TIERSTREAM_`` followed by the key in
upper case with every non-alphanumeric character turned into ``_``
(``nodeGroup`` → ``TIERSTREAM_NODEGROUP``, ``http.port`` → ``TIERSTREAM_HTTP_PORT``).

A runtime change (``changeServerSettings``) goes through the same path as
start-up (``settings_from``), so it can never hold what a restart would refuse.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote

from cluster.app_settings import AppSettings, app_settings, is_app_key
from cluster.errors import ConfigError, SettingLocked
from cluster.properties import read_properties
from cluster.types import (
    NODE_GROUP_PATTERN,
    NodeGroup,
    NodeId,
    PlacementPolicy,
    Region,
    RoutingMode,
)

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

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its name in the file, how its text is read, and its default."""

    name: str
    parse: Callable[[str], Any]
    default: str

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()


def key(name: str, parse: Callable[[str], T], default: str) -> T:
    """Declare a ``Settings`` field as the properties key ``name``.

    Typed as the parser's result, so ``port: int = key("http.port", _text, ...)``
    is a type error: the parser and the annotation cannot drift apart.
    """
    return cast(T, field(metadata={"key": Key(name, parse, default)}))


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


def _path(raw: str) -> Path:
    return Path(raw.strip())


def _milliseconds(low: int, high: int) -> Callable[[str], float]:
    parse_int = _integer(low, high)
    return lambda raw: parse_int(raw) / 1000.0


def _routing_mode(raw: str) -> RoutingMode:
    value = raw.strip()
    if value not in ("redirect", "off"):
        raise ValueError(f"{value!r} is not one of redirect, off")
    return cast(RoutingMode, value)


def _placement(raw: str) -> PlacementPolicy:
    value = raw.strip()
    if value not in ("spread", "fill"):
        raise ValueError(f"{value!r} is not one of spread, fill")
    return cast(PlacementPolicy, value)


def _optional_path(raw: str) -> Path | None:
    return Path(raw.strip()) if raw.strip() else None


SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
_SSL_MODES: tuple[SslMode, ...] = ("disable", "prefer", "require", "verify-ca", "verify-full")


def _ssl_mode(raw: str) -> SslMode:
    value = raw.strip()
    if value not in _SSL_MODES:
        raise ValueError(f"{value!r} is not one of {', '.join(_SSL_MODES)}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node is configured with. Never mutated: a change builds a new one."""

    node_group: NodeGroup = key("nodeGroup", _node_group, "default")
    """The node's region. Players are served by nodes of their region."""
    server_name: str = key("server.name", _server_name, "")
    """The node's name and registry id; empty means <hostname>-<http.port>."""
    log_level: LogLevel = key("server.log_level", _log_level, "INFO")
    """DEBUG, INFO, WARN or ERROR (TRACE/ALL read as DEBUG)."""
    http_host: str = key("http.host", _text, "127.0.0.1")
    """Address the HTTP/WebSocket server listens on; 0.0.0.0 for all interfaces."""
    http_port: int = key("http.port", _integer(1, 65535), "5080")
    public_url: str = key("server.publicUrl", _url, "")
    """URL players and publishers reach this node at; empty means http://<host>:<port>."""
    internal_url: str = key("server.internalUrl", _url, "")
    """URL other nodes reach this node at; empty means the public URL. https needs
    server.tlsCertificate, server.tlsKey and server.tlsCA."""
    tls_certificate: Path | None = key("server.tlsCertificate", _optional_path, "")
    """PEM certificate (chain) the node serves HTTPS with on http.port and presents to the
    nodes it pulls from; relative to the properties file's directory. Empty: plain HTTP."""
    tls_key: Path | None = key("server.tlsKey", _optional_path, "")
    """PEM private key of server.tlsCertificate."""
    tls_ca: Path | None = key("server.tlsCA", _optional_path, "")
    """PEM certificate(s) of the CA that signs the cluster's nodes: upstreams must present a
    certificate from it, and the internal pull path takes only clients that do."""
    cpu_limit: int = key("server.cpu_limit", _integer(10, 100), "75")
    """CPU percentage above which the node takes no new publishers or players."""
    allowed_dashboard_cidr: tuple[IpNetwork, ...] = key(
        "server.allowed_dashboard_CIDR", _networks, "0.0.0.0/0,::/0"
    )
    """Networks that may call state-changing REST."""
    admin_token: str = key("server.adminToken", _text, "")
    """Bearer token for state-changing REST; empty disables those calls."""
    max_players: int = key("server.maxViewers", _integer(1, 1_000_000), "1000")
    """Players this node serves at most."""
    max_bitrate_kbps: int = key("server.maxBitrateKbps", _integer(1, 100_000_000), "1000000")
    """Outgoing media bitrate this node serves at most, in kbit/s."""
    data_dir: Path = key("server.dataDir", _path, "../var")
    """Directory for the embedded registry; relative to the properties file's directory."""
    registry_url: str = key("clusterdb.url", _registry_url, "")
    """postgresql+asyncpg://... or sqlite+aiosqlite:///...; empty means clusterdb.host if set,
    else the embedded registry in server.dataDir."""
    clusterdb_host: str = key("clusterdb.host", _text, "")
    clusterdb_port: int = key("clusterdb.port", _integer(1, 65535), "5432")
    clusterdb_user: str = key("clusterdb.user", _text, "tierstream")
    clusterdb_password: str = key("clusterdb.password", _text, "")
    clusterdb_name: str = key("clusterdb.name", _text, "tierstream")
    clusterdb_sslmode: SslMode = key("clusterdb.sslmode", _ssl_mode, "prefer")
    """TLS to a PostgreSQL registry, as libpq's sslmode: disable, prefer (TLS if the server
    offers it, unverified), require (TLS, unverified), verify-ca (the server's certificate
    is from clusterdb.sslrootcert's CA), verify-full (and names the host connected to)."""
    clusterdb_sslrootcert: Path | None = key("clusterdb.sslrootcert", _optional_path, "")
    """PEM CA certificate(s) verify-ca and verify-full check the server against."""
    clusterdb_sslcert: Path | None = key("clusterdb.sslcert", _optional_path, "")
    """PEM client certificate presented to PostgreSQL (with clusterdb.sslkey); empty: none."""
    clusterdb_sslkey: Path | None = key("clusterdb.sslkey", _optional_path, "")
    """PEM private key of clusterdb.sslcert."""
    cluster_secret: str = key("cluster.secret", _secret, "")
    """Signs node-to-node pulls: empty, or 32+ characters; required with PostgreSQL."""
    candidate_addresses: tuple[str, ...] = key(
        "webrtc.candidateAddresses", _ip_addresses, "127.0.0.1"
    )
    """IP addresses the node advertises as ICE host candidates."""
    ice_servers: tuple[str, ...] = key("webrtc.iceServers", _ice_servers, "")
    """STUN/TURN URLs; empty means none (no public STUN traffic)."""
    heartbeat_interval_s: float = key(
        "cluster.heartbeatIntervalMs", _milliseconds(100, 60_000), "1000"
    )
    """How often the node reports itself and its load to the registry."""
    node_dead_timeout_s: float = key(
        "cluster.nodeDeadTimeoutMs", _milliseconds(200, 600_000), "3000"
    )
    """A node without a heartbeat for this long is not alive."""
    max_downstreams: int = key("cluster.maxDownstreams", _integer(1, 1000), "8")
    """Pulling nodes one node serves at most before new ones pull from a node below it."""
    idle_pull_timeout_s: float = key(
        "cluster.idlePullTimeoutMs", _milliseconds(0, 3_600_000), "10000"
    )
    """A pull with no players and no downstreams stops after this long."""
    origin_grace_s: float = key("cluster.originGraceMs", _milliseconds(0, 3_600_000), "10000")
    """Players are held this long when a stream's main origin is lost, in case it returns."""
    view_stale_s: float = key("cluster.viewStaleMs", _milliseconds(200, 600_000), "10000")
    """A cluster view older than this (registry unreachable) is not routed on: the node
    serves locally and /readyz answers 503."""
    ready_resume_percent: int = key("server.readyResumePercent", _integer(1, 100), "90")
    """A full node is ready again only once every load is under this percent of its limit
    (hysteresis, so a node at the edge does not flap in DNS answers)."""
    connect_timeout_s: float = key("webrtc.connectTimeoutMs", _milliseconds(1000, 120_000), "10000")
    """A WebRTC session not connected this long after its offer ends; until a publisher's
    media flows, its claim on the stream id lasts no longer and is not renewed."""
    ended_stream_retention_s: float = key(
        "cluster.endedStreamRetentionMs", _milliseconds(0, 30 * 86_400_000), "3600000"
    )
    """Ended streams stay in the registry this long (their broadcast object answers
    "finished"), then are pruned."""
    header_timeout_s: float = key("http.headerTimeoutMs", _milliseconds(100, 600_000), "10000")
    """A request head not complete this long after its connection opened: 408, closed."""
    body_timeout_s: float = key("http.bodyTimeoutMs", _milliseconds(100, 600_000), "30000")
    """A request body not complete this long after its head: the connection closes."""
    max_connections_per_address: int = key(
        "http.maxConnectionsPerAddress", _integer(1, 1_000_000), "256"
    )
    """Open HTTP connections one client address may hold at once; more get 503."""
    websocket_idle_timeout_s: float = key(
        "websocket.idleTimeoutMs", _milliseconds(1000, 3_600_000), "30000"
    )
    """A signalling WebSocket that sends nothing (not even a ping) for this long is closed."""
    dashboard_max_event_streams: int = key("dashboard.maxEventStreams", _integer(1, 10_000), "50")
    """Dashboard live feeds (GET /dashboard/events) this node serves at once; 503 past it."""
    routing: RoutingMode = key("server.routing", _routing_mode, "redirect")
    """redirect: a publish or play another node should serve is sent there (307); off: serve
    everything here (a node behind a load balancer of its own)."""
    trusted_proxies: tuple[IpNetwork, ...] = key("server.trustedProxies", _networks, "")
    """Proxies whose X-Forwarded-For / Forwarded header names the client."""
    geoip_db: Path | None = key("geoip.db", _optional_path, "")
    """MaxMind GeoIP2/GeoLite2 City database, relative to the properties file's directory;
    empty: every client is in this node's region."""
    placement: PlacementPolicy = key("cluster.placement", _placement, "spread")
    """spread: the least-loaded node with room first; fill: the busiest node under
    cluster.fillTarget first (fewer busy nodes, so an autoscaler can remove idle ones)."""
    fill_target: int = key("cluster.fillTarget", _integer(1, 100), "80")
    """With fill, the load (percent of a node's tightest limit) one node is filled to first."""
    reservation_s: float = key("cluster.reservationMs", _milliseconds(100, 600_000), "10000")
    """How long a chosen node keeps room for a client that has not arrived yet."""

    config_path: Path = field(default=Path("red5.properties"))
    """The properties file these settings were read from (and a runtime change rewrites)."""
    written: Mapping[str, str] = field(default_factory=dict)
    """The keys as the file held them; a runtime change is validated on top of these."""
    environ: Mapping[str, str] = field(default_factory=dict)
    """The ``TIERSTREAM_*`` variables the node started with; they win over the file."""
    apps: Mapping[str, AppSettings] = field(default_factory=dict)
    """Per-app stream security: the ``app.<AppName>.<setting>`` keys (``cluster.app_settings``)."""
    regions: tuple[Region, ...] = field(default=())
    """The ``region.<name>.*`` keys of the file: coordinates and explicit client mapping."""

    @property
    def node_id(self) -> NodeId:
        """The node's identity in the registry: its ``server.name``."""
        return NodeId(self.server_name)

    @property
    def embedded_registry(self) -> bool:
        """True when the registry is the embedded SQLite file rather than a shared server."""
        return self.registry_url.startswith("sqlite")

    @property
    def internal_needs_certificate(self) -> bool:
        """True when the internal pull path takes only clients with a certificate from the CA."""
        return self.tls_certificate is not None and self.tls_ca is not None

    @property
    def env_overrides(self) -> frozenset[str]:
        """The keys an environment variable sets: a runtime change of them is refused."""
        return frozenset(k.name for k in KEYS if k.env_name in self.environ)


class LiveSettings:
    """The node's current ``Settings``: called, it gives them; ``replace`` swaps in new ones.

    Every part of a node holds this one object, so a runtime change reaches all
    of them at once and none keeps a stale copy.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __call__(self) -> Settings:
        return self._settings

    def replace(self, settings: Settings) -> None:
        self._settings = settings


KEYS: tuple[Key, ...] = tuple(f.metadata["key"] for f in fields(Settings) if "key" in f.metadata)
KEYS_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
_FIELDS_BY_KEY: dict[str, str] = {
    f.metadata["key"].name: f.name for f in fields(Settings) if "key" in f.metadata
}


def load_settings(config_path: Path, environ: Mapping[str, str]) -> Settings:
    """Read ``config_path`` and ``TIERSTREAM_*`` variables into a validated ``Settings``.

    Raises ``ConfigError`` naming the first bad key.
    """
    try:
        written = read_properties(config_path)
    except OSError as error:
        raise ConfigError(str(config_path), f"cannot read: {error.strerror}") from None
    return settings_from(config_path, written, environ)


def settings_from(
    config_path: Path, written: Mapping[str, str], environ: Mapping[str, str]
) -> Settings:
    """Validate what the file holds (``written``) with the environment on top.

    Start-up and runtime changes both come here; nothing is read or written.
    """
    for name in written:
        if name not in KEYS_BY_NAME and not is_app_key(name) and not REGION_KEY.fullmatch(name):
            raise ConfigError(name, f"unknown key in {config_path}")
    env_names = {k.env_name for k in KEYS}
    ours = {name: value for name, value in environ.items() if name.startswith(ENV_PREFIX)}
    for variable in ours:
        if variable not in env_names:
            raise ConfigError(variable, "unknown environment variable")
    values: dict[str, Any] = {}
    for k in KEYS:
        raw = ours.get(k.env_name, written.get(k.name, k.default))
        try:
            values[_FIELDS_BY_KEY[k.name]] = k.parse(raw)
        except ValueError as error:
            raise ConfigError(k.name, str(error)) from None
    values["apps"] = app_settings(written)
    return _derive(
        Settings(
            **values,
            config_path=config_path,
            written=dict(written),
            environ=ours,
            regions=_regions(written),
        )
    )


REGION_KEY = re.compile(r"region\.([A-Za-z0-9_-]{1,64})\.(latitude|longitude|countries|continents)")
"""``region.<name>.<part>``: a region's coordinates and explicit client mapping (file only)."""


def _degrees(name: str, raw: str, limit: float) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, f"{raw.strip()!r} is not a number of degrees") from None
    if not -limit <= value <= limit:
        raise ConfigError(name, f"{value} is outside -{limit:g}..{limit:g}")
    return value


def _codes(name: str, raw: str) -> frozenset[str]:
    codes = {item.upper() for item in _items(raw)}
    for code in codes:
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise ConfigError(name, f"{code!r} is not a two-letter code")
    return frozenset(codes)


def _regions(written: Mapping[str, str]) -> tuple[Region, ...]:
    """Every region the file describes, by name; a latitude needs its longitude."""
    parts: dict[str, dict[str, Any]] = {}
    for name, raw in written.items():
        match = REGION_KEY.fullmatch(name)
        if match is None:
            continue
        region, part = match.groups()
        if part == "latitude":
            value: Any = _degrees(name, raw, 90)
        elif part == "longitude":
            value = _degrees(name, raw, 180)
        else:
            value = _codes(name, raw)
        parts.setdefault(region, {})[part] = value
    regions = []
    for region, given in sorted(parts.items()):
        if ("latitude" in given) != ("longitude" in given):
            missing = "longitude" if "latitude" in given else "latitude"
            raise ConfigError(f"region.{region}.{missing}", "is needed with the other coordinate")
        regions.append(Region(NodeGroup(region), **given))
    return tuple(regions)


def changed_settings(current: Settings, changes: Mapping[str, str]) -> Settings:
    """``current`` with ``changes`` (key → raw value) applied, through the start-up checks.

    A key pinned by an environment variable is refused: the file change would
    be silently undone at the next start.
    """
    for name in changes:
        if name in current.env_overrides:
            raise SettingLocked(
                f"{name} is set by the environment variable {KEYS_BY_NAME[name].env_name}; "
                "change it there and restart the node"
            )
    return settings_from(current.config_path, {**current.written, **changes}, current.environ)


def differing(old: Settings, new: Settings, names: Iterable[str]) -> list[str]:
    """The keys among ``names`` whose values differ between ``old`` and ``new``."""
    return [n for n in names if getattr(old, _FIELDS_BY_KEY[n]) != getattr(new, _FIELDS_BY_KEY[n])]


def _derive(s: Settings) -> Settings:
    """Fill the values that default from others, and check the keys that depend on each other."""
    server_name = s.server_name or f"{socket.gethostname()}-{s.http_port}"
    reachable_host = (
        s.http_host if s.http_host not in ("0.0.0.0", "::", "") else socket.gethostname()
    )
    if ":" in reachable_host:
        reachable_host = f"[{reachable_host}]"
    scheme = "https" if s.tls_certificate is not None else "http"
    public_url = s.public_url or f"{scheme}://{reachable_host}:{s.http_port}"
    internal_url = s.internal_url or public_url
    data_dir = (s.config_path.parent / s.data_dir).resolve()
    _check_tls(s, internal_url)

    registry_url = s.registry_url
    if registry_url and s.clusterdb_host:
        raise ConfigError("clusterdb.url", "set either clusterdb.url or clusterdb.host, not both")
    if s.clusterdb_host:
        user = quote(s.clusterdb_user, safe="")
        password = quote(s.clusterdb_password, safe="")
        credentials = f"{user}:{password}" if password else user
        registry_url = (
            f"postgresql+asyncpg://{credentials}@{s.clusterdb_host}:{s.clusterdb_port}"
            f"/{s.clusterdb_name}"
        )
    if not registry_url:
        registry_url = f"sqlite+aiosqlite:///{data_dir / 'registry.db'}"
    if registry_url.startswith("postgresql") and not s.cluster_secret:
        raise ConfigError("cluster.secret", "is required when the registry is PostgreSQL")
    if s.node_dead_timeout_s <= s.heartbeat_interval_s:
        raise ConfigError(
            "cluster.nodeDeadTimeoutMs", "must be longer than cluster.heartbeatIntervalMs"
        )
    if s.view_stale_s <= s.heartbeat_interval_s:
        raise ConfigError("cluster.viewStaleMs", "must be longer than cluster.heartbeatIntervalMs")
    return replace(
        s,
        server_name=server_name,
        public_url=public_url,
        internal_url=internal_url,
        data_dir=data_dir,
        registry_url=registry_url,
        geoip_db=_beside(s, s.geoip_db),
        tls_certificate=_beside(s, s.tls_certificate),
        tls_key=_beside(s, s.tls_key),
        tls_ca=_beside(s, s.tls_ca),
        clusterdb_sslrootcert=_beside(s, s.clusterdb_sslrootcert),
        clusterdb_sslcert=_beside(s, s.clusterdb_sslcert),
        clusterdb_sslkey=_beside(s, s.clusterdb_sslkey),
    )


def _beside(s: Settings, path: Path | None) -> Path | None:
    """A configured file, relative to the properties file's directory."""
    return (s.config_path.parent / path).resolve() if path is not None else None


def _check_tls(s: Settings, internal_url: str) -> None:
    """The TLS keys that only make sense together. Whether the files load is checked
    when the node builds its contexts (``cluster.tls``), naming the key as well."""
    pairs = (
        ("server.tlsCertificate", s.tls_certificate, "server.tlsKey", s.tls_key),
        ("clusterdb.sslcert", s.clusterdb_sslcert, "clusterdb.sslkey", s.clusterdb_sslkey),
    )
    for first, first_value, second, second_value in pairs:
        if (first_value is None) != (second_value is None):
            missing, given = (second, first) if second_value is None else (first, second)
            raise ConfigError(missing, f"is needed with {given}")
    if internal_url.startswith("https://") and (s.tls_certificate is None or s.tls_ca is None):
        raise ConfigError(
            "server.internalUrl",
            f"{internal_url} is https: set server.tlsCertificate, server.tlsKey and "
            "server.tlsCA (the nodes' CA), so this node serves TLS and verifies the nodes "
            "it pulls from",
        )
    if s.tls_certificate is not None and internal_url.startswith("http://"):
        raise ConfigError(
            "server.internalUrl",
            f"{internal_url} is plain http, but the node serves only HTTPS "
            "(server.tlsCertificate is set): use https://",
        )
    if s.clusterdb_sslmode in ("verify-ca", "verify-full") and s.clusterdb_sslrootcert is None:
        raise ConfigError(
            "clusterdb.sslrootcert",
            f"is needed with clusterdb.sslmode={s.clusterdb_sslmode}: the CA to verify the "
            "registry's certificate against",
        )
    if s.clusterdb_sslcert is not None and s.clusterdb_sslmode in ("disable", "prefer"):
        raise ConfigError(
            "clusterdb.sslcert",
            "a client certificate needs clusterdb.sslmode require or stricter "
            f"(it is {s.clusterdb_sslmode})",
        )
