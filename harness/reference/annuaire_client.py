"""The practice's Annuaire Santé client: who a correspondent is and which MSSanté BAL to write to.

A FHIR R4 search of ``Practitioner`` on the Annuaire Santé API (``shared/docs/protocols.md``
§5): by national identifier (``identifier=urn:oid:1.2.250.1.71.4.2.1|<IDNPS>``) or by
name (``family``, ``given``), with ``_revinclude=PractitionerRole:practitioner`` so the
situations d'exercice come in the same answer. Every request carries the
``ESANTE-API-KEY`` header and checks the server against the configured CA bundle. A
mailbox is a ``telecom`` of system ``email`` typed ``MSSANTE`` by the FR Core
extension (§3.5); the Practitioner's own come first, then its roles'. ``next`` links
are followed, a bounded number of times and only on the configured server (the API key
never goes elsewhere). The ``ann-*`` defects of :mod:`harness.reference.defects` are
switched here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from harness.reference.http_body import bounded_body

IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
EMAIL_TYPE_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
MSSANTE = "MSSANTE"
API_KEY_HEADER = "ESANTE-API-KEY"
REVINCLUDE = "PractitionerRole:practitioner"
MAX_PAGES = 10
MAX_ANSWER_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AnnuaireEndpoint:
    """The FHIR base URL, the API key, and the file (under the database folder) of the CA bundle to trust."""

    url: str
    api_key: str
    ca_file: Path


@dataclass(frozen=True, slots=True)
class Correspondent:
    """A professional found in the directory, with the BALs the practice would write to (preferred first)."""

    idnps: str
    family: str
    given: str
    mailboxes: tuple[str, ...] = ()
    resource_id: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"idnps": self.idnps, "family": self.family, "given": self.given, "mailboxes": list(self.mailboxes)}


class AnnuaireUnavailable(RuntimeError):
    """The directory could not be reached or refused the search; the message says why."""


class AnnuaireClient:
    """Searches the Annuaire Santé for the practice's users."""

    def __init__(self, endpoint: AnnuaireEndpoint, timeout_s: float, defects: frozenset[str] = frozenset()) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.defects = defects

    def find(self, idnps: str = "", family: str = "", given: str = "") -> list[Correspondent]:
        """The practitioners matching the IDNPS, or else the names; raises AnnuaireUnavailable."""
        params: list[tuple[str, str]]
        if idnps:
            params = [("identifier", f"{IDNPS_SYSTEM}|{idnps}")]
        else:
            params = [(name, value) for name, value in (("family", family), ("given", given)) if value]
        if not params:
            raise ValueError("an IDNPS or a name is needed")
        params.append(("_revinclude", REVINCLUDE))
        resources = self._search(f"{self.endpoint.url.rstrip('/')}/Practitioner", params)
        practitioners = [r for mode, r in resources if r.get("resourceType") == "Practitioner" and mode != "include"]
        roles = [r for _, r in resources if r.get("resourceType") == "PractitionerRole"]
        return [self._correspondent(p, roles) for p in _unique(practitioners)]

    # -- reading the resources ---------------------------------------------------------------------
    def _correspondent(self, practitioner: dict[str, Any], roles: list[dict[str, Any]]) -> Correspondent:
        reference = f"Practitioner/{practitioner.get('id', '')}"
        own_roles = [r for r in roles if _reference(r, "practitioner") == reference]
        name = _first(practitioner.get("name"))
        given = _list(name.get("given"))
        return Correspondent(
            idnps=_idnps(practitioner),
            family=str(name.get("family") or ""),
            given=" ".join(str(g) for g in given),
            mailboxes=self._mailboxes([practitioner, *own_roles]),
            resource_id=str(practitioner.get("id", "")),
        )

    def _mailboxes(self, resources: list[dict[str, Any]]) -> tuple[str, ...]:
        telecoms = [t for r in resources for t in _list(r.get("telecom")) if isinstance(t, dict)]
        emails = [t for t in telecoms if t.get("system") == "email" and isinstance(t.get("value"), str)]
        if "ann-wrong-mailbox" in self.defects:
            return (str(emails[0]["value"]),) if emails else ()
        found: list[str] = []
        for telecom in emails:
            if is_mss_mailbox(telecom) and telecom["value"] not in found:
                found.append(str(telecom["value"]))
        return tuple(found)

    # -- HTTP --------------------------------------------------------------------------------------
    def _search(self, url: str, params: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
        """(search mode, resource) of every entry of every page."""
        headers = {"Accept": "application/fhir+json"}
        if "ann-no-api-key" not in self.defects:
            headers[API_KEY_HEADER] = self.endpoint.api_key
        origin = _origin(self.endpoint.url)
        found: list[tuple[str, dict[str, Any]]] = []
        next_url: str | None = url
        query: list[tuple[str, str]] | None = params
        with requests.Session() as session:
            session.trust_env = False
            for _ in range(MAX_PAGES):
                if next_url is None:
                    break
                bundle = self._get(session, next_url, query, headers)
                for entry in _list(bundle.get("entry")):
                    resource = entry.get("resource") if isinstance(entry, dict) else None
                    if isinstance(resource, dict):
                        mode = str((entry.get("search") or {}).get("mode") or "match")
                        found.append((mode, resource))
                next_url = _next_link(bundle)
                query = None
                if next_url is not None and _origin(next_url) != origin:
                    raise AnnuaireUnavailable(f"the next page is on another server ({_origin(next_url)}): not followed")
        return found

    def _get(
        self, session: requests.Session, url: str, params: list[tuple[str, str]] | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        try:
            response = session.get(
                url,
                params=params,
                headers=headers,
                verify=str(self.endpoint.ca_file),
                timeout=(self.timeout_s, self.timeout_s),
                stream=True,
                allow_redirects=False,
            )
            with response:
                payload = bounded_body(response, MAX_ANSWER_BYTES, 65536)
                if payload is None:
                    raise AnnuaireUnavailable(f"the directory's answer is larger than {MAX_ANSWER_BYTES} bytes")
                status = response.status_code
        except requests.Timeout:
            raise AnnuaireUnavailable(f"no answer from the directory within {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise AnnuaireUnavailable(f"the directory is unreachable: {_short(exc)}") from None
        try:
            data = json.loads(payload)
        except ValueError:
            raise AnnuaireUnavailable(f"the directory answered HTTP {status} with a body that is not JSON") from None
        if status != 200:
            raise AnnuaireUnavailable(f"the directory answered HTTP {status}: {_diagnostics(data)}")
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise AnnuaireUnavailable("the directory's answer is not a FHIR Bundle")
        return data


def is_mss_mailbox(telecom: dict[str, Any]) -> bool:
    """True for an ``email`` telecom whose FR Core e-mail type is ``MSSANTE``."""
    return telecom.get("system") == "email" and any(
        isinstance(ext, dict)
        and ext.get("url") == EMAIL_TYPE_URL
        and isinstance(ext.get("valueCoding"), dict)
        and ext["valueCoding"].get("code") == MSSANTE
        for ext in _list(telecom.get("extension"))
    )


def _idnps(practitioner: dict[str, Any]) -> str:
    for identifier in _list(practitioner.get("identifier")):
        if isinstance(identifier, dict) and identifier.get("system") == IDNPS_SYSTEM:
            return str(identifier.get("value") or "")
    return ""


def _unique(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for resource in resources:
        key = str(resource.get("id", ""))
        if key not in seen:
            seen.add(key)
            out.append(resource)
    return out


def _reference(resource: dict[str, Any], element: str) -> str:
    """``Type/id`` of a reference, relative or absolute, without a ``_history`` version."""
    value = resource.get(element)
    reference = str(value.get("reference", "")) if isinstance(value, dict) else ""
    return "/".join(reference.split("/_history/", 1)[0].split("/")[-2:])


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in _list(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _diagnostics(data: Any) -> str:
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        issues = [i for i in _list(data.get("issue")) if isinstance(i, dict)]
        texts = [str(i.get("diagnostics") or i.get("code") or "") for i in issues]
        return _short("; ".join(t for t in texts if t) or "OperationOutcome")
    return "no OperationOutcome"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _first(value: Any) -> dict[str, Any]:
    items = _list(value)
    return items[0] if items and isinstance(items[0], dict) else {}


def _short(exc: object) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
