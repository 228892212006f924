"""Detached CMS signatures: made with cryptography, checked without openssl (and with it when present)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from harness.evidence.signing import (
    GENERATED_CN,
    SignerSpec,
    SigningError,
    generate_signer,
    load_signer,
    sign_detached,
    verify_detached,
)

DATA = b'{"files": []}\n'
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def certificate(
    subject: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    issuer: tuple[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def write_pem(
    directory: Path, name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_generated_signer_round_trip() -> None:
    signer = generate_signer(NOW)
    check = verify_detached(sign_detached(DATA, signer), DATA)
    assert check.valid and check.generated and check.trusted is None and check.signing_time_ok
    assert check.signer is not None and GENERATED_CN in check.signer["subject"]
    assert check.signer["generated"] is True
    assert check.signing_time is not None


def test_tampered_data_signature_and_garbage() -> None:
    signer = generate_signer(NOW)
    signature = sign_detached(DATA, signer)
    changed = verify_detached(signature, DATA.replace(b"[]", b"[1]"))
    assert changed.readable and not changed.digest_ok and not changed.valid
    flipped = bytearray(signature)
    flipped[-1] ^= 0x01
    broken = verify_detached(bytes(flipped), DATA)
    assert not broken.valid and broken.messages
    for garbage in (b"", b"\x30\x80", b"not DER at all", b"\x30\x03\x06\x01\x00"):
        result = verify_detached(garbage, DATA)
        assert not result.valid and result.messages


def test_given_rsa_signer_and_trust(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test Lab CA", ca_key, ca=True)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = certificate("Éditeur Démo signing", leaf_key, issuer=("Test Lab CA", ca_key))
    key_path, cert_path = write_pem(tmp_path, "leaf", leaf_key, leaf)

    signer = load_signer((key_path, cert_path))
    assert not signer.generated and signer.describe()["key"] == "RSA 2048"
    signature = sign_detached(DATA, signer)
    assert verify_detached(signature, DATA, [leaf]).trusted is True
    assert verify_detached(signature, DATA, [ca]).trusted is True, "directly issued by the trusted CA"
    other = certificate("Someone else", ec.generate_private_key(ec.SECP256R1()))
    untrusted = verify_detached(signature, DATA, [other])
    assert untrusted.valid and untrusted.trusted is False


def test_load_signer_refuses_a_mismatched_pair(tmp_path: Path) -> None:
    key_a = ec.generate_private_key(ec.SECP256R1())
    key_b = ec.generate_private_key(ec.SECP256R1())
    key_path, _ = write_pem(tmp_path, "a", key_a, certificate("a", key_a))
    _, cert_path = write_pem(tmp_path, "b", key_b, certificate("b", key_b))
    with pytest.raises(SigningError, match="not the certificate"):
        load_signer(SignerSpec(key_path, cert_path))
    with pytest.raises(SigningError, match="cannot load"):
        load_signer(SignerSpec(tmp_path / "missing.key", cert_path))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_accepts_the_signature(tmp_path: Path) -> None:
    signer = generate_signer()
    (tmp_path / "manifest.json").write_bytes(DATA)
    (tmp_path / "manifest.sig").write_bytes(sign_detached(DATA, signer))
    (tmp_path / "signer.pem").write_bytes(signer.pem())
    command = [
        "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "manifest.sig",
        "-content", "manifest.json", "-CAfile", "signer.pem", "-purpose", "any", "-out", "/dev/null",
    ]  # fmt: skip
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "manifest.json").write_bytes(DATA + b" ")
    tampered = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=30, check=False)
    assert tampered.returncode != 0
