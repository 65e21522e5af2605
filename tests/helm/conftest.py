"""The chart's value sets: the README's minimal install and the two-region example."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.helm import (
    ADMIN_TOKEN,
    CLUSTER_SECRET,
    EXAMPLES,
    JWT_SECRET,
    REQUIRED_SECRETS,
    Manifest,
    render,
)


@dataclass(frozen=True)
class ValueSet:
    """One way to install a region: its release name, its values, the Secrets the pods see."""

    release: str
    values: list[Mapping[str, Any] | Path]
    node_group: str
    existing_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


VALUE_SETS = {
    "default values with the required secrets": ValueSet(
        "tierstream", [{"secrets": {"values": REQUIRED_SECRETS}}], "default"
    ),
    "region eu from helm/examples/eu.yaml": ValueSet(
        "eu",
        [EXAMPLES / "eu.yaml"],
        "eu",
        {
            "tierstream": {
                "cluster.secret": CLUSTER_SECRET,
                "clusterdb.password": "chart-test-password",
                "server.adminToken": ADMIN_TOKEN,
            }
        },
    ),
    "region us from helm/examples/us.yaml": ValueSet(
        "us",
        [
            EXAMPLES / "us.yaml",
            {
                "secrets": {
                    "values": {
                        **REQUIRED_SECRETS,
                        "server.adminToken": ADMIN_TOKEN,
                        "app.LiveApp.jwtStreamSecretKey": JWT_SECRET,
                    }
                }
            },
        ],
        "us",
    ),
}


@pytest.fixture(params=list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def value_set(request: pytest.FixtureRequest) -> ValueSet:
    chosen: ValueSet = request.param
    return chosen


@pytest.fixture
def helm_home(tmp_path: Path) -> Path:
    home = tmp_path / "helm-home"
    home.mkdir()
    return home


@pytest.fixture
def manifests(value_set: ValueSet, helm_home: Path) -> list[Manifest]:
    return render(value_set.release, value_set.values, helm_home)
