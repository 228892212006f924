"""Who is calling the INSi simulator: organisation certificate, CPS assertion, or nobody.

INSi accepts two authentication modes (``shared/docs/protocols.md`` §1.5): the
organisation's IGC-Santé certificate on mutual TLS with an empty ``wsse:Security``,
or the professional's CPS, shown as a SAML assertion in ``wsse:Security`` signed with
the CPS key. This module decides which one a request used and whether it holds.

The TLS layer lets any certificate chained to the test PKI through (expiry is not
checked there, see :mod:`harness.simulators.insi.server`), so that an expired
certificate gets a SOAP fault the practice can read rather than a bare TLS alert;
the verdict on the certificate is taken here, at the current time, with
cryptography's path validation. The assertion's signature is checked with signxml
against the same CA bundle, and the conditions are read only from what the signature
covers (``signed_xml``), which defeats signature-wrapping tricks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from lxml import etree
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from harness.findings import Finding, error, warning
from harness.simulators.insi.soap import SAML2, WSSE, Envelope

SOURCE = "insi-simulator"
CLOCK_SKEW = timedelta(minutes=5)
DS = "http://www.w3.org/2000/09/xmldsig#"


class AuthMode(enum.StrEnum):
    """How a request authenticated (recorded as ``meta["auth_mode"]``)."""

    ORGANISATION = "organisation-certificate"
    CPS = "cps-assertion"
    NONE = "none"


class CertificateKind(enum.StrEnum):
    """Which branch of the test PKI issued a certificate."""

    ORGANISATION = "organisation"
    PROFESSIONAL = "professional"


@dataclass(slots=True)
class AuthOutcome:
    """The authentication verdict on one request.

    Attributes:
        mode: the mode the request used (``none`` when neither holds).
        accepted: whether the request may be served.
        reason: short machine name of the refusal (``unauthenticated``,
            ``certificate-invalid``, ``invalid-assertion``...), empty when accepted.
        message: human text of the refusal (goes into the SOAP fault).
        client_certificate: subject of the TLS client certificate, if one was shown.
        signer: subject of the assertion's signing certificate, if an assertion was shown.
        findings: every problem noticed, refusal or not.
    """

    mode: AuthMode
    accepted: bool
    reason: str = ""
    message: str = ""
    client_certificate: str | None = None
    signer: str | None = None
    findings: list[Finding] = field(default_factory=list)


class Authenticator:
    """Checks TLS client certificates and CPS assertions against the test PKI's CA bundle."""

    def __init__(self, ca_bundle_path: Path, organisation_ca: x509.Certificate, professional_ca: x509.Certificate):
        self.ca_bundle_path = Path(ca_bundle_path)
        certificates = x509.load_pem_x509_certificates(self.ca_bundle_path.read_bytes())
        self._roots = [c for c in certificates if c.issuer == c.subject]
        self._intermediates = [c for c in certificates if c.issuer != c.subject]
        self._issuers = {
            organisation_ca.fingerprint(_SHA256): CertificateKind.ORGANISATION,
            professional_ca.fingerprint(_SHA256): CertificateKind.PROFESSIONAL,
        }

    def authenticate(self, envelope: Envelope | None, client_certificate_der: bytes | None) -> AuthOutcome:
        """Decide the mode of a request from its TLS client certificate and ``wsse:Security``."""
        now = datetime.now(UTC)
        subject: str | None = None
        kind: CertificateKind | None = None
        if client_certificate_der:
            certificate = x509.load_der_x509_certificate(client_certificate_der)
            subject = certificate.subject.rfc4514_string()
            kind, problem = self.classify(certificate, now)
            if kind is None:
                return _refuse(AuthMode.NONE, "certificate-invalid", f"certificat client refusé: {problem}", subject)
        assertion = _assertion(envelope)
        if assertion is not None:
            return self._cps(assertion, subject, now)
        findings = _security_findings(envelope)
        if kind is CertificateKind.ORGANISATION:
            return AuthOutcome(AuthMode.ORGANISATION, True, client_certificate=subject, findings=findings)
        if kind is CertificateKind.PROFESSIONAL:
            outcome = _refuse(
                AuthMode.NONE,
                "cps-without-assertion",
                "certificat CPS sans assertion dans wsse:Security: l'authentification CPS exige une assertion signée",
                subject,
            )
            outcome.findings[:0] = findings
            return outcome
        return _refuse(
            AuthMode.NONE,
            "unauthenticated",
            "aucune authentification: ni certificat d'organisation (TLS mutuel) ni assertion CPS",
            subject,
        )

    def classify(self, certificate: x509.Certificate, now: datetime) -> tuple[CertificateKind | None, str]:
        """Which branch issued ``certificate`` if it is valid now for client authentication, else why not."""
        if now > certificate.not_valid_after_utc:
            return None, f"certificat expiré le {certificate.not_valid_after_utc:%Y-%m-%d}"
        if now < certificate.not_valid_before_utc:
            return None, f"certificat pas encore valide (à partir du {certificate.not_valid_before_utc:%Y-%m-%d})"
        verifier = (
            PolicyBuilder()
            .store(Store(self._roots))
            .time(now)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_CLIENT_EE_POLICY)
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(certificate, self._intermediates).chain
        except VerificationError as exc:
            return None, f"non émis par l'IGC-Santé de test ({exc})"
        issuer = chain[1] if len(chain) > 1 else chain[0]
        kind = self._issuers.get(issuer.fingerprint(_SHA256))
        if kind is None:
            return None, "émis directement par la racine, sans autorité intermédiaire ORG ou PP"
        return kind, ""

    def _cps(self, assertion: etree._Element, tls_subject: str | None, now: datetime) -> AuthOutcome:
        try:
            result = XMLVerifier().verify(
                etree.tostring(assertion),
                ca_pem_file=str(self.ca_bundle_path),
                expect_config=SignatureConfiguration(expect_references=1),
            )
        except (InvalidInput, InvalidSignature) as exc:  # InvalidCertificate and InvalidDigest are InvalidSignature
            return _refuse(AuthMode.NONE, "invalid-assertion", f"assertion CPS invalide: {exc}", tls_subject)
        if isinstance(result, list):  # one reference expected, so never a list; typed as one anyway
            result = result[0]
        signed = result.signed_xml
        signer = _signer(assertion, result.signature_key)
        if signed is None or signer is None:
            return _refuse(AuthMode.NONE, "invalid-assertion", "assertion CPS: signataire introuvable", tls_subject)
        signer_subject = signer.subject.rfc4514_string()
        kind, problem = self.classify(signer, now)
        if kind is not CertificateKind.PROFESSIONAL:
            why = problem or "certificat d'organisation"
            outcome = _refuse(
                AuthMode.NONE, "assertion-not-cps", f"assertion non signée par un certificat CPS ({why})", tls_subject
            )
            outcome.signer = signer_subject
            return outcome
        findings: list[Finding] = []
        window = _conditions_problem(signed, now)
        if window:
            outcome = _refuse(AuthMode.NONE, "assertion-expired", f"assertion CPS hors validité: {window}", tls_subject)
            outcome.signer = signer_subject
            return outcome
        if tls_subject is not None and tls_subject != signer_subject:
            findings.append(
                warning(
                    "insi.auth.tls-assertion-mismatch",
                    f"the TLS client certificate ({tls_subject}) is not the assertion's signer ({signer_subject})",
                    "wsse:Security",
                    SOURCE,
                )
            )
        holder = signer.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        name_id = (signed.findtext(f".//{{{SAML2}}}Subject/{{{SAML2}}}NameID") or "").strip()
        if holder and name_id and str(holder[0].value) != name_id:
            findings.append(
                warning(
                    "insi.auth.name-id",
                    f"assertion NameID {name_id!r} is not the CPS holder {holder[0].value!r}",
                    "saml:Subject/saml:NameID",
                    SOURCE,
                )
            )
        return AuthOutcome(AuthMode.CPS, True, client_certificate=tls_subject, signer=signer_subject, findings=findings)


