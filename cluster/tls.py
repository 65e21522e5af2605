"""TLS for the cluster's own links: between nodes, and from a node to the registry.

Media between nodes is DTLS-SRTP already; these contexts encrypt the rest. They
are built once, at start-up, from the settings, so a missing, unreadable or
mismatched file stops the node with the key's name and the reason instead of
failing the first pull.

Between nodes, TLS is mutual. With ``server.tlsCertificate``/``server.tlsKey``
the node serves HTTPS; with ``server.tlsCA`` too it asks every client for a
certificate (optional: players have none) and refuses at the handshake one
that does not verify against that CA, and the internal pull path answers only
connections that presented one that did (``Settings.internal_needs_certificate``;
the cluster token is still checked). As a client, a node verifies the node it
pulls from against ``server.tlsCA`` (only that CA: a certificate from a public
CA is not a node) and presents its own certificate. So a leaked
``cluster.secret`` alone opens no pull, and neither does a stolen certificate
alone.

The registry: ``clusterdb.sslmode`` with libpq's meanings (``disable``,
``prefer``, ``require``, ``verify-ca``, ``verify-full``), ``clusterdb.sslrootcert``
for the two verifying modes, and an optional client certificate.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from cluster.errors import ConfigError
from cluster.settings import Settings

logger = logging.getLogger(__name__)

HandshakeRefused = Callable[[str], None]
"""Told, in one short phrase, why a client's TLS handshake was refused."""


def server_context(settings: Settings, on_refused: HandshakeRefused) -> ssl.SSLContext | None:
    """What the node's HTTP server serves; None when ``server.tlsCertificate`` is unset.

    ``on_refused`` hears of every handshake that fails (a certificate from
    another CA, plain HTTP sent to the TLS port): asyncio itself drops those
    silently, and an operator should see a node that is refused.
    """
    if settings.tls_certificate is None or settings.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_own_certificate(context, settings.tls_certificate, settings.tls_key)
    if settings.tls_ca is not None:
        _load_ca(context, "server.tlsCA", settings.tls_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    context.sslobject_class = _reporting_sslobject(on_refused)
    return context


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """What the node verifies other nodes with, and presents to them; None without a CA.

    Without ``server.tlsCA`` a node verifies https upstreams against the
    system's CAs (httpx's default) and presents nothing.
    """
    if settings.tls_ca is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, "server.tlsCA", settings.tls_ca)
    if settings.tls_certificate is not None and settings.tls_key is not None:
        _load_own_certificate(context, settings.tls_certificate, settings.tls_key)
    return context


def registry_ssl(settings: Settings) -> ssl.SSLContext | str | None:
    """asyncpg's ``ssl`` for the registry: a mode it applies itself, or a context we built.

    ``prefer`` is asyncpg's own default, so it gives None: an ``?ssl=`` in
    ``clusterdb.url`` then still applies. ``disable`` goes to asyncpg as it is;
    ``require`` encrypts without verifying; ``verify-ca`` checks the server's
    certificate against ``clusterdb.sslrootcert``; ``verify-full`` checks that it
    names the host connected to (``clusterdb.host``, or the URL's) as well.
    """
    mode = settings.clusterdb_sslmode
    if mode == "prefer":
        return None
    if mode == "disable":
        return mode
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        assert settings.clusterdb_sslrootcert is not None  # settings check it
        _load_ca(context, "clusterdb.sslrootcert", settings.clusterdb_sslrootcert)
        context.check_hostname = mode == "verify-full"
    if settings.clusterdb_sslcert is not None and settings.clusterdb_sslkey is not None:
        _load_certificate(
            context,
            ("clusterdb.sslcert", settings.clusterdb_sslcert),
            ("clusterdb.sslkey", settings.clusterdb_sslkey),
        )
    return context


def _load_own_certificate(context: ssl.SSLContext, certificate: Path, key: Path) -> None:
    _load_certificate(context, ("server.tlsCertificate", certificate), ("server.tlsKey", key))


def _load_certificate(
    context: ssl.SSLContext, certificate: tuple[str, Path], key: tuple[str, Path]
) -> None:
    """A certificate and its key, each checked readable, then checked to belong together."""
    for name, path in (certificate, key):
        _check_readable(name, path)
    try:
        context.load_cert_chain(certificate[1], key[1])
    except ssl.SSLError as error:
        reason = _reason(error)
        if "KEY_VALUES_MISMATCH" in str(error) or "key values mismatch" in reason:
            raise ConfigError(key[0], f"{key[1]} is not the key of {certificate[1]}") from None
        raise ConfigError(
            certificate[0],
            f"{certificate[1]} and {key[1]} are not a PEM certificate and key: {reason}",
        ) from None


def _load_ca(context: ssl.SSLContext, name: str, path: Path) -> None:
    _check_readable(name, path)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as error:
        raise ConfigError(name, f"{path} holds no PEM certificate: {_reason(error)}") from None
    if not context.get_ca_certs():
        raise ConfigError(name, f"{path} holds no CA certificate")


def _check_readable(name: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(name, f"cannot read {path}: {error.strerror}") from None


def _reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason without Python's ``(_ssl.c:NNNN)`` suffix."""
    text = getattr(error, "verify_message", None) or error.reason or str(error)
    return str(text).split(" (_ssl.c")[0].lower().replace("_", " ")


def tls_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS failure under an HTTP error (httpx wraps httpcore's, which wraps ssl's)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def refusal(error: ssl.SSLError) -> str:
    """Why a TLS handshake failed, in a short phrase for a log line."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate does not verify: {error.verify_message}"
    return f"TLS handshake failed: {_reason(error)}"


_QUIET = (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLZeroReturnError, ssl.SSLEOFError)
"""Handshake outcomes that are the protocol's normal course, or a client merely leaving."""


def _reporting_sslobject(on_refused: HandshakeRefused) -> type[ssl.SSLObject]:
    """``ssl.SSLObject`` telling ``on_refused`` of a failed handshake (``sslobject_class``)."""

    class ReportingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except _QUIET:
                raise
            except ssl.SSLError as error:
                on_refused(refusal(error))
                raise

    return ReportingSSLObject
