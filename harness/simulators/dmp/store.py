"""What the simulated DMP holds: patients and their DMP state, document entries, versions, associations.

Scenarios set patients up (:class:`PatientState`: does the DMP exist, is the professional
authorised, did the patient oppose the feed); the registry decisions of
:mod:`harness.simulators.dmp.registry` and :mod:`harness.simulators.dmp.query` read and
change the rest. One re-entrant lock guards it all: a decision (check, then store) is
taken whole under it, so two concurrent submissions of the same document cannot both win.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from harness.simulators.dmp.ebxml import (
    AvailabilityStatus,
    Code,
    DocumentEntry,
    SubmissionSet,
    patient_cx,
    patient_key,
)

DMP_STATUSES = ("EXISTANT", "NON_EXISTANT", "FERME")
AUTHORIZATIONS = ("VALIDE", "EXPIRE", "INTERDIT", "NON_EXISTE")

PatientKey = tuple[str, str]


@dataclass(slots=True, kw_only=True)
class PatientState:
    """One patient as the DMP knows them (TD0.2 answers from it).

    Attributes:
        matricule: the matricule INS (15 characters).
        oid: the INS assigning authority (``1.2.250.1.213.1.4.10`` for test INS).
        dmp_status: ``EXISTANT``, ``NON_EXISTANT`` or ``FERME``.
        authorization: the calling professional's access: ``VALIDE``, ``EXPIRE``, ``INTERDIT``, ``NON_EXISTE``.
        feed_opposition: the patient opposed feeding their DMP (ITI-41 refused).
        consultation_opposition: the patient opposed consultation (ITI-18/ITI-43 refused).
    """

    matricule: str
    oid: str
    dmp_status: str = "EXISTANT"
    authorization: str = "VALIDE"
    feed_opposition: bool = False
    consultation_opposition: bool = False

    def __post_init__(self) -> None:
        if self.dmp_status not in DMP_STATUSES:
            raise ValueError(f"dmp_status {self.dmp_status!r}: one of {', '.join(DMP_STATUSES)}")
        if self.authorization not in AUTHORIZATIONS:
            raise ValueError(f"authorization {self.authorization!r}: one of {', '.join(AUTHORIZATIONS)}")

    @property
    def patient_id(self) -> str:
        """The CX form XDS uses (``<matricule>^^^&<oid>&ISO^NH``)."""
        return patient_cx(self.matricule, self.oid)

    @property
    def key(self) -> PatientKey:
        return self.matricule, self.oid


@dataclass(slots=True, kw_only=True)
class StoredEntry:
    """A document entry held by the registry (one version of one logical document).

    Attributes:
        entry_uuid: the registry id of this version (``urn:uuid:``).
        lid: the logical id, shared by every version made by ITI-57.
        version: 1 for a new document, +1 for each metadata update.
        status: current availability status.
        entry: the metadata as stored (symbolic ids replaced by UUIDs).
        element: the stored ``rim:ExtrinsicObject`` (ids replaced), the base of ITI-18 answers.
        document: the document's bytes (shared between versions).
        patient: ``(matricule, oid)``.
        submission_set_uuid: the submission set that brought this version.
        repository_unique_id: where ITI-43 finds the bytes.
        stored_at: when it was stored.
        replaces / replaced_by: entry UUIDs linked by RPLC.
        previous_version / next_version: entry UUIDs linked by ITI-57 metadata updates.
    """

    entry_uuid: str
    lid: str
    version: int
    status: AvailabilityStatus
    entry: DocumentEntry
    element: etree._Element
    document: bytes
    patient: PatientKey
    submission_set_uuid: str
    repository_unique_id: str
    stored_at: datetime
    replaces: str = ""
    replaced_by: str = ""
    previous_version: str = ""
    next_version: str = ""

    @property
    def unique_id(self) -> str:
        return self.entry.unique_id

    @property
    def patient_id(self) -> str:
        return patient_cx(*self.patient)

    @property
    def mime_type(self) -> str:
        return self.entry.mime_type

    @property
    def confidentiality_codes(self) -> list[Code]:
        return self.entry.confidentiality_codes

    @property
    def size(self) -> int:
        return len(self.document)


@dataclass(slots=True, kw_only=True)
class StoredSubmissionSet:
    uuid: str
    submission_set: SubmissionSet
    element: etree._Element
    patient: PatientKey
    status: AvailabilityStatus = AvailabilityStatus.APPROVED


@dataclass(slots=True, kw_only=True)
class StoredAssociation:
    uuid: str
    type: str
    source: str
    target: str
    element: etree._Element
    status: AvailabilityStatus = AvailabilityStatus.APPROVED


@dataclass(slots=True)
class DmpStore:
    """Patients, entries, submission sets and associations; use :attr:`lock` around a whole decision."""

    patients: dict[PatientKey, PatientState] = field(default_factory=dict)
    entries: dict[str, StoredEntry] = field(default_factory=dict)
    submission_sets: dict[str, StoredSubmissionSet] = field(default_factory=dict)
    associations: dict[str, StoredAssociation] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def clear(self) -> None:
        with self.lock:
            self.patients.clear()
            self.entries.clear()
            self.submission_sets.clear()
            self.associations.clear()

    def set_patient(self, state: PatientState) -> PatientState:
        with self.lock:
            self.patients[state.key] = state
        return state

    def patient(self, patient_id: str) -> PatientState | None:
        """The patient a CX value names (compared by identifier and authority), or None."""
        key = patient_key(patient_id)
        if key is None:
            return None
        with self.lock:
            return self.patients.get(key)

    def known_id(self, object_id: str) -> bool:
        with self.lock:
            return object_id in self.entries or object_id in self.submission_sets or object_id in self.associations

    def by_unique_id(self, unique_id: str) -> list[StoredEntry]:
        with self.lock:
            return [e for e in self.entries.values() if e.unique_id == unique_id]

    def for_patient(self, key: PatientKey) -> list[StoredEntry]:
        with self.lock:
            return [e for e in self.entries.values() if e.patient == key]

    def current(self, lid: str) -> StoredEntry | None:
        """The latest version of the logical document ``lid`` (Approved, else the highest version)."""
        with self.lock:
            versions = sorted((e for e in self.entries.values() if e.lid == lid), key=lambda e: e.version)
        approved = [e for e in versions if e.status is AvailabilityStatus.APPROVED]
        if approved:
            return approved[-1]
        return versions[-1] if versions else None

    def resolve(self, reference: str) -> StoredEntry | None:
        """The entry an ITI-57 reference names: an entry UUID, else a logical id."""
        with self.lock:
            found = self.entries.get(reference)
        return found if found is not None else self.current(reference)