# -- helpers ------------------------------------------------------------------------------------

_SHA256 = hashes.SHA256()


def _require_client_auth(policy: Policy, certificate: x509.Certificate, usage: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise ValueError("extended key usage does not allow clientAuth")


def _require_signature(policy: Policy, certificate: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature:
        raise ValueError("key usage does not allow digitalSignature")


_eku_check: Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage], None] = _require_client_auth
_ku_check: Callable[[Policy, x509.Certificate, x509.KeyUsage], None] = _require_signature
_CLIENT_EE_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _eku_check)
    .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _ku_check)
)
"""End-entity rules: clientAuth and digitalSignature. No SAN is required (web-PKI rules
want one; IGC-Santé organisation and CPS certificates need not have it)."""


def _refuse(mode: AuthMode, reason: str, message: str, subject: str | None) -> AuthOutcome:
    rule = "insi.auth.none" if reason == "unauthenticated" else f"insi.auth.{reason}"
    return AuthOutcome(
        mode,
        False,
        reason=reason,
        message=message,
        client_certificate=subject,
        findings=[error(rule, message, "authentication", SOURCE)],
    )


def _assertion(envelope: Envelope | None) -> etree._Element | None:
    if envelope is None:
        return None
    security = envelope.header_block(WSSE, "Security")
    if security is None:
        return None
    return security.find(f"{{{SAML2}}}Assertion")


