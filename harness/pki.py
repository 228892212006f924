"""A throw-away test PKI standing in for IGC-Santé, generated when a run starts.

The national services authenticate software with IGC-Santé certificates: an
organisation certificate ("personne morale") on mutual TLS, or the professional's
CPS certificate with a signed assertion. The simulators need the same shapes of
certificates to tell a conforming client from a misconfigured one, and the keys must
never be committed, so they are made here at run time: a root, two intermediates
(``ORG`` for organisations and servers, ``PP`` for professionals, as IGC-Santé
separates them), and the leaf certificates the scenarios use, including deliberately
bad ones (expired, self-signed). The MSSanté operator's server certificates are RSA:
every cipher suite the MSSanté référentiel allows (``ECDHE-RSA-…``, ``DHE-RSA-…``)
authenticates the server with RSA, so an EC server could not serve a conforming client.

Key choices: EC P-256 for the authorities and the server (fast), RSA 2048 for the
leaf certificates that sign XML (the CPS and organisation certificates sign SAML
assertions with ``rsa-sha256``, the algorithm the ANS texts name). Every certificate
carries KeyUsage, SubjectKeyIdentifier and AuthorityKeyIdentifier, which strict
verifiers (signxml's, cryptography's web-PKI policy) require.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANISATION_FINESS = "990000010"
"""The invented FINESS number of the test organisation (department 99 does not exist; Luhn key 0)."""
ORGANISATION_IDNAT = "1" + ORGANISATION_FINESS
"""Its national structure identifier (IdNat_Struct = ``1`` + FINESS)."""
CPS_IDNAT_PS = "899700012345"
"""The invented national professional identifier (IdNat_PS = ``8`` + an RPPS-like number) of the CPS holder."""

_KEY_FILE_MODE = 0o600

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_BUNDLE_NAMES = (
    "root",
    "org-ca",
    "pp-ca",
    "server",
    "organisation",
    "cps",
    "expired-organisation",
    "rogue",
    "mss-server",
    "mss-expired-server",
    "mss-rogue-server",
)


@dataclass(frozen=True, slots=True)
class CertBundle:
    """One certificate with its private key, as PEM bytes and as files in the PKI folder.

    Attributes:
        name: file stem in the folder (``organisation``, ``cps``...).
        cert_pem: the certificate alone.
        key_pem: its private key (PKCS#8, unencrypted; the file is mode 0600).
        chain_pem: the certificate followed by its issuing intermediate (what a TLS
            client or an XML signer should present); the certificate alone for a root
            or a self-signed certificate.
        cert_path, key_path, chain_path: where those PEMs are written.
    """

    name: str
    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes
    cert_path: Path
    key_path: Path
    chain_path: Path

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def subject(self) -> str:
        """The subject as an RFC 4514 string."""
        return self.certificate.subject.rfc4514_string()


@dataclass(frozen=True, slots=True)
class TestPki:
    """The run's certificates; make one with :meth:`generate`, reopen it with :meth:`load`.

    Attributes:
        directory: the folder holding every PEM file.
        root: the self-signed root authority.
        org_ca: intermediate ``ORG`` (organisations and servers).
        pp_ca: intermediate ``PP`` (health professionals' CPS certificates).
        server: the simulators' TLS server certificate (localhost, 127.0.0.1).
        organisation: a health centre's organisation certificate (clientAuth).
        cps: a professional's CPS certificate (clientAuth, digitalSignature).
        expired_organisation: like ``organisation`` but no longer valid.
        rogue: a self-signed certificate copying the organisation's subject, chained to nothing.
        mss_server: the MSSanté operator's server certificate (RSA, ``ORG``: IGC-Santé "Elémentaire Organisation"-like).
        mss_expired_server: the same operator's server certificate, expired.
        mss_rogue_server: a self-signed server certificate for the same names, outside IGC-Santé.
        ca_bundle_path: root and both intermediates in one PEM file (what clients trust).
    """

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    directory: Path
    root: CertBundle
    org_ca: CertBundle
    pp_ca: CertBundle
    server: CertBundle
    organisation: CertBundle
    cps: CertBundle
    expired_organisation: CertBundle
    rogue: CertBundle
    mss_server: CertBundle
    mss_expired_server: CertBundle
    mss_rogue_server: CertBundle
    ca_bundle_path: Path

    @property
    def ca_bundle_pem(self) -> bytes:
        """Root and intermediates, PEM: the trust anchors of every party of a run."""
        return self.root.cert_pem + self.org_ca.cert_pem + self.pp_ca.cert_pem

    def bundles(self) -> dict[str, CertBundle]:
        """Every bundle by its file stem."""
        return {
            b.name: b
            for b in (
                self.root,
                self.org_ca,
                self.pp_ca,
                self.server,
                self.organisation,
                self.cps,
                self.expired_organisation,
                self.rogue,
                self.mss_server,
                self.mss_expired_server,
                self.mss_rogue_server,
            )
        }

    @classmethod
    def generate(cls, directory: Path, *, validity: timedelta = timedelta(days=30)) -> TestPki:
        """Create a fresh PKI in ``directory`` (created if needed; existing files are replaced)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = now - timedelta(hours=1), now + validity
        ca_start = now - timedelta(days=90)  # authorities predate every leaf, the expired one included

        root_key = _ec_key()
        root_name = _name(O="TEST IGC-SANTE (SYNTHETIQUE)", CN="TEST AC RACINE IGC-SANTE")
        root = _issue(root_name, root_key, root_name, root_key, ca_start, end, _ca_profile(path_length=1))
        org_key, pp_key = _ec_key(), _ec_key()
        org_ca_name = _name(O="TEST IGC-SANTE (SYNTHETIQUE)", CN="TEST AC IGC-SANTE ORGANISATIONS (ORG)")
        pp_ca_name = _name(O="TEST IGC-SANTE (SYNTHETIQUE)", CN="TEST AC IGC-SANTE PERSONNES (PP)")
        org_ca = _issue(org_ca_name, org_key, root_name, root_key, ca_start, end, _ca_profile(path_length=0))
        pp_ca = _issue(pp_ca_name, pp_key, root_name, root_key, ca_start, end, _ca_profile(path_length=0))

        server_key = _ec_key()
        server = _issue(
            _name(O="SIMULATEURS SEGUR (TEST)", CN="localhost"),
            server_key,
            org_ca_name,
            org_key,
            start,
            end,
            _leaf_profile(server_key, ExtendedKeyUsageOID.SERVER_AUTH, server_names=True),
        )
        organisation_name = _name(
            O="CENTRE DE SANTE DU TEST",
            OU=ORGANISATION_IDNAT,
            CN="CENTRE DE SANTE DU TEST",
            serialNumber=ORGANISATION_IDNAT,
        )
        organisation_key = _rsa_key()
        organisation = _issue(
            organisation_name,
            organisation_key,
            org_ca_name,
            org_key,
            start,
            end,
            _leaf_profile(organisation_key, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        cps_key = _rsa_key()
        cps = _issue(
            _name(
                O="CABINET MEDICAL DU TEST",
                SN="TESTEUR",
                GN="JEAN",
                CN="DR JEAN TESTEUR",
                serialNumber=CPS_IDNAT_PS,
            ),
            cps_key,
            pp_ca_name,
            pp_key,
            start,
            end,
            _leaf_profile(cps_key, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        expired_key = _rsa_key()
        expired = _issue(
            organisation_name,
            expired_key,
            org_ca_name,
            org_key,
            now - timedelta(days=60),
            now - timedelta(days=1),
            _leaf_profile(expired_key, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        rogue_key = _rsa_key()
        rogue = _issue(
            organisation_name,
            rogue_key,
            organisation_name,
            rogue_key,
            start,
            end,
            _leaf_profile(rogue_key, ExtendedKeyUsageOID.CLIENT_AUTH),
        )

        operator_name = _name(O="OPERATEUR MSSANTE (TEST)", OU=ORGANISATION_IDNAT, CN="localhost")
        operator_profile = partial(_leaf_profile, purpose=ExtendedKeyUsageOID.SERVER_AUTH, server_names=True)
        mss_key, mss_expired_key, mss_rogue_key = _rsa_key(), _rsa_key(), _rsa_key()
        mss_server = _issue(operator_name, mss_key, org_ca_name, org_key, start, end, operator_profile(mss_key))
        mss_expired = _issue(
            operator_name,
            mss_expired_key,
            org_ca_name,
            org_key,
            now - timedelta(days=60),
            now - timedelta(days=1),
            operator_profile(mss_expired_key),
        )
        mss_rogue = _issue(
            operator_name, mss_rogue_key, operator_name, mss_rogue_key, start, end, operator_profile(mss_rogue_key)
        )

        issued: list[tuple[str, x509.Certificate, PrivateKey, x509.Certificate | None]] = [
            ("root", root, root_key, None),
            ("org-ca", org_ca, org_key, None),
            ("pp-ca", pp_ca, pp_key, None),
            ("server", server, server_key, org_ca),
            ("organisation", organisation, organisation_key, org_ca),
            ("cps", cps, cps_key, pp_ca),
            ("expired-organisation", expired, expired_key, org_ca),
            ("rogue", rogue, rogue_key, None),
            ("mss-server", mss_server, mss_key, org_ca),
            ("mss-expired-server", mss_expired, mss_expired_key, org_ca),
            ("mss-rogue-server", mss_rogue, mss_rogue_key, None),
        ]
        for name, cert, key, issuer in issued:
            cert_pem = _pem(cert)
            _write(directory / f"{name}.pem", cert_pem)
            _write(directory / f"{name}-chain.pem", cert_pem + (_pem(issuer) if issuer is not None else b""))
            _write(directory / f"{name}.key", _key_pem(key), private=True)
        _write(directory / "ca-bundle.pem", _pem(root) + _pem(org_ca) + _pem(pp_ca))
        return cls.load(directory)

    @classmethod
    def load(cls, directory: Path) -> TestPki:
        """Reopen a PKI written by :meth:`generate`.

        Raises:
            FileNotFoundError: a file of the PKI is missing (the message names it).
        """
        directory = Path(directory)
        bundles = {name: _read_bundle(directory, name) for name in _BUNDLE_NAMES}
        ca_bundle = directory / "ca-bundle.pem"
        if not ca_bundle.is_file():
            raise FileNotFoundError(f"test PKI incomplete: {ca_bundle} is missing")
        return cls(
            directory=directory,
            root=bundles["root"],
            org_ca=bundles["org-ca"],
            pp_ca=bundles["pp-ca"],
            server=bundles["server"],
            organisation=bundles["organisation"],
            cps=bundles["cps"],
            expired_organisation=bundles["expired-organisation"],
            rogue=bundles["rogue"],
            mss_server=bundles["mss-server"],
            mss_expired_server=bundles["mss-expired-server"],
            mss_rogue_server=bundles["mss-rogue-server"],
            ca_bundle_path=ca_bundle,
        )


# -- certificate profiles -----------------------------------------------------------------------

_Extension = tuple[x509.ExtensionType, bool]


def _ca_profile(path_length: int) -> list[_Extension]:
    return [
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (_key_usage(cert_sign=True), True),
    ]


def _leaf_profile(key: PrivateKey, purpose: x509.ObjectIdentifier, *, server_names: bool = False) -> list[_Extension]:
    extensions: list[_Extension] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(signature=True, encipherment=isinstance(key, rsa.RSAPrivateKey)), True),
        (x509.ExtendedKeyUsage([purpose]), False),
    ]
    if server_names:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        extensions.append((x509.SubjectAlternativeName(names), False))
    return extensions


def _key_usage(*, cert_sign: bool = False, signature: bool = False, encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    subject: x509.Name,
    key: PrivateKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    extensions: list[_Extension],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


_ATTRIBUTES = {
    "C": NameOID.COUNTRY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "CN": NameOID.COMMON_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}


def _name(**parts: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    attributes += [x509.NameAttribute(_ATTRIBUTES[label], value) for label, value in parts.items()]
    return x509.Name(attributes)


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- files --------------------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data``; a private key file is created (or narrowed) to mode 0600 before any byte is written."""
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _KEY_FILE_MODE)
        os.fchmod(fd, _KEY_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def _read_bundle(directory: Path, name: str) -> CertBundle:
    paths = (directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}-chain.pem")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"test PKI incomplete: {path} is missing")
    cert_path, key_path, chain_path = paths
    return CertBundle(
        name=name,
        cert_pem=cert_path.read_bytes(),
        key_pem=key_path.read_bytes(),
        chain_pem=chain_path.read_bytes(),
        cert_path=cert_path,
        key_path=key_path,
        chain_path=chain_path,
    )
