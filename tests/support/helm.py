"""The Helm chart rendered by the real ``helm`` binary, and its objects resolved as a pod sees them.

``helm`` is the one ``.ci/install`` puts in ``.venv/bin``; without it the chart's tests fail
(they never skip: CI must not pass for want of a tool its install step provides). Every call
is bounded and uses a private Helm home, so nothing outside the test's directory is read or
written.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.cli.main import main
from tests.support import REPO

CHART = REPO / "helm" / "tierstream"
EXAMPLES = REPO / "helm" / "examples"
HELM = REPO / ".venv" / "bin" / "helm"
HELM_TIMEOUT_S = 60.0

CLUSTER_SECRET = "chart-test-cluster-secret-0123456789abcdef"
REGISTRY_URL = "postgresql+asyncpg://tierstream:chart-test-password@db.example.net:5432/tierstream"
ADMIN_TOKEN = "chart-test-admin-token"
JWT_SECRET = "chart-test-jwt-stream-secret-0123456789abcdef"
REQUIRED_SECRETS = {"cluster.secret": CLUSTER_SECRET, "clusterdb.url": REGISTRY_URL}
"""The secrets a release without an existing Secret must be given (the README's minimal install)."""

Manifest = dict[str, Any]


def helm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run helm with ``args``; the caller checks the exit status."""
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: bash .ci/install installs it", pytrace=False)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(
        [str(HELM), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=HELM_TIMEOUT_S,
        check=False,
    )


def values_args(values: list[Mapping[str, Any] | Path], home: Path) -> list[str]:
    """``-f`` arguments for each values file or mapping (mappings are written as files)."""
    args: list[str] = []
    for number, item in enumerate(values):
        if isinstance(item, Path):
            path = item
        else:
            path = home / f"values-{number}.yaml"
            path.write_text(yaml.safe_dump(dict(item)), encoding="utf-8")
        args += ["-f", str(path)]
    return args


def render(release: str, values: list[Mapping[str, Any] | Path], home: Path) -> list[Manifest]:
    """``helm template`` of the chart (hooks included), parsed; fails the test if helm refuses."""
    result = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        "media",
        *values_args(values, home),
        home=home,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(values: list[Mapping[str, Any] | Path], home: Path) -> str:
    """What helm says when it refuses to render ``values`` (the test fails if it renders)."""
    result = helm("template", "eu", str(CHART), *values_args(values, home), home=home)
    assert result.returncode != 0, f"rendered although it should not:\n{result.stdout[:2000]}"
    return result.stderr


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The one object of ``kind`` (and ``name``); fails the test if there is not exactly one."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def secret_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    """A rendered Secret's data, decoded."""
    data = find(manifests, "Secret", name).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


@dataclass(frozen=True)
class Pod:
    """What the kubelet would give one pod: its fields for the downward API, and the Secrets."""

    name: str
    pod_ip: str = "127.0.0.1"
    host_ip: str = "127.0.0.1"
    node_name: str = "k8s-node-1"
    secrets: Mapping[str, Mapping[str, str]] | None = None

    def field(self, path: str) -> str:
        return {
            "metadata.name": self.name,
            "status.podIP": self.pod_ip,
            "status.hostIP": self.host_ip,
            "spec.nodeName": self.node_name,
        }[path]


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_env(container: Manifest, pod: Pod) -> dict[str, str]:
    """A container's environment as the kubelet builds it: downward API fields, Secret keys
    (a missing optional key is left out), and ``$(VAR)`` references to earlier variables."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            value = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif "fieldRef" in item["valueFrom"]:
            value = pod.field(item["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            data = (pod.secrets or {}).get(ref["name"], {})
            if ref["key"] not in data:
                assert ref.get("optional"), f"Secret {ref['name']} lacks {ref['key']}"
                continue
            value = data[ref["key"]]
        env[item["name"]] = value
    return env


def container(manifest: Manifest, name: str, *, init: bool = False) -> Manifest:
    spec = manifest["spec"]["template"]["spec"]
    (found,) = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    return dict(found)


def configmap_file(manifests: list[Manifest], name: str, key: str, directory: Path) -> Path:
    """Write a rendered ConfigMap's file to ``directory``, as a volume would show it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / key
    path.write_text(find(manifests, "ConfigMap", name)["data"][key], encoding="utf-8")
    return path


def walk(value: Any) -> Iterator[Any]:
    """Every value nested in ``value`` (mappings and lists included)."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text("utf-8"))
    return loaded


def statefulset(manifests: list[Manifest]) -> Manifest:
    return find(manifests, "StatefulSet")


def pod_secrets(
    manifests: list[Manifest], existing: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """The data of every Secret a pod may refer to: the rendered ones and the existing ones."""
    rendered = {
        m["metadata"]["name"]: secret_data(manifests, m["metadata"]["name"])
        for m in manifests
        if m["kind"] == "Secret"
    }
    return {**rendered, **{name: dict(data) for name, data in existing.items()}}


def mounted(container_spec: Manifest, path: str, volumes: Mapping[str, Path]) -> Path:
    """Where ``path`` inside the container is on this machine, through its volume mounts."""
    for mount in sorted(container_spec["volumeMounts"], key=lambda m: -len(m["mountPath"])):
        if path == mount["mountPath"]:
            return volumes[mount["name"]]
        if path.startswith(mount["mountPath"] + "/"):
            return volumes[mount["name"]] / path.removeprefix(mount["mountPath"] + "/")
    raise AssertionError(f"{path} is on no volume of {container_spec['name']}")


def node_config_path(node: Manifest) -> str:
    args: list[str] = node.get("args") or node["command"][-1].split()
    return args[args.index("--config") + 1]


@dataclass(frozen=True)
class PreparedPod:
    """One StatefulSet pod after its init step: the node's file and environment."""

    name: str
    config: Path
    env: dict[str, str]


def materialize_volumes(
    workload: Manifest,
    manifests: list[Manifest],
    secrets: Mapping[str, Mapping[str, str]],
    workdir: Path,
) -> dict[str, Path]:
    """A pod's volumes as the kubelet would lay them out, each a directory under ``workdir``:
    ConfigMaps and Secrets (their ``items``, or every key) as files, the rest empty."""
    spec = workload["spec"]["template"]["spec"]
    claims = [t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])]
    volumes: dict[str, Path] = {}
    for volume in [*spec["volumes"], *({"name": name} for name in claims)]:
        directory = workdir / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = find(manifests, "ConfigMap", volume["configMap"]["name"])["data"]
        elif "secret" in volume:
            data = dict(secrets[volume["secret"]["secretName"]])
        else:
            data = {}
        items = (volume.get("secret") or volume.get("configMap") or {}).get("items")
        for item in items or [{"key": key, "path": key} for key in data]:
            (directory / item["path"]).write_text(data[item["key"]], encoding="utf-8")
        volumes[volume["name"]] = directory
    return volumes


