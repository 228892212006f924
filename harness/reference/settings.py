"""What the harness configures in the practice: its clock and the INSi, DMP, MSSanté, Annuaire and PSC endpoints.

All survive a restart (they live in the settings table). PEM material is checked,
then written to files under the database folder, because the TLS stack reads
certificates and keys from files; private keys are written owner-only.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from harness.reference.annuaire_client import AnnuaireEndpoint
from harness.reference.dmp_client import DmpEndpoint
from harness.reference.insi import InsiEndpoint
from harness.reference.model import InvalidInput
from harness.reference.mss_transport import MssanteEndpoint
from harness.reference.psc_client import PscEndpoint
from harness.reference.store import Store


class Clock:
    """The practice's notion of now: real UTC time plus an offset the harness can set."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._offset = timedelta(seconds=float(store.get_setting("clock_offset_s") or 0.0))

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def iso(self) -> str:
        return self.now().isoformat(timespec="milliseconds")

    def set(self, now: datetime) -> None:
        """Make ``now`` the current time (a naive value is taken as UTC)."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        with self._lock:
            self._offset = now - datetime.now(UTC)
            self._store.set_setting("clock_offset_s", repr(self._offset.total_seconds()))


def parse_instant(value: Any) -> datetime:
    """An ISO 8601 date-time from a request body; raises InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput("'now' must be an ISO 8601 date-time string")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'now' is not an ISO 8601 date-time: {value[:60]!r}") from None


def installation_id(store: Store) -> str:
    """A stable identifier of this installation (ContexteLPS ``Instance``)."""
    value = store.get_setting("instance")
    if value is None:
        value = str(uuid.uuid4())
        store.set_setting("instance", value)
    return value


