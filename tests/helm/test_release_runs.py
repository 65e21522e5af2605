"""A release run as Kubernetes would run it, against a private PostgreSQL: the migrate hook Job's
container, then a StatefulSet pod's init step and node container, each with the image's
entrypoint from the project's venv and the environment the kubelet would give it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cluster.registry import Registry
from tests.support import REPO
from tests.support.helm import (
    ADMIN_TOKEN,
    CLUSTER_SECRET,
    JWT_SECRET,
    Manifest,
    Pod,
    container,
    container_env,
    find,
    materialize_volumes,
    mounted,
    pod_secrets,
    prepare_pod,
    render,
    run_init_step,
    statefulset,
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
        # JWT control needs the app's key, which reaches the file from the Secret: a node or
        # the Job that missed it would refuse to start.
        "config": {"app": {"LiveApp": {"playJwtControlEnabled": True}}},
        "secrets": {
            "values": {
                "cluster.secret": CLUSTER_SECRET,
                "clusterdb.url": url,
                "server.adminToken": ADMIN_TOKEN,
                "app.LiveApp.jwtStreamSecretKey": JWT_SECRET,
            }
        },
    }
    return render("eu", [values], helm_home)


def run_migrate_job(manifests: list[Manifest], workdir: Path) -> subprocess.CompletedProcess[str]:
    """The hook Job's pod: its volumes, its init step, then its container's command."""
    job = find(manifests, "Job")
    secrets = pod_secrets(manifests, {})
    volumes = materialize_volumes(job, manifests, secrets, workdir / "job")
    run_init_step(job, volumes)
    migrate = container(job, "migrate")
    args = [str(mounted(migrate, a, volumes)) if a.startswith("/") else a for a in migrate["args"]]
    env = container_env(migrate, Pod(name="eu-tierstream-migrate-x", secrets=secrets))
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


@dataclass(frozen=True)
class PodProcess:
    """A running pod's node process, its URL and its log."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_for(self, path: str) -> httpx.Response:
        """Ask ``path`` until it answers 200, as a probe would; bounded."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                response = httpx.get(self.url + path, timeout=2.0)
                if response.status_code == 200:
                    return response
                assert response.status_code != 404, f"{path}: the node has no such route"
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{path} never answered 200\n{self.log.read_text()}"
            time.sleep(0.2)


@contextmanager
def running_pod(manifests: list[Manifest], workdir: Path) -> Iterator[PodProcess]:
    """Pod 0 of the StatefulSet: its init step, then its node container's command, until it
    answers its startup probe; stopped by its PID at the end (SIGTERM, as the kubelet does)."""
    sts = statefulset(manifests)
    pod = prepare_pod(manifests, {}, 0, workdir)
    node = container(sts, "node")
    args = list(node["args"])
    args[args.index("--config") + 1] = str(pod.config)
    (port,) = [p["containerPort"] for p in node["ports"] if p["name"] == "http"]
    # Loopback only in tests: the chart's nodes listen on every interface.
    env = {**pod.env, "TIERSTREAM_HTTP_HOST": "127.0.0.1", "PATH": f"{VENV_BIN}:/usr/bin:/bin"}
    log = workdir / "node.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(ENTRYPOINT), *args], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    running = PodProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        running.wait_for(node["startupProbe"]["httpGet"]["path"])
        yield running
        os.kill(process.pid, signal.SIGTERM)
        grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert process.wait(timeout=grace) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_pod_joins_the_registry_answers_its_probes_and_drains_on_sigterm(
    postgres_server: PostgresServer, tmp_path: Path, helm_home: Path
) -> None:
    manifests = release(postgres_server, tmp_path, helm_home)
    assert run_migrate_job(manifests, tmp_path).returncode == 0
    node = container(statefulset(manifests), "node")
    with running_pod(manifests, tmp_path / "pod-0") as pod:
        for probe in ("livenessProbe", "readinessProbe"):
            pod.wait_for(node[probe]["httpGet"]["path"])
        listed = pod.wait_for("/rest/v2/cluster/nodes/0/10").json()
        assert [(n["id"], n["nodeGroup"]) for n in listed] == [("eu-tierstream-0", "eu")]
    assert "left the cluster" in (tmp_path / "pod-0" / "node.log").read_text()


def test_a_runtime_region_change_survives_the_pods_restart(
    postgres_server: PostgresServer, tmp_path: Path, helm_home: Path
) -> None:
    manifests = release(postgres_server, tmp_path, helm_home)
    assert run_migrate_job(manifests, tmp_path).returncode == 0
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with running_pod(manifests, tmp_path / "pod-0") as pod:
        changed = httpx.post(
            pod.url + "/rest/changeServerSettings",
            json={"nodeGroup": "ap"},
            headers=admin,
            timeout=5.0,
        )
        assert changed.status_code == 200, changed.text
    with running_pod(manifests, tmp_path / "pod-0") as pod:
        settings = pod.wait_for("/rest/getServerSettings").json()
        assert (settings["serverName"], settings["nodeGroup"]) == ("eu-tierstream-0", "ap")
