"""Encrypted cluster links on real node processes: mutual TLS between nodes.

Each test makes its own CA and issues every node a certificate for 127.0.0.1;
the nodes serve HTTPS, verify the nodes they pull from against the CA and
present their own certificate. A publisher and players are real aiortc peers
speaking WHIP/WHEP over HTTPS.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from cluster.streams.pulls import internal_pull_path
from cluster.tokens import sign_pull_token
from cluster.types import NodeId
from tests.support import REPO
from tests.support.certificates import CertificateAuthority, Issued
from tests.support.cluster import S1, whep, whip
from tests.support.nodes import CLUSTER_SECRET, NodeProcess, running
from tests.support.peers import Peers
from tests.support.waits import WAIT, eventually


def tls_node(
    tmp_path: Path, name: str, registry: str, ca: CertificateAuthority, issued: Issued
) -> NodeProcess:
    return NodeProcess(
        tmp_path,
        name,
        name.split("-")[0],
        registry,
        **{
            "server.tlsCertificate": str(issued.certificate),
            "server.tlsKey": str(issued.key),
            "server.tlsCA": str(ca.certificate),
        },
    )


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki", "cluster")


def no_tracebacks(*nodes: NodeProcess) -> None:
    for node in nodes:
        assert "Traceback" not in node.log_text(), node.name


@pytest.mark.slow
async def test_a_cross_region_pull_carries_frames_over_mutual_tls(
    tmp_path: Path, postgres_url: str, ca: CertificateAuthority, peers: Peers
) -> None:
    eu, us = (tls_node(tmp_path, n, postgres_url, ca, ca.issue(n)) for n in ("eu-1", "us-1"))
    with running([eu, us]):
        assert eu.url.startswith("https://")
        published = await peers.publish(whip(eu), verify=eu.verify)
        playing = await peers.play(whep(us), keep_frames=True, verify=us.verify)
        report = await playing.frames(10)
        assert report.kept[0] in published.sent, "the player gets the publisher's frames"
        assert "pulling s1 from eu-1 (eu)" in us.log_text()
        listed = us.get("/rest/v2/cluster/nodes/0/10").json()
        assert {n["internalUrl"] for n in listed} == {eu.url, us.url}

        # The internal pull path takes only nodes: a valid cluster token without a
        # certificate from the CA is refused before any media is set up.
        token = sign_pull_token(CLUSTER_SECRET, NodeId("us-1"), S1)
        async with httpx.AsyncClient(verify=ca.client_context()) as http:
            reply = await http.post(
                eu.url + internal_pull_path("LiveApp", S1),
                content="v=0\r\n",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
            )
        assert reply.status_code == 403
        assert "client certificate from the cluster's CA" in reply.json()["message"]

        # The CLI's player verifies a node with a private CA given --ca, and says in one line
        # when it cannot.
        for ca_args, said in (
            (["--ca", str(ca.certificate)], "404: stream none is not live in LiveApp"),
            ([], f"cannot reach {whep(us, 'none')}: certificate does not verify"),
        ):
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cluster", "play", "--whep", whep(us, "none"),
                "--seconds", "1", *ca_args, cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                # A fresh interpreter loading aiortc and PyAV: as slow as a node's start-up.
                async with asyncio.timeout(6 * WAIT):
                    output = (await cli.communicate())[0].decode()
            finally:
                if cli.returncode is None:
                    cli.kill()
                    await cli.wait()
            assert cli.returncode == 2 and said in output and "Traceback" not in output, output
    no_tracebacks(eu, us)


@pytest.mark.slow
async def test_a_node_with_a_certificate_from_another_ca_is_refused_and_logged(
    tmp_path: Path, postgres_url: str, ca: CertificateAuthority, peers: Peers
) -> None:
    other = CertificateAuthority(tmp_path / "other-pki", "someone-else")
    eu = tls_node(tmp_path, "eu-1", postgres_url, ca, ca.issue("eu-1"))
    # It trusts our CA, but its own certificate is someone else's: it is no node of ours.
    rogue = tls_node(tmp_path, "us-9", postgres_url, ca, other.issue("us-9"))
    rogue.verify = other.client_context()
    with running([eu, rogue]):
        await peers.publish(whip(eu), verify=eu.verify)
        with pytest.raises(Exception, match="could not pull s1 from eu-1"):
            await peers.play(whep(rogue), verify=rogue.verify)

        def refusal_logged() -> str:
            lines = [line for line in eu.log_text().splitlines() if "refused at the hands" in line]
            return lines[0] if lines else ""

        line = await eventually(refusal_logged, "eu-1 logging the refused handshake")
        assert "certificate does not verify: unable to get local issuer certificate" in line
        rogue_log = rogue.log_text()
        assert (
            f"could not pull s1 from eu-1: {eu.url} closed the connection" in rogue_log
            and "refuses this node's TLS certificate" in rogue_log
        )
    no_tracebacks(eu, rogue)


@pytest.mark.slow
async def test_an_upstream_whose_certificate_does_not_verify_is_a_lost_upstream(
    tmp_path: Path, postgres_url: str, ca: CertificateAuthority, peers: Peers
) -> None:
    """us-1 is the us secondary origin, but its certificate names another address: us-2
    refuses it, says why, and takes the secondary origin over instead of waiting."""
    eu = tls_node(tmp_path, "eu-1", postgres_url, ca, ca.issue("eu-1"))
    misnamed = tls_node(tmp_path, "us-1", postgres_url, ca, ca.issue("us-1", ("127.0.0.2",)))
    misnamed.verify = ca.client_context()
    misnamed.verify.check_hostname = False  # the test's own client; us-2 checks the name
    us2 = tls_node(tmp_path, "us-2", postgres_url, ca, ca.issue("us-2"))
    with running([eu, misnamed, us2]):
        published = await peers.publish(whip(eu), verify=eu.verify)
        first = await peers.play(whep(misnamed), verify=misnamed.verify)
        await first.frames(10)
        assert "claimed the secondary origin of s1 in us" in misnamed.log_text()

        second = await peers.play(whep(us2), keep_frames=True, verify=us2.verify)
        # Two waits in one: the refused attempt and the take-over come before the first frame.
        report = await second.frames(10, timeout_s=2 * WAIT)
        assert report.kept[0] in published.sent
        log = us2.log_text()
        assert (
            f"could not pull s1 from us-1: {misnamed.url} refused: certificate does not "
            "verify: IP address mismatch, certificate is not valid for '127.0.0.1'."
        ) in log
        assert "claimed the secondary origin of s1 in us" in log
        assert "pulling s1 from eu-1 (eu)" in log
    no_tracebacks(eu, misnamed, us2)
