"""The operator's TLS: the conforming configuration and the faulty ones that a client must refuse.

MSSanté clients must talk TLS 1.2 or later (MSS/va1.03, MSS/CONF.01), offer only six
cipher suites on TLS 1.2 (MSS/CONF.03: ``0xC030``, ``0xC02F``, ``0xC028``, ``0xC027``,
``0x009F``, ``0x009E``), refuse an expired operator certificate (MSS/va1.04) and accept
IGC-Santé ones (MSS/va1.06) and only those. Each policy here is one way an operator can
break those expectations; with it switched on, a conforming client fails its handshake.

The conforming operator enables every suite it can (``ALL:@SECLEVEL=0``, TLS 1.2
minimum) rather than the six: not to be lenient, but so that ``shared_ciphers()`` shows
what the client offered, which is what CONF.03 judges. Both the stdlib ``ssl`` (SMTP,
DST) and pyOpenSSL (Twisted's IMAP) contexts are built here from the same policy.
"""

from __future__ import annotations

import contextlib
import enum
import ssl
import warnings
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from OpenSSL import SSL

from harness.pki import CertBundle, TestPki

ALLOWED_TLS12_SUITES = {
    "ECDHE-RSA-AES256-GCM-SHA384": "0xC030",
    "ECDHE-RSA-AES128-GCM-SHA256": "0xC02F",
    "ECDHE-RSA-AES256-SHA384": "0xC028",
    "ECDHE-RSA-AES128-SHA256": "0xC027",
    "DHE-RSA-AES256-GCM-SHA384": "0x009F",
    "DHE-RSA-AES128-GCM-SHA256": "0x009E",
}
"""The TLS 1.2 suites MSS/CONF.03 allows, OpenSSL name → IANA code (requirements.md §2.3 [DRAFT-SOURCE])."""

TLS13_SUITES = frozenset({"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"})
"""TLS 1.3 suites: MSS/CONF.02 allows TLS 1.3, whose suites the CONF.03 list does not name."""

WEAK_SUITE = "ECDHE-RSA-AES128-SHA"
"""``0xC013``, CBC with SHA-1: outside the allowed list, what :attr:`TlsPolicy.WEAK_CIPHER` offers alone."""


class TlsPolicy(enum.StrEnum):
    """How the operator's servers (SMTP, IMAP, DST) run TLS."""

    CONFORMING = "conforming"
    """TLS 1.2+, the IGC-Santé-like server certificate."""
    TLS_1_0_ONLY = "tls1.0-only"
    TLS_1_1_ONLY = "tls1.1-only"
    WEAK_CIPHER = "weak-cipher"
    """TLS 1.2 at most, and only ``ECDHE-RSA-AES128-SHA`` (0xC013)."""
    EXPIRED_CERTIFICATE = "expired-certificate"
    NON_IGC_CERTIFICATE = "non-igc-certificate"
    """A self-signed server certificate, outside IGC-Santé."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What one policy means in protocol terms."""

    server: CertBundle
    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion
    ciphers: str


def settings(policy: TlsPolicy, pki: TestPki) -> TlsSettings:
    """The certificate, versions and cipher string of ``policy``."""
    v = ssl.TLSVersion
    match policy:
        case TlsPolicy.TLS_1_0_ONLY:
            return TlsSettings(pki.mss_server, v.TLSv1, v.TLSv1, "DEFAULT:@SECLEVEL=0")
        case TlsPolicy.TLS_1_1_ONLY:
            return TlsSettings(pki.mss_server, v.TLSv1_1, v.TLSv1_1, "DEFAULT:@SECLEVEL=0")
        case TlsPolicy.WEAK_CIPHER:
            return TlsSettings(pki.mss_server, v.TLSv1_2, v.TLSv1_2, WEAK_SUITE)
        case TlsPolicy.EXPIRED_CERTIFICATE:
            return TlsSettings(pki.mss_expired_server, v.TLSv1_2, v.MAXIMUM_SUPPORTED, "ALL:@SECLEVEL=0")
        case TlsPolicy.NON_IGC_CERTIFICATE:
            return TlsSettings(pki.mss_rogue_server, v.TLSv1_2, v.MAXIMUM_SUPPORTED, "ALL:@SECLEVEL=0")
        case _:
            return TlsSettings(pki.mss_server, v.TLSv1_2, v.MAXIMUM_SUPPORTED, "ALL:@SECLEVEL=0")


def stdlib_context(policy: TlsPolicy, pki: TestPki, *, require_client_certificate: bool = False) -> ssl.SSLContext:
    """A server context for SMTP and DST; the client certificate is asked for, required only when told."""
    chosen = settings(policy, pki)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated in the stdlib, not removed: offering them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = chosen.minimum
        context.maximum_version = chosen.maximum
    context.set_ciphers(chosen.ciphers)
    context.load_cert_chain(str(chosen.server.chain_path), str(chosen.server.key_path))
    context.load_verify_locations(cafile=str(pki.ca_bundle_path))
    context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    return context


_OPENSSL_VERSIONS = {
    ssl.TLSVersion.TLSv1: SSL.TLS1_VERSION,
    ssl.TLSVersion.TLSv1_1: SSL.TLS1_1_VERSION,
    ssl.TLSVersion.TLSv1_2: SSL.TLS1_2_VERSION,
    ssl.TLSVersion.MAXIMUM_SUPPORTED: 0,
}


def pyopenssl_context(policy: TlsPolicy, pki: TestPki, *, require_client_certificate: bool = False) -> SSL.Context:
    """The same policy for Twisted's IMAP server, which runs TLS through pyOpenSSL."""
    chosen = settings(policy, pki)
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(_OPENSSL_VERSIONS[chosen.minimum])
    context.set_max_proto_version(_OPENSSL_VERSIONS[chosen.maximum])
    context.set_cipher_list(chosen.ciphers.encode("ascii"))
    context.use_certificate_chain_file(str(chosen.server.chain_path))
    context.use_privatekey_file(str(chosen.server.key_path))
    context.load_verify_locations(str(pki.ca_bundle_path))
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if require_client_certificate else 0)
    context.set_verify(mode, _keep_openssl_verdict)
    return context


def _keep_openssl_verdict(connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
    return bool(ok)


def session_facts(connection: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """What a record keeps of a stdlib TLS session: version, cipher, what the client offered, its certificate."""
    cipher = connection.cipher()
    shared = connection.shared_ciphers() or []
    facts: dict[str, Any] = {
        "version": connection.version(),
        "cipher": cipher[0] if cipher else None,
        "offered": sorted({name for name, _, _ in shared}),
        "client_certificate": None,
        "client_certificate_issuer": None,
    }
    der = connection.getpeercert(binary_form=True)
    if der:
        with contextlib.suppress(ValueError):
            certificate = x509.load_der_x509_certificate(der)
            facts["client_certificate"] = certificate.subject.rfc4514_string()
            facts["client_certificate_issuer"] = certificate.issuer.rfc4514_string()
    return facts


def offered_outside_policy(offered: list[str]) -> list[str]:
    """The offered suites neither in the CONF.03 list nor TLS 1.3 ones."""
    return sorted(set(offered) - ALLOWED_TLS12_SUITES.keys() - TLS13_SUITES)