def run_init_step(workload: Manifest, volumes: Mapping[str, Path]) -> None:
    """The workload's ``apply-config`` init container: the real command, in-process, with its
    own arguments, every absolute path taken through its volume mounts."""
    init = container(workload, "apply-config", init=True)
    main([str(mounted(init, a, volumes)) if a.startswith("/") else a for a in init["args"]])


def prepare_pod(
    manifests: list[Manifest],
    existing_secrets: Mapping[str, Mapping[str, str]],
    ordinal: int,
    workdir: Path,
) -> PreparedPod:
    """Do what the kubelet and the image do for pod ``ordinal`` before the node starts: its
    volumes, the init step (the real ``tierstream apply-config``), the node's environment."""
    sts = statefulset(manifests)
    pod = Pod(
        name=f"{sts['metadata']['name']}-{ordinal}",
        node_name="ip-10-30-1-17.ec2.internal",
        secrets=pod_secrets(manifests, existing_secrets),
    )
    volumes = materialize_volumes(sts, manifests, pod.secrets or {}, workdir)
    run_init_step(sts, volumes)
    node = container(sts, "node")
    env = container_env(node, pod)
    if "command" in node:  # ice.address=external: the address for this Kubernetes node
        addresses = find(manifests, "ConfigMap", f"{sts['metadata']['name']}-addresses")
        env["TIERSTREAM_WEBRTC_CANDIDATEADDRESSES"] = addresses["data"][pod.node_name]
    return PreparedPod(pod.name, mounted(node, node_config_path(node), volumes), env)
