"""Configuration: one frozen object from the properties file and TIERSTREAM_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.settings import KEYS, load_settings
from tests.support import REPO

SHIPPED = REPO / "conf" / "red5.properties"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "red5.properties"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_documents_every_key_and_loads() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    for key in KEYS:
        assert f"\n{key.name}=" in text, f"{key.name} is missing from conf/red5.properties"
    settings = load_settings(SHIPPED, {})
    assert settings.http_port == 5080
    assert settings.node_group == "default"
    assert settings.candidate_addresses == ("127.0.0.1",)
    assert settings.ice_servers == ()
    assert settings.embedded_registry


def test_the_readme_table_names_every_key() -> None:
    rows = [
        line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `")
    ]
    documented = {row.split("`")[1] for row in rows}
    missing = [key.name for key in KEYS if key.name not in documented]
    assert not missing, f"the README's configuration table lacks {missing}"


def test_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), {})
    assert settings.node_group == "default"
    assert settings.http_host == "127.0.0.1"
    assert settings.public_url == "http://127.0.0.1:5080"
    assert settings.internal_url == settings.public_url
    assert settings.server_name.endswith("-5080")
    assert settings.heartbeat_interval_s == 1.0
    assert settings.node_dead_timeout_s == 3.0
    assert settings.registry_url == f"sqlite+aiosqlite:///{tmp_path.parent / 'var' / 'registry.db'}"


def test_environment_overrides_the_file_and_is_remembered(tmp_path: Path) -> None:
    path = write(tmp_path, "nodeGroup=eu\nhttp.port=6000\n")
    settings = load_settings(path, {"TIERSTREAM_NODEGROUP": "us", "TIERSTREAM_HTTP_PORT": "7000"})
    assert (settings.node_group, settings.http_port) == ("us", 7000)
    assert settings.env_overrides == {"nodeGroup", "http.port"}


def test_postgres_parts_compose_the_registry_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "clusterdb.host=db.internal\nclusterdb.password=p@ss/word\n"
        "cluster.secret=0123456789abcdef0123456789abcdef\n",
    )
    settings = load_settings(path, {})
    assert settings.registry_url == (
        "postgresql+asyncpg://tierstream:p%40ss%2Fword@db.internal:5432/tierstream"
    )
    assert not settings.embedded_registry


@pytest.mark.parametrize(
    ("text", "environ", "key", "reason"),
    [
        ("nodegroup=eu\n", {}, "nodegroup", "unknown key"),
        ("", {"TIERSTREAM_NODE_GROUP": "eu"}, "TIERSTREAM_NODE_GROUP", "unknown environment"),
        ("nodeGroup=eu west\n", {}, "nodeGroup", "must be 1 to 64"),
        ("http.port=80a\n", {}, "http.port", "not a whole number"),
        ("http.port=70000\n", {}, "http.port", "outside 1..65535"),
        ("server.allowed_dashboard_CIDR=10.0.0.0/33\n", {}, "server.allowed_dashboard_CIDR", ""),
        ("webrtc.candidateAddresses=localhost\n", {}, "webrtc.candidateAddresses", "not an IP"),
        ("webrtc.candidateAddresses=\n", {}, "webrtc.candidateAddresses", "at least one"),
        ("webrtc.iceServers=http://x\n", {}, "webrtc.iceServers", "stun:"),
        ("server.log_level=LOUD\n", {}, "server.log_level", "not one of"),
        ("clusterdb.url=mysql://x\n", {}, "clusterdb.url", "postgresql+asyncpg"),
        ("clusterdb.host=db\n", {}, "cluster.secret", "required when the registry is Postgre"),
        ("cluster.secret=short\n", {}, "cluster.secret", "at least 32 characters"),
        (
            "clusterdb.url=sqlite+aiosqlite:///x.db\nclusterdb.host=db\n",
            {},
            "clusterdb.url",
            "not both",
        ),
        ("cluster.heartbeatIntervalMs=3000\n", {}, "cluster.nodeDeadTimeoutMs", "longer"),
    ],
    ids=[
        "unknown key is refused by name",
        "unknown TIERSTREAM_ variable is refused by name",
        "node group with a space",
        "port that is not a number",
        "port out of range",
        "malformed CIDR",
        "candidate that is not an IP address",
        "no candidate address at all",
        "ICE server that is not stun or turn",
        "unknown log level",
        "registry URL of an unsupported database",
        "PostgreSQL registry without a cluster secret",
        "cluster secret too short to sign with",
        "both a registry URL and a host",
        "dead timeout not longer than the heartbeat",
    ],
)
def test_bad_configuration_stops_start_up_naming_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ)
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.properties", {})