class EndpointSettings:
    """The endpoints the harness pointed the practice at (an endpoint absent from a body is kept)."""

    def __init__(self, store: Store, folder: Path) -> None:
        self._store = store
        self._folder = folder

    def apply(self, body: Any) -> None:
        """Check and store a ``PUT /config/endpoints`` body; raises InvalidInput (and then stores nothing)."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        checked = {name: self._checked(name, body[name]) for name in ("insi", "dmp") if body.get(name) is not None}
        mssante = _mssante_section(body["mssante"]) if body.get("mssante") is not None else None
        annuaire = _annuaire_section(body["annuaire"]) if body.get("annuaire") is not None else None
        psc = _psc_section(body["psc"]) if body.get("psc") is not None else None
        for name, (url, pems) in checked.items():
            self._write(name, url, pems)
        if mssante is not None:
            fields, pems = mssante
            self._write("mssante", "", pems, fields)
        if annuaire is not None:
            fields, pems = annuaire
            self._write("annuaire", str(fields.pop("url")), pems, fields)
        if psc is not None:
            fields, pems = psc
            self._write("psc", str(fields.pop("discovery_url")), pems, fields)

    def _checked(self, name: str, section: Any) -> tuple[str, dict[str, str]]:
        if not isinstance(section, dict):
            raise InvalidInput(f"'{name}' must be an object")
        url = section.get("url")
        if not isinstance(url, str) or not url.startswith("https://"):
            raise InvalidInput(f"'{name}.url' must be an https URL")
        fields = _PEM_FIELDS if name == "insi" else _DMP_PEM_FIELDS
        pems = {field: _pem_field(section, name, field) for field in fields}
        required = ("ca_pem",) if name == "insi" else _DMP_PEM_FIELDS
        for field in required:
            if not pems[field]:
                raise InvalidInput(f"'{name}.{field}' is required")
        _check_certificates(f"{name}.ca_pem", pems["ca_pem"])
        for cert_name, key_name in _PAIRS:
            if cert_name not in pems:
                continue
            if bool(pems[cert_name]) != bool(pems[key_name]):
                raise InvalidInput(f"'{name}.{cert_name}' and '{name}.{key_name}' go together")
            if pems[cert_name]:
                _check_certificates(f"{name}.{cert_name}", pems[cert_name])
                _check_key(f"{name}.{key_name}", pems[key_name])
        return url, pems

    def _write(self, name: str, url: str, pems: dict[str, str], fields: dict[str, Any] | None = None) -> None:
        pki = self._folder / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        for field, text in pems.items():
            if text:
                path = pki / f"{name}-{field.removesuffix('_pem').replace('_', '-')}.pem"
                _write_private(path, text)
                files[field] = str(path)
        self._store.set_setting(name, json.dumps({"url": url, "files": files, **(fields or {})}))

    def insi(self) -> InsiEndpoint | None:
        """The configured INSi endpoint, or None."""
        raw = self._store.get_setting("insi")
        if raw is None:
            return None
        data = json.loads(raw)
        files: dict[str, str] = data["files"]

        def path(name: str) -> Path | None:
            return Path(files[name]) if name in files else None

        return InsiEndpoint(
            url=data["url"],
            ca_file=Path(files["ca_pem"]),
            client_cert_file=path("client_cert_pem"),
            client_key_file=path("client_key_pem"),
            cps_cert_file=path("cps_cert_pem"),
            cps_key_file=path("cps_key_pem"),
        )

    def dmp(self) -> DmpEndpoint | None:
        """The configured DMP endpoint, or None."""
        raw = self._store.get_setting("dmp")
        if raw is None:
            return None
        data = json.loads(raw)
        files: dict[str, str] = data["files"]
        return DmpEndpoint(
            url=data["url"],
            ca_file=Path(files["ca_pem"]),
            client_cert_file=Path(files["client_cert_pem"]),
            client_key_file=Path(files["client_key_pem"]),
        )

    def mssante(self) -> MssanteEndpoint | None:
        """The configured MSSanté operator and BAL, or None."""
        raw = self._store.get_setting("mssante")
        if raw is None:
            return None
        data = json.loads(raw)
        files: dict[str, str] = data["files"]
        return MssanteEndpoint(
            smtp_host=data["smtp_host"],
            smtp_port=int(data["smtp_port"]),
            imap_host=data["imap_host"],
            imap_port=int(data["imap_port"]),
            ca_file=Path(files["ca_pem"]),
            client_cert_file=Path(files["client_cert_pem"]),
            client_key_file=Path(files["client_key_pem"]),
            address=data["address"],
            password=data["password"],
            dst_urls=dict(data.get("dst_urls") or {}),
        )

    def annuaire(self) -> AnnuaireEndpoint | None:
        """The configured Annuaire Santé FHIR API, or None."""
        raw = self._store.get_setting("annuaire")
        if raw is None:
            return None
        data = json.loads(raw)
        return AnnuaireEndpoint(url=data["url"], api_key=data["api_key"], ca_file=Path(data["files"]["ca_pem"]))

    def psc(self) -> PscEndpoint | None:
        """The configured Pro Santé Connect (discovery document and client registration), or None."""
        raw = self._store.get_setting("psc")
        if raw is None:
            return None
        data = json.loads(raw)
        return PscEndpoint(
            discovery_url=data["url"],
            client_id=data["client_id"],
            client_secret=data["client_secret"],
            ca_file=Path(data["files"]["ca_pem"]),
        )


_PEM_FIELDS = ("ca_pem", "client_cert_pem", "client_key_pem", "cps_cert_pem", "cps_key_pem")
_DMP_PEM_FIELDS = ("ca_pem", "client_cert_pem", "client_key_pem")
"""The DMP needs them all: the organisation certificate is the TLS identity and the VIHF signing key."""
_PAIRS = (("client_cert_pem", "client_key_pem"), ("cps_cert_pem", "cps_key_pem"))


_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_HOST = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")


def _mssante_section(section: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The checked ``mssante`` section: its plain fields, and its PEMs (all three required)."""
    name = "mssante"
    if not isinstance(section, dict):
        raise InvalidInput(f"'{name}' must be an object")
    fields: dict[str, Any] = {}
    for protocol in ("smtp", "imap"):
        host, port = section.get(f"{protocol}_host"), section.get(f"{protocol}_port")
        if not isinstance(host, str) or not _HOST.match(host):
            raise InvalidInput(f"'{name}.{protocol}_host' must be a host name or an IP address")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise InvalidInput(f"'{name}.{protocol}_port' must be a TCP port (1-65535)")
        fields[f"{protocol}_host"], fields[f"{protocol}_port"] = host, port
    address, password = section.get("address"), section.get("password")
    if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
        raise InvalidInput(f"'{name}.address' must be the BAL's e-mail address")
    if not isinstance(password, str):
        raise InvalidInput(f"'{name}.password' must be a string")
    fields["address"], fields["password"] = address.strip(), password
    dst_urls = section.get("dst_urls") or {}
    if not isinstance(dst_urls, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith("https://") for k, v in dst_urls.items()
    ):
        raise InvalidInput(f"'{name}.dst_urls' must map entry-point kinds to https URLs")
    fields["dst_urls"] = dict(dst_urls)
    pems = {field: _pem_field(section, name, field) for field in _DMP_PEM_FIELDS}
    for field in _DMP_PEM_FIELDS:
        if not pems[field]:
            raise InvalidInput(f"'{name}.{field}' is required")
    _check_certificates(f"{name}.ca_pem", pems["ca_pem"])
    _check_certificates(f"{name}.client_cert_pem", pems["client_cert_pem"])
    _check_key(f"{name}.client_key_pem", pems["client_key_pem"])
    return fields, pems


