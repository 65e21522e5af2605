"""The PostgreSQL registry over TLS: a private server with ``ssl=on`` and a CA made here.

The registry's engine and the migrations reach it with ``verify-full``, a real node
process too; the server confirms (``pg_stat_ssl``) that their connections are
encrypted. A root certificate of another CA is refused with a message that says so.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from cluster.errors import RegistryUnavailable
from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.settings import settings_from
from cluster.tls import registry_ssl
from tests.support.certificates import CertificateAuthority
from tests.support.nodes import CLUSTER_SECRET, NodeProcess
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

REFUSED = (
    "its TLS certificate does not verify against clusterdb.sslrootcert (clusterdb.sslmode): "
    "unable to get local issuer certificate"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="module")
def ca(pki: Path) -> CertificateAuthority:
    return CertificateAuthority(pki, "registry-ca")


@pytest.fixture(scope="module")
def tls_server(ca: CertificateAuthority) -> Iterator[PostgresServer]:
    server = PostgresServer(max_connections=50, tls=ca.issue("registry", ("127.0.0.1",)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_numbers = iter(range(1, 1000))


async def new_database(server: PostgresServer) -> str:
    return await server.create_database(f"tls_{os.getpid()}_{next(_numbers)}")


def tls_for(tmp_path: Path, url: str, mode: str, root: Path) -> ssl.SSLContext | str | None:
    settings = settings_from(
        tmp_path / "red5.properties",
        {
            "clusterdb.url": url,
            "cluster.secret": CLUSTER_SECRET,
            "clusterdb.sslmode": mode,
            "clusterdb.sslrootcert": str(root),
        },
        {},
    )
    return registry_ssl(settings)


async def encrypted_connections(server: PostgresServer, database: str) -> list[bool]:
    """Whether each of the nodes' connections to ``database`` is TLS, as the server sees it."""
    connection = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=server.user, database="postgres", timeout=10
    )
    try:
        rows = await connection.fetch(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = 'tierstream' AND a.datname = $1",
            database,
        )
    finally:
        await connection.close(timeout=10)
    return [row["ssl"] for row in rows]


async def test_the_registry_and_its_migrations_reach_postgresql_with_verify_full(
    tmp_path: Path, tls_server: PostgresServer, ca: CertificateAuthority
) -> None:
    url = await new_database(tls_server)
    tls = tls_for(tmp_path, url, "verify-full", ca.certificate)
    await migrate(url, tls=tls)
    registry = await Registry.connect(url, tls=tls)
    try:
        await registry.now()
        seen = await encrypted_connections(tls_server, url.rsplit("/", 1)[1])
        assert seen and all(seen)
    finally:
        await registry.close()


async def test_verify_full_checks_the_host_name_where_verify_ca_does_not(
    tmp_path: Path, tls_server: PostgresServer, ca: CertificateAuthority
) -> None:
    """The certificate names 127.0.0.1 only: reached as localhost it is still the CA's."""
    url = (await new_database(tls_server)).replace("@127.0.0.1:", "@localhost:")
    await migrate(url, tls=tls_for(tmp_path, url, "verify-ca", ca.certificate))
    with pytest.raises(RegistryUnavailable, match="is not valid for 'localhost'"):
        await Registry.connect(url, tls=tls_for(tmp_path, url, "verify-full", ca.certificate))


async def test_a_root_certificate_of_another_ca_is_refused_with_a_clear_message(
    tmp_path: Path, tls_server: PostgresServer
) -> None:
    other = CertificateAuthority(tmp_path / "other", "other-ca")
    url = await new_database(tls_server)
    tls = tls_for(tmp_path, url, "verify-full", other.certificate)
    with pytest.raises(RegistryUnavailable) as migrating:
        await migrate(url, tls=tls)
    assert str(migrating.value) == f"could not migrate the registry: {REFUSED}"
    with pytest.raises(RegistryUnavailable, match=REFUSED.replace("(", r"\(").replace(")", r"\)")):
        await Registry.connect(url, tls=tls)


@pytest.mark.slow
async def test_a_node_process_joins_over_verified_tls_and_one_with_a_wrong_root_stops(
    tmp_path: Path, tls_server: PostgresServer, ca: CertificateAuthority
) -> None:
    url = await new_database(tls_server)
    await migrate(url, tls=tls_for(tmp_path, url, "verify-full", ca.certificate))
    tls = {"clusterdb.sslmode": "verify-full", "clusterdb.sslrootcert": str(ca.certificate)}
    node = NodeProcess(tmp_path, "eu-1", "eu", url, **tls)
    node.start()
    try:
        assert node.get("/rest/v2/cluster/node-count").json()["number"] == 1
        seen = await encrypted_connections(tls_server, url.rsplit("/", 1)[1])
        assert seen and all(seen), "every connection of the node is TLS"
    finally:
        node.stop()

    other = CertificateAuthority(tmp_path / "other", "other-ca")
    wrong = NodeProcess(
        tmp_path, "eu-2", "eu", url, **{**tls, "clusterdb.sslrootcert": str(other.certificate)}
    )
    wrong.launch()
    assert wrong.process is not None
    assert wrong.process.wait(30) == 2
    log = wrong.log_text()
    assert REFUSED in log
    assert "Traceback" not in log
