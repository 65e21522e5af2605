"""A release run as Kubernetes would run it, against a private PostgreSQL: the migrate hook Job's
container with the image's entrypoint from the project's venv and the environment the kubelet
would give it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from cluster.registry import Registry
from tests.support import REPO
from tests.support.helm import (
    CLUSTER_SECRET,
    Manifest,
    Pod,
    configmap_file,
    container,
    container_env,
    find,
    mounted,
    pod_secrets,
    render,
)
from tests.support.postgres import PostgresServer, free_port

pytestmark = pytest.mark.postgres

VENV_BIN = REPO / ".venv" / "bin"
ENTRYPOINT = VENV_BIN / "tierstream"
"""The image's ENTRYPOINT (tests/helm/test_image.py checks that the two agree)."""
JOB_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0


def release(server: PostgresServer, tmp_path: Path, helm_home: Path) -> list[Manifest]:
    url = asyncio.run(server.create_database(f"chart_{os.getpid()}_{tmp_path.name[-8:].lower()}"))
    values = {
        "nodeGroup": "eu",
        "httpPort": free_port(),
        "secrets": {"values": {"cluster.secret": CLUSTER_SECRET, "clusterdb.url": url}},
    }
    return render("eu", [values], helm_home)


def run_migrate_job(manifests: list[Manifest], workdir: Path) -> subprocess.CompletedProcess[str]:
    job = find(manifests, "Job")
    migrate = container(job, "migrate")
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    volumes = {
        volume["name"]: configmap_file(
            manifests, volume["configMap"]["name"], "red5.properties", workdir / "job"
        ).parent
    }
    args = list(migrate["args"])
    args[args.index("--config") + 1] = str(mounted(migrate, args[-1], volumes))
    env = container_env(
        migrate, Pod(name="eu-tierstream-migrate-x", secrets=pod_secrets(manifests, {}))
    )
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env={**env, "PATH": f"{VENV_BIN}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        check=False,
    )


async def _no_live_nodes(url: str) -> bool:
    registry = await Registry.connect(url)
    try:
        return await registry.live_nodes() == []
    finally:
        await registry.close()


def test_the_migrate_job_brings_an_empty_registry_to_head(
    postgres_server: PostgresServer, tmp_path: Path, helm_home: Path
) -> None:
    manifests = release(postgres_server, tmp_path, helm_home)
    result = run_migrate_job(manifests, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "registry schema at revision" in result.stderr
    url = pod_secrets(manifests, {})["eu-tierstream-migrate"]["clusterdb.url"]
    assert asyncio.run(_no_live_nodes(url))
    again = run_migrate_job(manifests, tmp_path)
    assert again.returncode == 0, again.stderr
