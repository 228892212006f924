"""The run-time test PKI: chains, profiles, bad certificates, files, reload."""

from __future__ import annotations

import shutil
import stat
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from harness.pki import CPS_IDNAT_PS, ORGANISATION_IDNAT, CertBundle, TestPki

_T = TypeVar("_T", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("pki"))


def _verify(pki: TestPki, bundle: CertBundle, at: datetime | None = None) -> list[x509.Certificate]:
    """Path validation to the root, through the PKI's intermediates (no SAN required of clients)."""
    policy = ExtensionPolicy.permit_all()
    builder = (
        PolicyBuilder()
        .store(Store([pki.root.certificate]))
        .time(at or datetime.now(UTC))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=policy)
    )
    intermediates = [pki.org_ca.certificate, pki.pp_ca.certificate]
    return builder.build_client_verifier().verify(bundle.certificate, intermediates).chain


def _extension(cert: x509.Certificate, kind: type[_T]) -> _T:
    return cert.extensions.get_extension_for_class(kind).value


def test_generation_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    TestPki.generate(tmp_path)
    assert time.perf_counter() - started < 2.0  # about 0.2 s on a 2-core machine


def test_leaf_certificates_chain_to_the_root_through_their_intermediate(pki: TestPki) -> None:
    for bundle, issuer in (
        (pki.server, pki.org_ca),
        (pki.organisation, pki.org_ca),
        (pki.cps, pki.pp_ca),
    ):
        chain = _verify(pki, bundle)
        expected = [bundle.certificate.subject, issuer.certificate.subject, pki.root.certificate.subject]
        assert [c.subject for c in chain] == expected


def test_openssl_agrees_on_the_chains(pki: TestPki) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available")
    folder = pki.directory
    good = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki.ca_bundle_path), "server.pem", "organisation.pem", "cps.pem"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    for name, reason in (("rogue.pem", "self-signed"), ("expired-organisation.pem", "expired")):
        bad = subprocess.run(
            ["openssl", "verify", "-CAfile", str(pki.ca_bundle_path), name],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        assert bad.returncode != 0 and reason in (bad.stdout + bad.stderr)


def test_server_certificate_names_loopback_for_server_auth(pki: TestPki) -> None:
    cert = pki.server.certificate
    names = _extension(cert, x509.SubjectAlternativeName)
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(_extension(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_organisation_and_cps_profiles(pki: TestPki) -> None:
    organisation = pki.organisation.certificate
    assert list(_extension(organisation, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert organisation.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == ORGANISATION_IDNAT
    cps = pki.cps.certificate
    assert list(_extension(cps, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _extension(cps, x509.KeyUsage).digital_signature
    assert cps.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == CPS_IDNAT_PS
    # The CPS signs SAML assertions with rsa-sha256 (harness/reference/saml.py).
    key = serialization.load_pem_private_key(pki.cps.key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


def test_authorities_are_cas_and_leaves_are_not(pki: TestPki) -> None:
    for ca in (pki.root, pki.org_ca, pki.pp_ca):
        constraints = _extension(ca.certificate, x509.BasicConstraints)
        assert constraints.ca and _extension(ca.certificate, x509.KeyUsage).key_cert_sign
    for leaf in (pki.server, pki.organisation, pki.cps, pki.expired_organisation, pki.rogue):
        assert not _extension(leaf.certificate, x509.BasicConstraints).ca


def test_every_key_matches_its_certificate(pki: TestPki) -> None:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for bundle in pki.bundles().values():
        key = serialization.load_pem_private_key(bundle.key_pem, password=None)
        assert key.public_key().public_bytes(*spki) == bundle.certificate.public_key().public_bytes(*spki)


def test_expired_certificate_was_valid_once_and_is_not_now(pki: TestPki) -> None:
    cert = pki.expired_organisation.certificate
    assert cert.not_valid_after_utc < datetime.now(UTC)
    with pytest.raises(VerificationError, match="not valid"):
        _verify(pki, pki.expired_organisation)
    assert len(_verify(pki, pki.expired_organisation, at=cert.not_valid_after_utc - timedelta(days=1))) == 3


def test_rogue_certificate_copies_the_organisation_but_chains_to_nothing(pki: TestPki) -> None:
    rogue = pki.rogue.certificate
    assert rogue.subject == pki.organisation.certificate.subject
    assert rogue.issuer == rogue.subject
    with pytest.raises(VerificationError):
        _verify(pki, pki.rogue)
    assert pki.rogue.chain_pem == pki.rogue.cert_pem


def test_files_chain_and_bundle(pki: TestPki) -> None:
    for bundle in pki.bundles().values():
        assert bundle.cert_path.read_bytes() == bundle.cert_pem
        assert bundle.chain_path.read_bytes() == bundle.chain_pem
        assert stat.S_IMODE(bundle.key_path.stat().st_mode) == 0o600
        assert bundle.key_path.read_bytes() == bundle.key_pem
    assert pki.organisation.chain_pem == pki.organisation.cert_pem + pki.org_ca.cert_pem
    assert pki.cps.chain_pem == pki.cps.cert_pem + pki.pp_ca.cert_pem
    bundle_certs = x509.load_pem_x509_certificates(pki.ca_bundle_path.read_bytes())
    assert [c.subject for c in bundle_certs] == [
        pki.root.certificate.subject,
        pki.org_ca.certificate.subject,
        pki.pp_ca.certificate.subject,
    ]
    assert pki.ca_bundle_pem == pki.ca_bundle_path.read_bytes()


def test_key_files_are_private_even_when_they_existed_before(tmp_path: Path) -> None:
    (tmp_path / "organisation.key").write_bytes(b"old")
    (tmp_path / "organisation.key").chmod(0o644)
    pki = TestPki.generate(tmp_path)
    assert stat.S_IMODE(pki.organisation.key_path.stat().st_mode) == 0o600


def test_reload_gives_the_same_pki(pki: TestPki) -> None:
    again = TestPki.load(pki.directory)
    assert again == pki
    assert again.cps.certificate.serial_number == pki.cps.certificate.serial_number


def test_reload_of_an_incomplete_folder_names_the_missing_file(tmp_path: Path) -> None:
    TestPki.generate(tmp_path)
    (tmp_path / "cps.key").unlink()
    with pytest.raises(FileNotFoundError, match=r"cps\.key"):
        TestPki.load(tmp_path)


def test_two_generations_make_different_keys(tmp_path: Path, pki: TestPki) -> None:
    other = TestPki.generate(tmp_path)
    assert other.root.key_pem != pki.root.key_pem
    assert other.organisation.cert_pem != pki.organisation.cert_pem
