"""The manifest's signature: a detached CMS SignedData, and its verification without openssl.

``manifest.sig`` is DER CMS (RFC 5652) over the exact bytes of
``manifest.json``, so anyone can check a pack with stock tools::

    openssl cms -verify -binary -inform DER -in manifest.sig \\
        -content manifest.json -CAfile signer.pem -purpose any

The signer is the vendor's or lab's key and certificate when given. Otherwise
the harness generates a throw-away key and a self-signed certificate whose
subject says so (:data:`GENERATED_CN`); the private key never touches disk.
Such a signature proves integrity since signing, not who signed: verification
reports it as generated, and only a certificate the reader trusts (passed as
``trusted``) makes the signer trusted.

Verification parses the CMS with asn1crypto, checks the ``messageDigest``
signed attribute against the data, and checks the signature over the DER of
the signed attributes with the certificate's public key (cryptography).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

GENERATED_CN = "segur-harness generated signer (not a vendor key)"
GENERATED_ORG = "segur-harness"
GENERATED_VALIDITY = timedelta(days=3650)

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class SigningError(ValueError):
    """A signer cannot be loaded or used (unreadable key, key and certificate that do not match)."""


@dataclass(frozen=True, slots=True)
class SignerSpec:
    """Where a given signer's material is: PEM private key, PEM certificate (then its chain)."""

    key: Path
    cert: Path
    password: bytes | None = None


@dataclass(frozen=True)
class Signer:
    """A key and its certificate, ready to sign; ``generated`` for the harness's own."""

    key: SignerKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    generated: bool = False

    def pem(self) -> bytes:
        """The certificate then its chain, PEM (what ``signer.pem`` holds)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.certificate, *self.chain))

    def describe(self) -> dict[str, Any]:
        return describe_certificate(self.certificate)


def load_signer(spec: SignerSpec | tuple[Path, Path]) -> Signer:
    """The signer whose PEM key and certificate ``spec`` names.

    Raises:
        SigningError: unreadable files, an unsupported key type (RSA and EC only),
            or a certificate that is not the key's.
    """
    if isinstance(spec, tuple):
        spec = SignerSpec(key=Path(spec[0]), cert=Path(spec[1]))
    try:
        key = serialization.load_pem_private_key(spec.key.read_bytes(), password=spec.password)
        certificates = x509.load_pem_x509_certificates(spec.cert.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"cannot load the signer ({spec.key}, {spec.cert}): {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError(f"{spec.key}: only RSA and EC keys can sign CMS here, not {type(key).__name__}")
    certificate, *chain = certificates
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise SigningError(f"{spec.cert}: the first certificate is not the certificate of {spec.key}")
    return Signer(key=key, certificate=certificate, chain=tuple(chain), generated=False)


def generate_signer(moment: datetime | None = None) -> Signer:
    """A fresh EC P-256 key and a self-signed certificate saying it is the harness's, not a vendor's."""
    now = (moment or datetime.now(UTC)).astimezone(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, GENERATED_CN),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, GENERATED_ORG),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + GENERATED_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Signer(key=key, certificate=certificate, generated=True)


def is_generated(certificate: x509.Certificate) -> bool:
    """True for a certificate made by :func:`generate_signer` (self-issued, harness subject)."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return certificate.subject == certificate.issuer and any(n.value == GENERATED_CN for n in names)


