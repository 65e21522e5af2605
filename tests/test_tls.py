"""TLS settings and contexts: what a node refuses to start with, and what it verifies.

The contexts are exercised on real sockets by ``tests/streams/test_tls_links.py``
(nodes) and ``tests/registry/test_registry_tls.py`` (PostgreSQL); here, the
start-up errors, one per way a file can be wrong.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.settings import Settings, settings_from
from cluster.tls import client_context, registry_ssl, server_context
from tests.support.certificates import CertificateAuthority, Issued


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki", "cluster")


@pytest.fixture
def node_cert(ca: CertificateAuthority) -> Issued:
    return ca.issue("node-a")


def settings(tmp_path: Path, **written: str) -> Settings:
    return settings_from(tmp_path / "red5.properties", written, {})


def tls_keys(ca: CertificateAuthority, issued: Issued, **more: str) -> dict[str, str]:
    return {
        "server.tlsCertificate": str(issued.certificate),
        "server.tlsKey": str(issued.key),
        "server.tlsCA": str(ca.certificate),
        **more,
    }


def refused(tmp_path: Path, **written: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        s = settings(tmp_path, **written)
        server_context(s, lambda _why: None)
        client_context(s)
        registry_ssl(s)
    return caught.value


def test_a_node_with_certificate_key_and_ca_serves_https_and_verifies_its_peers(
    tmp_path: Path, ca: CertificateAuthority, node_cert: Issued
) -> None:
    s = settings(tmp_path, **tls_keys(ca, node_cert))
    assert s.public_url.startswith("https://") and s.internal_url == s.public_url
    assert s.internal_needs_certificate
    server = server_context(s, lambda _why: None)
    assert server is not None and server.verify_mode == ssl.CERT_OPTIONAL
    client = client_context(s)
    assert client is not None
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert [c["subject"] for c in client.get_ca_certs()] == [((("commonName", "cluster"),),)]


def test_relative_files_are_read_beside_the_properties_file(
    tmp_path: Path, ca: CertificateAuthority, node_cert: Issued
) -> None:
    s = settings(
        tmp_path,
        **{
            "server.tlsCertificate": "pki/node-a.crt",
            "server.tlsKey": "pki/node-a.key",
            "server.tlsCA": "pki/cluster-ca.crt",
        },
    )
    assert s.tls_certificate == node_cert.certificate
    assert server_context(s, lambda _why: None) is not None


def test_without_tls_keys_nothing_changes(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.public_url.startswith("http://")
    assert server_context(s, lambda _why: None) is None
    assert client_context(s) is None
    assert registry_ssl(s) is None  # asyncpg's default, or what clusterdb.url's ?ssl= says


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"server.tlsCertificate": "missing.crt"}, "server.tlsCertificate", "cannot read"),
        ({"server.tlsKey": "missing.key"}, "server.tlsKey", "cannot read"),
        ({"server.tlsCA": "missing-ca.crt"}, "server.tlsCA", "cannot read"),
        ({"server.tlsKey": "pki/other.key"}, "server.tlsKey", "is not the key of"),
        ({"server.tlsCA": "pki/other.key"}, "server.tlsCA", "holds no"),
        ({"server.tlsCertificate": "pki/cluster-ca.key"}, "server.tlsCertificate", "not a PEM"),
        ({"server.tlsCA": ""}, "server.internalUrl", "set server.tlsCertificate"),
        ({"server.tlsKey": ""}, "server.tlsKey", "is needed with server.tlsCertificate"),
        ({"server.internalUrl": "http://127.0.0.1:5080"}, "server.internalUrl", "plain http"),
    ],
    ids=[
        "a missing certificate",
        "a missing key",
        "a missing CA",
        "a key of another certificate",
        "a CA file that is a key",
        "a certificate file that holds no certificate",
        "https internally without a CA",
        "a certificate without its key",
        "a plain http internal URL on a TLS node",
    ],
)
def test_a_bad_tls_file_or_combination_stops_start_up_naming_its_key(
    tmp_path: Path,
    ca: CertificateAuthority,
    node_cert: Issued,
    change: dict[str, str],
    key: str,
    reason: str,
) -> None:
    ca.issue("other")
    (tmp_path / "pki" / "cluster-ca.key").write_text("not a certificate\n")
    error = refused(tmp_path, **{**tls_keys(ca, node_cert), **change})
    assert error.key == key
    assert reason in error.reason


@pytest.mark.parametrize(
    ("written", "key", "reason"),
    [
        ({"clusterdb.sslmode": "verify-full"}, "clusterdb.sslrootcert", "is needed"),
        ({"clusterdb.sslmode": "strict"}, "clusterdb.sslmode", "is not one of"),
        (
            {"clusterdb.sslmode": "require", "clusterdb.sslcert": "c.crt"},
            "clusterdb.sslkey",
            "is needed",
        ),
        (
            {"clusterdb.sslcert": "c.crt", "clusterdb.sslkey": "c.key"},
            "clusterdb.sslcert",
            "require or stricter",
        ),
        (
            {"clusterdb.sslmode": "verify-ca", "clusterdb.sslrootcert": "none.crt"},
            "clusterdb.sslrootcert",
            "cannot read",
        ),
    ],
    ids=[
        "verify-full without a root certificate",
        "an unknown mode",
        "a client certificate without its key",
        "a client certificate on an unencrypted mode",
        "an unreadable root certificate",
    ],
)
def test_bad_registry_tls_settings_stop_start_up_naming_their_key(
    tmp_path: Path, written: dict[str, str], key: str, reason: str
) -> None:
    error = refused(tmp_path, **written)
    assert error.key == key
    assert reason in error.reason


def test_registry_modes_verify_as_libpq_does(tmp_path: Path, ca: CertificateAuthority) -> None:
    root = {"clusterdb.sslrootcert": str(ca.certificate)}
    assert registry_ssl(settings(tmp_path, **{"clusterdb.sslmode": "disable"})) == "disable"
    required = registry_ssl(settings(tmp_path, **{"clusterdb.sslmode": "require"}))
    assert isinstance(required, ssl.SSLContext) and required.verify_mode == ssl.CERT_NONE
    by_ca = registry_ssl(settings(tmp_path, **{"clusterdb.sslmode": "verify-ca", **root}))
    assert isinstance(by_ca, ssl.SSLContext)
    assert by_ca.verify_mode == ssl.CERT_REQUIRED and not by_ca.check_hostname
    full = registry_ssl(settings(tmp_path, **{"clusterdb.sslmode": "verify-full", **root}))
    assert isinstance(full, ssl.SSLContext) and full.check_hostname