def _annuaire_section(section: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The checked ``annuaire`` section: url and API key, and the CA bundle."""
    name = "annuaire"
    if not isinstance(section, dict):
        raise InvalidInput(f"'{name}' must be an object")
    url, api_key = section.get("url"), section.get("api_key")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise InvalidInput(f"'{name}.url' must be an https URL")
    if not isinstance(api_key, str) or not api_key.strip():
        raise InvalidInput(f"'{name}.api_key' must be a non-empty string")
    ca_pem = _pem_field(section, name, "ca_pem")
    if not ca_pem:
        raise InvalidInput(f"'{name}.ca_pem' is required")
    _check_certificates(f"{name}.ca_pem", ca_pem)
    return {"url": url.rstrip("/"), "api_key": api_key.strip()}, {"ca_pem": ca_pem}


def _psc_section(section: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The checked ``psc`` section: discovery URL and client registration, and the CA bundle."""
    name = "psc"
    if not isinstance(section, dict):
        raise InvalidInput(f"'{name}' must be an object")
    url = section.get("discovery_url")
    if not isinstance(url, str) or not url.startswith("https://") or len(url) > 2000:
        raise InvalidInput(f"'{name}.discovery_url' must be an https URL")
    fields: dict[str, Any] = {"discovery_url": url}
    for field in ("client_id", "client_secret"):
        value = section.get(field)
        if not isinstance(value, str) or not value.strip() or len(value) > 512:
            raise InvalidInput(f"'{name}.{field}' must be a non-empty string")
        fields[field] = value.strip()
    ca_pem = _pem_field(section, name, "ca_pem")
    if not ca_pem:
        raise InvalidInput(f"'{name}.ca_pem' is required")
    _check_certificates(f"{name}.ca_pem", ca_pem)
    return fields, {"ca_pem": ca_pem}


def _pem_field(section: dict[str, Any], section_name: str, name: str) -> str:
    value = section.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{section_name}.{name}' must be a PEM string")
    return value.strip()


def _check_certificates(name: str, text: str) -> None:
    try:
        x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidInput(f"'{name}' holds no readable PEM certificate") from None


def _check_key(name: str, text: str) -> None:
    try:
        load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidInput(f"'{name}' holds no readable, unencrypted PEM private key") from None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")