def _security_findings(envelope: Envelope | None) -> list[Finding]:
    """Notes on a ``wsse:Security`` that carries something other than a SAML assertion."""
    if envelope is None:
        return []
    security = envelope.header_block(WSSE, "Security")
    if security is None:
        return []
    others = [etree.QName(c).localname for c in security if isinstance(c.tag, str)]
    if not others:
        return []
    return [
        warning(
            "insi.auth.security-content",
            f"wsse:Security carries {', '.join(others)}: INSi expects it empty (organisation "
            "certificate) or holding a SAML assertion (CPS)",
            "wsse:Security",
            SOURCE,
        )
    ]


def _signer(assertion: etree._Element, signature_key: object) -> x509.Certificate | None:
    """The certificate of the assertion's ``KeyInfo`` whose public key made the signature."""
    for text in assertion.iterfind(f".//{{{DS}}}X509Certificate"):
        body = "".join((text.text or "").split())
        try:
            certificate = x509.load_pem_x509_certificate(
                f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode("ascii")
            )
        except ValueError:
            continue
        if _public_key_matches(certificate, signature_key):
            return certificate
    return None


def _public_key_matches(certificate: x509.Certificate, signature_key: object) -> bool:
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(signature_key, bytes):
        return signature_key.strip() == spki.strip()
    public_bytes = getattr(signature_key, "public_bytes", None)
    if public_bytes is None:
        return False
    other = public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return isinstance(other, bytes) and other.strip() == spki.strip()


def _conditions_problem(signed: etree._Element, now: datetime) -> str:
    conditions = signed.find(f"{{{SAML2}}}Conditions")
    if conditions is None:
        conditions = signed.find(f".//{{{SAML2}}}Conditions")
    if conditions is None:
        return ""
    not_before = _instant(conditions.get("NotBefore", ""))
    not_after = _instant(conditions.get("NotOnOrAfter", ""))
    if not_before is not None and now + CLOCK_SKEW < not_before:
        return f"pas avant {conditions.get('NotBefore')}"
    if not_after is not None and now - CLOCK_SKEW >= not_after:
        return f"expirée depuis {conditions.get('NotOnOrAfter')}"
    return ""


def _instant(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
