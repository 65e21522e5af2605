"""The chart as helm renders it: lint, Kubernetes API schemas, and what each object tells a node.

The rendered objects are checked through the node's own code where one exists: the properties
file a pod gets and its environment are loaded with ``load_settings``, the init step is the
real ``tierstream apply-config``.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import javaproperties
import kubernetes_validate
import pytest

from cluster.app_settings import SETTINGS as APP_SETTINGS
from cluster.properties import update_properties
from cluster.settings import KEYS, Settings, load_settings
from cluster.tls import client_context, registry_ssl, server_context
from tests.helm.conftest import ValueSet
from tests.support.certificates import CertificateAuthority, Issued
from tests.support.helm import (
    CHART,
    CLUSTER_SECRET,
    EXAMPLES,
    JWT_SECRET,
    REGISTRY_URL,
    REQUIRED_SECRETS,
    Manifest,
    container,
    find,
    helm,
    materialize_volumes,
    mounted,
    pod_secrets,
    prepare_pod,
    render,
    render_error,
    schema,
    statefulset,
    values_args,
    walk,
)

OLDEST_KUBERNETES = "1.30.0"
"""The chart's kubeVersion floor (Chart.yaml); validated with the newest bundled schemas too."""

SECRET_KEYS = {"cluster.secret", "server.adminToken", "clusterdb.url", "clusterdb.password"}
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds outside the Kubernetes API; their fields are checked by the tests below instead."""


def start_pod(
    manifests: list[Manifest], value_set: ValueSet, ordinal: int, workdir: Path
) -> Settings:
    """Pod ``ordinal`` up to its node's settings, loaded by the node's own loader."""
    pod = prepare_pod(manifests, value_set.existing_secrets, ordinal, workdir)
    return load_settings(pod.config, pod.env)


def test_helm_lint_strict_passes(value_set: ValueSet, helm_home: Path) -> None:
    result = helm(
        "lint", "--strict", str(CHART), *values_args(value_set.values, helm_home), home=helm_home
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_manifest_validates_against_the_kubernetes_api(
    manifests: list[Manifest], version: str
) -> None:
    validated = 0
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {where}: {error}")
        validated += 1
    assert validated >= 8


def test_the_node_group_reaches_every_nodes_configuration(
    manifests: list[Manifest], value_set: ValueSet, tmp_path: Path
) -> None:
    settings = start_pod(manifests, value_set, 0, tmp_path)
    assert settings.node_group == value_set.node_group
    assert settings.cluster_secret == CLUSTER_SECRET
    assert settings.registry_url.startswith("postgresql+asyncpg://tierstream:")
    assert settings.http_host == "0.0.0.0"
    assert not settings.embedded_registry


def test_statefulset_pod_names_are_the_nodes_server_names(
    manifests: list[Manifest], value_set: ValueSet, tmp_path: Path
) -> None:
    sts = statefulset(manifests)
    replicas = sts["spec"].get("replicas", 2)
    for ordinal in range(replicas):
        settings = start_pod(manifests, value_set, ordinal, tmp_path / str(ordinal))
        assert settings.node_id == f"{sts['metadata']['name']}-{ordinal}"
    headless = find(manifests, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert (
        headless["spec"]["selector"].items()
        <= sts["spec"]["template"]["metadata"]["labels"].items()
    )


def test_a_runtime_change_on_the_pods_volume_survives_a_restart(
    manifests: list[Manifest], value_set: ValueSet, tmp_path: Path
) -> None:
    sts = statefulset(manifests)
    config = prepare_pod(manifests, value_set.existing_secrets, 0, tmp_path).config
    update_properties(config, {"nodeGroup": "ap"})  # what changeServerSettings does
    assert start_pod(manifests, value_set, 0, tmp_path).node_group == "ap"
    templates = sts["spec"].get("volumeClaimTemplates", [])
    assert [t["metadata"]["name"] for t in templates] == ["data"]


def test_secrets_never_reach_a_configmap(manifests: list[Manifest], value_set: ValueSet) -> None:
    secret_values = {
        value
        for data in pod_secrets(manifests, value_set.existing_secrets).values()
        for value in data.values()
    }
    assert CLUSTER_SECRET in secret_values
    for configmap in (m for m in manifests if m["kind"] == "ConfigMap"):
        for text in (configmap.get("data") or {}).values():
            assert not any(secret in text for secret in secret_values), configmap["metadata"]
        if "red5.properties" in configmap.get("data", {}):
            keys = set(javaproperties.loads(configmap["data"]["red5.properties"]))
            assert not keys & SECRET_KEYS, configmap["metadata"]["name"]
    for manifest in manifests:
        if manifest["kind"] != "Secret":
            rendered = str(manifest)
            assert CLUSTER_SECRET not in rendered and REGISTRY_URL not in rendered


def test_the_migrate_job_is_a_hook_running_tierstream_migrate(
    manifests: list[Manifest], value_set: ValueSet
) -> None:
    job = find(manifests, "Job")
    annotations = job["metadata"]["annotations"]
    assert sorted(annotations["helm.sh/hook"].split(",")) == ["pre-install", "pre-upgrade"]
    migrate = container(job, "migrate")
    assert migrate["args"][:1] == ["migrate"]
    assert migrate["image"] == container(statefulset(manifests), "node")["image"]
    # What it reads exists when it runs: an existing Secret, or hook objects created before it.
    spec = job["spec"]["template"]["spec"]
    used = {("ConfigMap", v["configMap"]["name"]) for v in spec["volumes"] if "configMap" in v}
    used |= {("Secret", v["secret"]["secretName"]) for v in spec["volumes"] if "secret" in v}
    used |= {
        ("Secret", ref["secretKeyRef"]["name"])
        for ref in walk(job)
        if isinstance(ref, dict) and "secretKeyRef" in ref
    }
    used = {(kind, name) for kind, name in used if name not in value_set.existing_secrets}
    for kind, name in used:
        hook = find(manifests, kind, name)["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == annotations["helm.sh/hook"], name
        assert int(hook["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"]), name


def test_every_configuration_key_has_its_place_in_the_chart() -> None:
    """Each key the node declares is settable under ``config`` or set by the chart itself
    (``false`` in the schema: per pod, or from the Secret): adding a key means adding it here."""
    config = schema()["properties"]["config"]
    for key in KEYS:
        node: Any = config
        for part in key.name.split("."):
            assert part in node.get("properties", {}), (
                f"{key.name} is declared by the node but has no place in the chart: add it to "
                "helm/tierstream/values.schema.json under config with its type and the node's "
                "bounds, or as false if the chart sets it (per pod, or from the Secret)"
            )
            node = node["properties"][part]
        assert node is False or "type" in node or "enum" in node or "oneOf" in node, key.name


def test_the_properties_renderer_keeps_awkward_values_intact(helm_home: Path) -> None:
    values = {
        "secrets": {"values": REQUIRED_SECRETS},
        "config": {"server": {"maxViewers": 1000000, "allowed_dashboard_CIDR": ["10.0.0.0/8"]}},
    }
    rendered = render("eu", [values], helm_home)
    text = find(rendered, "ConfigMap", "eu-tierstream-config")["data"]["red5.properties"]
    keys = javaproperties.loads(text)
    assert keys["server.maxViewers"] == "1000000"  # not 1e+06
    assert keys["server.allowed_dashboard_CIDR"] == "10.0.0.0/8"


def test_servicemonitor_scrapes_the_per_node_service(helm_home: Path) -> None:
    rendered = render("eu", [EXAMPLES / "eu.yaml"], helm_home)
    monitor = find(rendered, "ServiceMonitor")
    selected = [
        s
        for s in rendered
        if s["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["spec"].get("clusterIP") for s in selected] == ["None"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_nodes_stop_with_a_clear_message_on_a_node_missing_from_external_addresses(
    tmp_path: Path, helm_home: Path
) -> None:
    rendered = render(
        "us", [EXAMPLES / "us.yaml", {"secrets": {"values": REQUIRED_SECRETS}}], helm_home
    )
    node = container(statefulset(rendered), "node")
    script = node["command"][2].replace("/etc/tierstream/addresses", str(tmp_path))
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"NODE_NAME": "ip-10-99-9-9.ec2.internal", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert "ip-10-99-9-9.ec2.internal" in result.stderr


def test_the_install_notes_tell_what_to_point_the_geodns_at(helm_home: Path) -> None:
    result = helm(
        "install",
        "eu",
        str(CHART),
        "-f",
        str(EXAMPLES / "eu.yaml"),
        "--dry-run=client",
        home=helm_home,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout[result.stdout.index("NOTES:") :]
    assert "the Service eu-tierstream (port 5080)" in notes
    assert "kubectl get service --namespace default eu-tierstream" in notes
    assert "HTTP GET /readyz on port 5080, healthy only on 200" in notes


def test_the_network_policy_opens_http_to_tierstream_pods_and_peers_and_udp_media(
    helm_home: Path,
) -> None:
    rendered = render("eu", [EXAMPLES / "eu.yaml"], helm_home)
    policy = find(rendered, "NetworkPolicy")
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= statefulset(rendered)["spec"]["template"]["metadata"]["labels"].items()
    )
    http, media = policy["spec"]["ingress"]
    assert http["ports"] == [{"port": "http", "protocol": "TCP"}]
    sources = http["from"]
    assert {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "tierstream"}},
    } in sources
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in sources
    assert media == {"ports": [{"port": 1024, "endPort": 65535, "protocol": "UDP"}]}


def test_autoscaling_owns_the_replica_count_and_scales_in_slowly(helm_home: Path) -> None:
    rendered = render(
        "us", [EXAMPLES / "us.yaml", {"secrets": {"values": REQUIRED_SECRETS}}], helm_home
    )
    sts = statefulset(rendered)
    assert "replicas" not in sts["spec"]
    hpa = find(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 300}
    ]


def test_every_app_setting_has_its_place_in_the_chart() -> None:
    app = schema()["properties"]["config"]["properties"]["app"]["additionalProperties"]
    assert set(app["properties"]) == set(APP_SETTINGS)
    assert app["properties"]["jwtStreamSecretKey"] is False  # a secret: from the Secret


def test_an_apps_jwt_key_reaches_the_node_from_the_secret_only(
    tmp_path: Path, helm_home: Path
) -> None:
    values = {
        "config": {"app": {"LiveApp": {"playJwtControlEnabled": True}}},
        "secrets": {"values": {**REQUIRED_SECRETS, "app.LiveApp.jwtStreamSecretKey": JWT_SECRET}},
    }
    rendered = render("eu", [values], helm_home)
    settings = start_pod(rendered, ValueSet("eu", [], "default"), 0, tmp_path)
    assert settings.apps["LiveApp"].play_jwt_control
    assert settings.apps["LiveApp"].jwt_stream_secret_key == JWT_SECRET
    assert "TIERSTREAM_APP_LIVEAPP_JWTSTREAMSECRETKEY" not in str(rendered)
    for configmap in (m for m in rendered if m["kind"] == "ConfigMap"):
        assert JWT_SECRET not in str(configmap)


def test_tls_certificates_reach_the_nodes_and_the_migrate_job_from_secrets(
    tmp_path: Path, helm_home: Path
) -> None:
    """Real certificates in the Secrets, mounted as the kubelet would: the paths the chart
    gives the node load into its TLS contexts, and the probes speak HTTPS."""
    ca = CertificateAuthority(tmp_path / "pki", "cluster")
    node_cert, db_client = ca.issue("eu-tierstream"), ca.issue("tierstream-db-client")

    def pem(issued: Issued) -> dict[str, str]:
        return {"tls.crt": issued.certificate.read_text(), "tls.key": issued.key.read_text()}

    secrets = {
        "eu-node-tls": {**pem(node_cert), "ca.crt": ca.certificate.read_text()},
        "eu-db-tls": {**pem(db_client), "ca.crt": ca.certificate.read_text()},
    }
    values = {
        "secrets": {"values": REQUIRED_SECRETS},
        "tls": {
            "nodes": {"secretName": "eu-node-tls"},
            "registry": {"secretName": "eu-db-tls", "clientCertificate": True},
        },
        "config": {"clusterdb": {"sslmode": "verify-full"}},
    }
    rendered = render("eu", [values], helm_home)
    settings = start_pod(rendered, ValueSet("eu", [], "default", secrets), 0, tmp_path / "pod")
    assert settings.internal_url.startswith("https://") and settings.internal_needs_certificate
    assert settings.clusterdb_sslmode == "verify-full"

    sts = statefulset(rendered)
    node = container(sts, "node")
    volumes = materialize_volumes(sts, rendered, pod_secrets(rendered, secrets), tmp_path / "v")

    def on_disk(path: Path | None) -> Path:
        assert path is not None
        return mounted(node, str(path), volumes)

    local = replace(
        settings,
        tls_certificate=on_disk(settings.tls_certificate),
        tls_key=on_disk(settings.tls_key),
        tls_ca=on_disk(settings.tls_ca),
        clusterdb_sslrootcert=on_disk(settings.clusterdb_sslrootcert),
        clusterdb_sslcert=on_disk(settings.clusterdb_sslcert),
        clusterdb_sslkey=on_disk(settings.clusterdb_sslkey),
    )
    assert server_context(local, lambda _why: None) is not None
    assert client_context(local) is not None
    assert registry_ssl(local) is not None
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert node[probe]["httpGet"]["scheme"] == "HTTPS", probe

    job = find(rendered, "Job")
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in migrate["env"]}
    assert "TIERSTREAM_CLUSTERDB_SSLROOTCERT" in names
    assert "TIERSTREAM_SERVER_TLSCERTIFICATE" not in names, "the Job serves nothing"
    job_volumes = materialize_volumes(job, rendered, pod_secrets(rendered, secrets), tmp_path / "j")
    root = next(e["value"] for e in migrate["env"] if e["name"].endswith("SSLROOTCERT"))
    assert mounted(migrate, root, job_volumes).read_text() == ca.certificate.read_text()


def test_a_verifying_registry_mode_needs_the_registrys_ca_secret(helm_home: Path) -> None:
    values = {
        "secrets": {"values": REQUIRED_SECRETS},
        "config": {"clusterdb": {"sslmode": "verify-ca"}},
    }
    assert "config.clusterdb.sslmode=verify-ca needs tls.registry.secretName" in render_error(
        [values], helm_home
    )