def describe_certificate(certificate: x509.Certificate) -> dict[str, Any]:
    """The signer as the manifest and ``run.json`` record it."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_text = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_text = f"EC {key.curve.name}"
    else:
        key_text = type(key).__name__
    return {
        "generated": is_generated(certificate),
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "key": key_text,
    }


def sign_detached(data: bytes, signer: Signer) -> bytes:
    """DER CMS SignedData over ``data``, detached, binary (no MIME canonicalisation), SHA-256."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(signer.certificate, signer.key, hashes.SHA256())
    for extra in signer.chain:
        builder = builder.add_certificate(extra)
    return builder.sign(
        serialization.Encoding.DER,
        [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
    )


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Certificates from a PEM file (one or more) or a DER file.

    Raises:
        SigningError: unreadable or not a certificate.
    """
    try:
        data = Path(path).read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except (OSError, ValueError) as exc:
        raise SigningError(f"{path}: not a readable certificate ({exc})") from None


@dataclass(slots=True)
class SignatureCheck:
    """What verifying a detached signature found.

    Attributes:
        readable: the CMS parsed and named a signer certificate.
        digest_ok: the signed ``messageDigest`` equals the data's digest.
        signature_ok: the signature over the signed attributes verifies.
        trusted: the signer is, or is directly issued by, a trusted certificate;
            None when no trusted certificate was given.
        generated: the signer is a harness-generated certificate.
        signer: the signer's description (:func:`describe_certificate`).
        certificate: the signer's certificate.
        signing_time: the ``signingTime`` attribute, if any.
        signing_time_ok: False when the signing time is outside the certificate's validity.
        messages: why a check failed, one sentence each.
    """

    readable: bool = False
    digest_ok: bool = False
    signature_ok: bool = False
    trusted: bool | None = None
    generated: bool = False
    signer: dict[str, Any] | None = None
    certificate: x509.Certificate | None = None
    signing_time: datetime | None = None
    signing_time_ok: bool = True
    messages: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """The data is what the signer signed (trust is separate)."""
        return self.readable and self.digest_ok and self.signature_ok


def verify_detached(signature: bytes, data: bytes, trusted: Sequence[x509.Certificate] = ()) -> SignatureCheck:
    """Check a detached CMS signature over ``data``; never raises on hostile input."""
    check = SignatureCheck()
    try:
        _verify(signature, data, trusted, check)
    except Exception as exc:  # hostile DER can break the parser in many ways
        check.messages.append(f"the signature cannot be read: {type(exc).__name__}: {exc}")
        check.readable = False
    return check


def _verify(signature: bytes, data: bytes, trusted: Sequence[x509.Certificate], check: SignatureCheck) -> None:
    from asn1crypto import cms

    info = cms.ContentInfo.load(signature, strict=True)
    if info["content_type"].native != "signed_data":
        check.messages.append(f"not a CMS SignedData (content type {info['content_type'].native})")
        return
    signed = info["content"]
    if signed["encap_content_info"]["content"].native is not None:
        check.messages.append("the signature embeds content; a detached signature over manifest.json is expected")
        return
    signer_infos = list(signed["signer_infos"])
    if len(signer_infos) != 1:
        check.messages.append(f"expected one signer, found {len(signer_infos)}")
        return
    signer_info = signer_infos[0]
    candidates = [c.chosen for c in (signed["certificates"] or []) if c.name == "certificate"]
    found = _find_certificate(signer_info["sid"], candidates)
    if found is None:
        check.messages.append("the signer's certificate is not in the signature")
        return
    certificate = x509.load_der_x509_certificate(found.dump())
    check.certificate = certificate
    check.signer = describe_certificate(certificate)
    check.generated = is_generated(certificate)
    check.readable = True

    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        check.messages.append(f"unsupported digest algorithm {digest_name}")
        return
    attributes = signer_info["signed_attrs"]
    if not attributes:
        check.messages.append("the signature has no signed attributes (messageDigest expected)")
        return
    values: dict[str, list[Any]] = {}
    for attribute in attributes:
        values.setdefault(attribute["type"].native, []).extend(attribute["values"])
    if [v.native for v in values.get("content_type", [])] != ["data"]:
        check.messages.append("the signed contentType attribute is not id-data")
        return
    digests = [v.native for v in values.get("message_digest", [])]
    expected = hashlib.new(digest_name, data).digest()
    check.digest_ok = digests == [expected]
    if not check.digest_ok:
        check.messages.append(f"messageDigest does not match the {digest_name} of manifest.json")
    times = [v.native for v in values.get("signing_time", [])]
    check.signing_time = times[0] if len(times) == 1 and isinstance(times[0], datetime) else None

    signed_bytes = b"\x31" + attributes.dump()[1:]  # [0] IMPLICIT → SET OF, as signed
    check.signature_ok = _signature_verifies(certificate, signer_info, signed_bytes, _HASHES[digest_name]())
    if not check.signature_ok:
        check.messages.append("the signature does not verify with the signer's certificate")

    if trusted:
        check.trusted = any(_issued_or_same(certificate, anchor) for anchor in trusted)
        if not check.trusted:
            check.messages.append(
                f"the signer {check.signer['subject']} is not the trusted certificate nor issued by it"
            )
    if check.signing_time is not None and not (
        certificate.not_valid_before_utc <= check.signing_time <= certificate.not_valid_after_utc
    ):
        check.signing_time_ok = False
        check.messages.append("the signing time is outside the signer certificate's validity")


def _find_certificate(sid: Any, candidates: list[Any]) -> Any | None:
    if sid.name == "issuer_and_serial_number":
        wanted = sid.chosen
        for cert in candidates:
            if cert.issuer == wanted["issuer"] and cert.serial_number == wanted["serial_number"].native:
                return cert
    elif sid.name == "subject_key_identifier":
        for cert in candidates:
            if cert.key_identifier == sid.chosen.native:
                return cert
    return None


def _signature_verifies(
    certificate: x509.Certificate, signer_info: Any, signed_bytes: bytes, digest: hashes.HashAlgorithm
) -> bool:
    algorithm = signer_info["signature_algorithm"]
    name = algorithm["algorithm"].native
    value = signer_info["signature"].native
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and name == "rsassa_pss":
            params = algorithm["parameters"]
            pss_hash = _HASHES.get(params["hash_algorithm"]["algorithm"].native)
            if pss_hash is None:
                return False
            pad: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(pss_hash()), salt_length=int(params["salt_length"].native)
            )
            key.verify(value, signed_bytes, pad, pss_hash())
        elif isinstance(key, rsa.RSAPublicKey) and "rsa" in name:
            key.verify(value, signed_bytes, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and "ecdsa" in name:
            key.verify(value, signed_bytes, ec.ECDSA(digest))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _issued_or_same(certificate: x509.Certificate, anchor: x509.Certificate) -> bool:
    if certificate == anchor:
        return True
    try:
        certificate.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
