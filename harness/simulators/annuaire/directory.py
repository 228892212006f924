"""The simulated Annuaire Santé's content: Practitioner, PractitionerRole, Organization, HealthcareService, Device.

The directory is data (``fixtures/annuaire/directory.json``, FHIR JSON resources grouped by type),
each resource checked by building its ``fhir.resources.R4B`` model when loaded or added, so the
simulator only ever serves structurally valid FHIR. Profile conformance (the ANS ``as-*``
profiles) is not checked: fhir.resources cannot read StructureDefinitions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from harness.simulators.insi.identities import default_fixtures_dir

RESOURCE_TYPES = ("Practitioner", "PractitionerRole", "Organization", "HealthcareService", "Device")
"""The resource types the simulator serves: all five of the real API (protocols.md §5)."""

RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
EMAIL_TYPE_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
"""FR Core extension saying which messaging an e-mail ``telecom`` belongs to (``MSSANTE`` for a BAL)."""
MAILBOX_METADATA_URL = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
"""ANS extension with a BAL's ``type`` (PER/ORG/APP/CAB), ``description``, ``service``, ``listeRouge``."""
SMARTCARD_URL = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-smartcard"
"""ANS extension on a Practitioner describing a CPx card (sub-extensions ``type``, ``number``, ``period``)."""
TYPE_MESSAGERIE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
TYPE_BAL_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"


class DirectoryError(ValueError):
    """The seed cannot be read, or a resource is not valid FHIR R4B."""


def validated(resource: Mapping[str, Any], where: str = "resource") -> dict[str, Any]:
    """``resource`` checked by its R4B model and given back as the model serialises it (JSON-ready).

    Raises:
        DirectoryError: not a served type, no ``id``, or invalid for fhir.resources.
    """
    kind = resource.get("resourceType")
    if kind not in RESOURCE_TYPES:
        raise DirectoryError(f"{where}: resourceType {kind!r} is not one of {', '.join(RESOURCE_TYPES)}")
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        raise DirectoryError(f"{where}: a {kind} needs an id")
    try:
        model = get_fhir_model_class(str(kind)).model_validate(dict(resource))
    except ValidationError as exc:
        raise DirectoryError(f"{where}: invalid {kind}: {exc}") from exc
    data: dict[str, Any] = json.loads(model.model_dump_json())
    return data


def as_model(resource: Mapping[str, Any]) -> Resource:
    """The R4B model of a stored (already validated) resource."""
    model = get_fhir_model_class(str(resource["resourceType"])).model_validate(dict(resource))
    assert isinstance(model, Resource)
    return model


class Directory:
    """The resources the simulator serves, by type and id; thread-safe, insertion-ordered."""

    def __init__(self, resources: Iterable[Mapping[str, Any]] = (), source: str = "") -> None:
        self.source = source
        self._lock = threading.Lock()
        self._by_type: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in RESOURCE_TYPES}
        for number, resource in enumerate(resources, start=1):
            self.add(resource, where=f"{source or 'directory'}: resource #{number}")

    @classmethod
    def load(cls, path: Path) -> Directory:
        """A directory from a JSON file ``{"Practitioner": [...], "PractitionerRole": [...], ...}``, one list per type.

        A type left out of the file has no resource (older seeds have no HealthcareService or Device).

        Raises:
            DirectoryError: unreadable file, bad layout or an invalid resource.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DirectoryError(f"{path}: cannot read the directory: {exc}") from exc
        if not isinstance(data, dict):
            raise DirectoryError(f"{path}: expected a JSON object of resource lists")
        resources: list[Mapping[str, Any]] = []
        for kind in RESOURCE_TYPES:
            items = data.get(kind, [])
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise DirectoryError(f"{path}: {kind!r} must be a list of resources")
            for item in items:
                if item.get("resourceType") != kind:
                    raise DirectoryError(
                        f"{path}: {item.get('id')!r} listed under {kind} is a {item.get('resourceType')}"
                    )
            resources.extend(items)
        return cls(resources, source=str(path))

    @classmethod
    def default(cls) -> Directory:
        """The synthetic directory shipped with the harness (``fixtures/annuaire/directory.json``)."""
        return cls.load(default_fixtures_dir() / "annuaire" / "directory.json")

    def add(self, resource: Mapping[str, Any], where: str = "resource") -> dict[str, Any]:
        """Add (or replace, same type and id) a resource, validated first; returns the stored form."""
        stored = validated(resource, where)
        with self._lock:
            self._by_type[stored["resourceType"]][stored["id"]] = stored
        return stored

    def get(self, kind: str, resource_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._by_type.get(kind, {}).get(resource_id)

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_type.get(kind, {}).values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(items) for kind, items in self._by_type.items()}


__all__ = [
    "EMAIL_TYPE_URL",
    "FINESS_SYSTEM",
    "IDNPS_SYSTEM",
    "IDNST_SYSTEM",
    "MAILBOX_METADATA_URL",
    "RESOURCE_TYPES",
    "RPPS_SYSTEM",
    "SMARTCARD_URL",
    "TYPE_BAL_SYSTEM",
    "TYPE_MESSAGERIE_SYSTEM",
    "Directory",
    "DirectoryError",
    "as_model",
    "validated",
]
