"""Bad values fail at ``helm install`` (values.schema.json, or the chart's own checks), naming the
value, never at pod start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import javaproperties
import pytest

from cluster.settings import KEYS, Key, load_settings
from tests.support.helm import REQUIRED_SECRETS, prepare_pod, render, render_error, schema

WITH_SECRETS: dict[str, Any] = {"secrets": {"values": REQUIRED_SECRETS}}

BAD_VALUES = [
    pytest.param({"nodeGroup": "eu west"}, "/nodeGroup", id="a nodeGroup with a space"),
    pytest.param({"nodeGroup": ""}, "/nodeGroup", id="an empty nodeGroup"),
    pytest.param(
        {"config": {"server": {"maxViewers": -1}}},
        "/config/server/maxViewers",
        id="a negative player limit",
    ),
    pytest.param(
        {"config": {"server": {"cpu_limit": 101}}},
        "/config/server/cpu_limit",
        id="a CPU limit above 100",
    ),
    pytest.param(
        {"config": {"cluster": {"maxDownstreams": 0}}},
        "/config/cluster/maxDownstreams",
        id="no downstream allowed",
    ),
    pytest.param(
        {"config": {"cluster": {"heartbeatIntervalMs": "fast"}}},
        "/config/cluster/heartbeatIntervalMs",
        id="a timing that is not a number",
    ),
    pytest.param(
        {"config": {"server": {"log_level": "LOUD"}}},
        "/config/server/log_level",
        id="an unknown log level",
    ),
    pytest.param(
        {"config": {"server": {"maxViewer": 10}}},
        "maxViewer",
        id="a misspelt configuration key",
    ),
    pytest.param(
        {"config": {"cluster": {"secret": "x" * 40}}},
        "/config/cluster/secret",
        id="a secret in the ConfigMap's values",
    ),
    pytest.param(
        {"config": {"server": {"name": "node-1"}}},
        "/config/server/name",
        id="server.name, which is the pod's name",
    ),
    pytest.param(
        {"config": {"webrtc": {"iceServers": ["http://turn.example.net"]}}},
        "/config/webrtc/iceServers",
        id="an ICE server that is not a stun or turn URL",
    ),
    pytest.param({"replicas": -1}, "/replicas", id="negative replicas"),
    pytest.param({"replica": 3}, "replica", id="a misspelt top-level value"),
    pytest.param({"httpPort": 70000}, "/httpPort", id="a port above 65535"),
    pytest.param(
        {"ice": {"address": "public"}}, "/ice/address", id="an unknown ICE address source"
    ),
    pytest.param(
        {"secrets": {"values": {**REQUIRED_SECRETS, "cluster.secret": "short"}}},
        "cluster.secret",
        id="a cluster secret under 32 characters",
    ),
    pytest.param(
        {"shutdown": {"terminationGracePeriodSeconds": 0}},
        "/shutdown/terminationGracePeriodSeconds",
        id="no time to drain",
    ),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES)
def test_a_bad_value_fails_rendering_naming_it(
    values: dict[str, Any], named: str, helm_home: Path
) -> None:
    error = render_error([WITH_SECRETS, values], helm_home)
    assert named in error


CHART_CHECKS = [
    pytest.param(
        {"secrets": {"values": {}}},
        "secrets.values.cluster.secret is required",
        id="no cluster secret and no existing Secret",
    ),
    pytest.param(
        {"secrets": {"values": {"cluster.secret": "s" * 32}}},
        "secrets.values.clusterdb.url is required",
        id="no registry",
    ),
    pytest.param(
        {**WITH_SECRETS, "hostNetwork": False},
        "hostNetwork=false needs a TURN server",
        id="no host network and no TURN server",
    ),
    pytest.param(
        {**WITH_SECRETS, "ice": {"address": "external"}},
        "ice.address=external needs ice.externalAddresses",
        id="external addresses without the map",
    ),
    pytest.param(
        {**WITH_SECRETS, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
        "autoscaling.minReplicas is above autoscaling.maxReplicas",
        id="autoscaling bounds crossed",
    ),
]


@pytest.mark.parametrize(("values", "message"), CHART_CHECKS)
def test_values_no_schema_can_judge_fail_with_the_reason(
    values: dict[str, Any], message: str, helm_home: Path
) -> None:
    assert message in render_error([values], helm_home)


def test_an_existing_secret_needs_no_secret_values(helm_home: Path) -> None:
    rendered = render("eu", [{"secrets": {"existingSecret": "tierstream"}}], helm_home)
    assert not [m for m in rendered if m["kind"] == "Secret"]


def test_a_turn_server_allows_pod_networking(helm_home: Path) -> None:
    values = {
        **WITH_SECRETS,
        "hostNetwork": False,
        "config": {"webrtc": {"iceServers": ["turn:turn.example.net:3478"]}},
    }
    (sts,) = [m for m in render("eu", [values], helm_home) if m["kind"] == "StatefulSet"]
    assert sts["spec"]["template"]["spec"]["hostNetwork"] is False


def schema_entry(name: str) -> Any:
    """The schema of key ``name`` under config; None where it has none (test_chart.py's
    test_every_configuration_key_has_its_place_in_the_chart names those)."""
    entry: Any = schema()["properties"]["config"]
    for part in name.split("."):
        entry = entry.get("properties", {}).get(part) if entry else None
    return entry


SETTABLE = [k for k in KEYS if schema_entry(k.name) not in (False, None)]


@pytest.mark.parametrize("key", SETTABLE, ids=[k.name for k in SETTABLE])
def test_the_schema_allows_exactly_what_the_node_accepts(key: Key) -> None:
    entry = schema_entry(key.name)
    if entry.get("type") == "integer":
        low, high = entry["minimum"], entry["maximum"]
        assert low <= int(key.default) <= high
        for inside in (low, high):
            key.parse(str(inside))
        for outside in (low - 1, high + 1):
            with pytest.raises(ValueError):
                key.parse(str(outside))
    elif "enum" in entry:
        assert key.default in entry["enum"]
        for allowed in entry["enum"]:
            key.parse(allowed)


def test_every_settable_key_at_the_nodes_default_renders_a_loadable_configuration(
    helm_home: Path, tmp_path: Path
) -> None:
    config: dict[str, Any] = {}
    for key in SETTABLE:
        *groups, last = key.name.split(".")
        target = config
        for group in groups:
            target = target.setdefault(group, {})
        entry = schema_entry(key.name)
        target[last] = int(key.default) if entry.get("type") == "integer" else key.default
    rendered = render("eu", [WITH_SECRETS, {"config": config}], helm_home)
    pod = prepare_pod(rendered, {}, 0, tmp_path)
    settings = load_settings(pod.config, pod.env)
    written = javaproperties.loads(pod.config.read_text(encoding="utf-8"))
    for key in SETTABLE:
        assert written[key.name] == key.default, key.name
    assert settings.node_group == "default"
