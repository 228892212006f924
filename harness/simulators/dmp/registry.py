"""The DMP's registry and repository decisions for feeding (ITI-41) and updating (ITI-57).

Given parsed metadata and the bytes received, decide as the DMP would (``docs/dmp-wire.md``
§ ITI-41 response): refuse an unknown patient, differing patientIds, a patient who opposed
the feed, a missing document, a hash or size that does not match the bytes, a replacement
of nothing; otherwise store everything at once (a ``Failure`` stores nothing), replacing
symbolic ids by UUIDs, and apply RPLC (the replaced entry becomes Deprecated). ITI-57
changes a status (Deleted and Archived are the contract's inferred DMP statuses) or makes
a new version of an entry's metadata (same logical id, version + 1, the previous version
Deprecated), which is how masking and visibility codes change.

Every refusal is both a ``RegistryError`` (what the client reads) and an error finding
(what the evidence shows), with the DMP-style French ``codeContext``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from harness.findings import Finding, error, warning
from harness.simulators.dmp.ebxml import (
    HAS_MEMBER,
    RIM,
    RPLC,
    SEVERITY_WARNING,
    UPDATE_AVAILABILITY_STATUS,
    XDSB,
    XOP,
    AvailabilityStatus,
    DocumentEntry,
    ResponseStatus,
    SubmitObjects,
    is_uuid,
    patient_key,
    read_entry,
)
from harness.simulators.dmp.mtom import MtomMessage
from harness.simulators.dmp.records import RegistryError, UpdateChange
from harness.simulators.dmp.store import (
    DmpStore,
    PatientKey,
    PatientState,
    StoredAssociation,
    StoredEntry,
    StoredSubmissionSet,
)
from harness.simulators.recording import utcnow

SOURCE = "dmp-simulator"
_REFERENCES = ("classifiedObject", "registryObject", "sourceObject", "targetObject", "lid")


class AttachmentTooLarge(Exception):
    """A document above the size limit (a SOAP fault, not a registry answer)."""


@dataclass(slots=True)
class ReceivedDocuments:
    """The ``xdsb:Document`` elements of an ITI-41 request, resolved to bytes."""

    by_id: dict[str, bytes] = field(default_factory=dict)
    transport: str = "none"
    missing_parts: dict[str, str] = field(default_factory=dict)
    """Entry id → the ``cid:`` reference that names no MIME part."""
    undecodable: list[str] = field(default_factory=list)


def read_documents(request: etree._Element, mtom: MtomMessage | None, max_bytes: int) -> ReceivedDocuments:
    """Resolve each ``xdsb:Document`` to bytes: from its MTOM part (``xop:Include``) or its inline base64.

    Raises:
        AttachmentTooLarge: a document above ``max_bytes``.
    """
    received = ReceivedDocuments()
    ways: set[str] = set()
    for document in request.iterfind(f"{{{XDSB}}}Document"):
        entry_id = document.get("id", "").strip()
        include = document.find(f"{{{XOP}}}Include")
        if include is not None:
            ways.add("mtom")
            href = include.get("href", "")
            part = mtom.resolve(href) if mtom is not None else None
            if part is None:
                received.missing_parts[entry_id] = href
                continue
            if part.size > max_bytes:
                raise AttachmentTooLarge(f"document {entry_id}: {part.size} octets, limite {max_bytes}")
            received.by_id[entry_id] = part.content
            continue
        ways.add("inline")
        text = "".join((document.text or "").split())
        if len(text) * 3 // 4 > max_bytes + 2:
            raise AttachmentTooLarge(f"document {entry_id}: ~{len(text) * 3 // 4} octets, limite {max_bytes}")
        try:
            received.by_id[entry_id] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            received.undecodable.append(entry_id)
    received.transport = "mixed" if len(ways) > 1 else next(iter(ways), "none")
    return received


@dataclass(slots=True)
class Outcome:
    """A registry decision: the status, the errors answered, the findings, the ids given."""

    status: ResponseStatus = ResponseStatus.SUCCESS
    errors: list[RegistryError] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)
    changes: list[UpdateChange] = field(default_factory=list)

    def refuse(self, code: str, context: str, location: str, rule: str) -> None:
        self.errors.append(RegistryError(code, context, location=location))
        self.findings.append(error(rule, f"{code}: {context}", location, SOURCE))

    @property
    def refused(self) -> bool:
        return any(e.is_error for e in self.errors)

    def close(self) -> Outcome:
        if self.refused:
            self.status = ResponseStatus.FAILURE
            self.stored = {}
        return self


class Registry:
    """ITI-41 and ITI-57 decisions over a :class:`DmpStore`."""

    def __init__(self, store: DmpStore, repository_unique_id: str) -> None:
        self.store = store
        self.repository_unique_id = repository_unique_id

    # -- ITI-41 ----------------------------------------------------------------------------------
    def register(self, submit: SubmitObjects, received: ReceivedDocuments, *, partial_warning: str = "") -> Outcome:
        """Check then store a submission; ``partial_warning`` turns a success into ``PartialSuccess``."""
        outcome = Outcome()
        submission_set = submit.submission_set
        assert submission_set is not None
        with self.store.lock:
            self._check_structure(submit, outcome)
            self._check_documents(submit, received, outcome)
            patient = self._check_patient(submission_set.patient_id, [e.patient_id for e in submit.entries], outcome)
            self._check_content(submit, received, outcome)
            targets = self._check_replacements(submit, patient, outcome)
            if outcome.close().refused:
                return outcome
            assert patient is not None
            outcome.stored = self._store(submit, received, patient.key, targets)
        if partial_warning:
            outcome.status = ResponseStatus.PARTIAL_SUCCESS
            outcome.errors.append(RegistryError("XDSRegistryError", partial_warning, SEVERITY_WARNING, "fault"))
        return outcome

    def _check_structure(self, submit: SubmitObjects, outcome: Outcome) -> None:
        submission_set = submit.submission_set
        assert submission_set is not None
        if not submit.entries:
            outcome.refuse(
                "XDSRepositoryMetadataError",
                "aucune fiche document (ExtrinsicObject)",
                "rim:RegistryObjectList",
                "dmp.xds.metadata",
            )
        members = {a.target for a in submit.associations if a.type == HAS_MEMBER and a.source == submission_set.id}
        for entry in submit.entries:
            if not entry.patient_id:
                outcome.refuse(
                    "XDSRepositoryMetadataError",
                    f"fiche {entry.id}: XDSDocumentEntry.patientId absent",
                    entry.id,
                    "dmp.xds.metadata",
                )
            if not entry.unique_id:
                outcome.refuse(
                    "XDSRepositoryMetadataError",
                    f"fiche {entry.id}: XDSDocumentEntry.uniqueId absent",
                    entry.id,
                    "dmp.xds.metadata",
                )
            if entry.id not in members:
                outcome.refuse(
                    "XDSRepositoryMetadataError",
                    f"fiche {entry.id} absente du lot de soumission (association HasMember manquante)",
                    entry.id,
                    "dmp.xds.metadata",
                )
            if is_uuid(entry.id) and self.store.known_id(entry.id):
                outcome.refuse(
                    "XDSRegistryError",
                    f"entryUUID {entry.id} déjà utilisé dans le DMP",
                    entry.id,
                    "dmp.xds.duplicate-id",
                )
        if not submission_set.patient_id:
            outcome.refuse(
                "XDSRepositoryMetadataError", "XDSSubmissionSet.patientId absent", submission_set.id, "dmp.xds.metadata"
            )

    def _check_documents(self, submit: SubmitObjects, received: ReceivedDocuments, outcome: Outcome) -> None:
        ids = {e.id for e in submit.entries}
        for entry in submit.entries:
            if entry.id in received.missing_parts:
                outcome.refuse(
                    "XDSMissingDocument",
                    f"document {entry.id}: la partie MTOM {received.missing_parts[entry.id]!r} est absente",
                    entry.id,
                    "dmp.xds.missing-document",
                )
            elif entry.id in received.undecodable:
                outcome.refuse(
                    "XDSRepositoryMetadataError",
                    f"document {entry.id}: base64 invalide",
                    entry.id,
                    "dmp.xds.document-encoding",
                )
            elif entry.id not in received.by_id:
                outcome.refuse(
                    "XDSMissingDocument",
                    f"aucun xdsb:Document pour la fiche {entry.id}",
                    entry.id,
                    "dmp.xds.missing-document",
                )
        for document_id in received.by_id:
            if document_id not in ids:
                outcome.refuse(
                    "XDSMissingDocumentMetadata",
                    f"xdsb:Document {document_id!r} sans fiche document correspondante",
                    document_id,
                    "dmp.xds.missing-metadata",
                )

    def _check_patient(
        self, set_patient_id: str, entry_patient_ids: list[str], outcome: Outcome
    ) -> PatientState | None:
        for entry_patient_id in entry_patient_ids:
            if entry_patient_id and patient_key(entry_patient_id) != patient_key(set_patient_id):
                outcome.refuse(
                    "XDSPatientIdDoesNotMatch",
                    f"le patientId de la fiche ({entry_patient_id}) diffère de celui du lot ({set_patient_id})",
                    "XDSDocumentEntry.patientId",
                    "dmp.xds.patient-id-mismatch",
                )
        patient = self.store.patient(set_patient_id)
        if patient is None:
            outcome.refuse(
                "XDSUnknownPatientId",
                f"patient inconnu du DMP: {set_patient_id}",
                "XDSSubmissionSet.patientId",
                "dmp.xds.unknown-patient",
            )
            return None
        if patient.dmp_status != "EXISTANT":
            outcome.refuse(
                "XDSRegistryError",
                f"le DMP du patient n'est pas ouvert (statut {patient.dmp_status})",
                "XDSSubmissionSet.patientId",
                "dmp.xds.dmp-status",
            )
        if patient.feed_opposition:
            outcome.refuse(
                "XDSRegistryError",
                "Le patient s'est opposé à l'alimentation de son DMP",
                "XDSSubmissionSet.patientId",
                "dmp.xds.feed-opposition",
            )
        return patient

    def _check_content(self, submit: SubmitObjects, received: ReceivedDocuments, outcome: Outcome) -> None:
        for entry in submit.entries:
            content = received.by_id.get(entry.id)
            if content is None:
                continue
            actual_hash, actual_size = hashlib.sha1(content).hexdigest(), len(content)
            if not entry.hash:
                outcome.findings.append(
                    warning("dmp.xds.hash-absent", f"entry {entry.id} has no hash slot", entry.id, SOURCE)
                )
            elif entry.hash.strip().lower() != actual_hash:
                outcome.refuse(
                    "XDSNonIdenticalHash",
                    f"document {entry.id}: hash {entry.hash!r} déclaré, {actual_hash} calculé sur les octets reçus",
                    entry.id,
                    "dmp.xds.hash",
                )
            if entry.size is None:
                if entry.first("size"):
                    outcome.refuse(
                        "XDSRepositoryMetadataError",
                        f"fiche {entry.id}: size {entry.first('size')!r} n'est pas un entier",
                        entry.id,
                        "dmp.xds.size",
                    )
                else:
                    outcome.findings.append(
                        warning("dmp.xds.size-absent", f"entry {entry.id} has no size slot", entry.id, SOURCE)
                    )
            elif entry.size != actual_size:
                outcome.refuse(
                    "XDSNonIdenticalSize",
                    f"document {entry.id}: size {entry.size} déclarée, {actual_size} octets reçus",
                    entry.id,
                    "dmp.xds.size",
                )
            for stored in self.store.by_unique_id(entry.unique_id):
                if stored.status is AvailabilityStatus.DELETED:
                    continue
                if hashlib.sha1(stored.document).hexdigest() != actual_hash:
                    outcome.refuse(
                        "XDSNonIdenticalHash",
                        f"uniqueId {entry.unique_id} déjà présent dans le DMP avec un contenu différent",
                        entry.id,
                        "dmp.xds.duplicate-unique-id",
                    )
                else:
                    outcome.refuse(
                        "XDSDuplicateUniqueIdInRegistry",
                        f"document {entry.unique_id} déjà présent dans le DMP",
                        entry.id,
                        "dmp.xds.duplicate-unique-id",
                    )
                break

    def _check_replacements(
        self, submit: SubmitObjects, patient: PatientState | None, outcome: Outcome
    ) -> dict[str, StoredEntry]:
        """Entry id (as sent) → the stored entry it replaces (RPLC)."""
        targets: dict[str, StoredEntry] = {}
        ids = {e.id for e in submit.entries}
        for association in submit.associations:
            if association.type != RPLC:
                continue
            if association.source not in ids:
                outcome.refuse(
                    "XDSRepositoryMetadataError",
                    f"association RPLC {association.id}: la source {association.source!r} n'est pas une fiche du lot",
                    association.id,
                    "dmp.xds.rplc",
                )
                continue
            old = self.store.entries.get(association.target)
            if old is None:
                outcome.refuse(
                    "XDSRegistryError",
                    f"document remplacé inconnu du DMP: {association.target}",
                    association.id,
                    "dmp.xds.rplc",
                )
            elif old.status is not AvailabilityStatus.APPROVED:
                outcome.refuse(
                    "XDSRegistryError",
                    f"le document remplacé {association.target} n'est pas à l'état Approved ({old.status.short})",
                    association.id,
                    "dmp.xds.rplc",
                )
            elif patient is not None and old.patient != patient.key:
                outcome.refuse(
                    "XDSPatientIdDoesNotMatch",
                    f"le document remplacé {association.target} appartient à un autre patient",
                    association.id,
                    "dmp.xds.rplc",
                )
            else:
                targets[association.source] = old
        return targets

    def _store(
        self, submit: SubmitObjects, received: ReceivedDocuments, patient: PatientKey, targets: dict[str, StoredEntry]
    ) -> dict[str, str]:
        submission_set = submit.submission_set
        assert submission_set is not None and submit.element is not None
        mapping = assign_ids(submit.element, self.store.known_id)
        now = utcnow()
        set_uuid = mapping.get(submission_set.id, submission_set.id)
        assert submission_set.element is not None
        self.store.submission_sets[set_uuid] = StoredSubmissionSet(
            uuid=set_uuid,
            submission_set=submission_set,
            element=rewritten(submission_set.element, mapping),
            patient=patient,
        )
        stored: dict[str, str] = {}
        for entry in submit.entries:
            assert entry.element is not None
            element = rewritten(entry.element, mapping)
            entry_uuid = mapping.get(entry.id, entry.id)
            lid = element.get("lid", "")
            if not lid or not is_uuid(lid) or lid == entry.id or self.store.current(lid) is not None:
                lid = entry_uuid  # a new document starts its own logical id (versions come from ITI-57)
            element.set("lid", lid)
            self.store.entries[entry_uuid] = StoredEntry(
                entry_uuid=entry_uuid,
                lid=lid,
                version=1,
                status=AvailabilityStatus.APPROVED,
                entry=read_entry(element),
                element=element,
                document=received.by_id[entry.id],
                patient=patient,
                submission_set_uuid=set_uuid,
                repository_unique_id=self.repository_unique_id,
                stored_at=now,
            )
            stored[entry.id] = entry_uuid
        for association in submit.associations:
            assert association.element is not None
            element = rewritten(association.element, mapping)
            association_uuid = mapping.get(association.id, association.id)
            self.store.associations[association_uuid] = StoredAssociation(
                uuid=association_uuid,
                type=association.type,
                source=element.get("sourceObject", ""),
                target=element.get("targetObject", ""),
                element=element,
            )
        for entry_id, old in targets.items():
            old.status = AvailabilityStatus.DEPRECATED
            old.replaced_by = stored[entry_id]
            self.store.entries[stored[entry_id]].replaces = old.entry_uuid
        return stored

    # -- ITI-57 ----------------------------------------------------------------------------------
    def update(self, submit: SubmitObjects) -> Outcome:
        """Apply an Update Document Set: status changes and new metadata versions, all or nothing."""
        outcome = Outcome()
        submission_set = submit.submission_set
        assert submission_set is not None and submit.element is not None
        with self.store.lock:
            status_changes = [a for a in submit.associations if a.type == UPDATE_AVAILABILITY_STATUS]
            if not status_changes and not submit.entries:
                outcome.refuse(
                    "XDSMetadataUpdateError",
                    "ni nouvelle version de fiche ni association UpdateAvailabilityStatus",
                    "rim:RegistryObjectList",
                    "dmp.xds.update",
                )
            patient = self._check_patient(submission_set.patient_id, [], outcome)
            planned: list[tuple[UpdateChange, StoredEntry, AvailabilityStatus | None]] = []
            for association in status_changes:
                planned.extend(
                    self._plan_status(
                        association.target,
                        association.first("OriginalStatus"),
                        association.first("NewStatus"),
                        association.id,
                        patient,
                        outcome,
                    )
                )
            versions = self._plan_versions(submit, patient, outcome)
            if outcome.close().refused:
                return outcome
            for change, stored, new_status in planned:
                assert new_status is not None
                stored.status = new_status
                outcome.changes.append(change)
            mapping = assign_ids(submit.element, self.store.known_id)
            if patient is not None and submission_set.element is not None:
                set_uuid = mapping.get(submission_set.id, submission_set.id)
                self.store.submission_sets[set_uuid] = StoredSubmissionSet(
                    uuid=set_uuid,
                    submission_set=submission_set,
                    element=rewritten(submission_set.element, mapping),
                    patient=patient.key,
                )
            for change, old, entry in versions:
                self._new_version(change, old, entry, mapping, submission_set.id)
                outcome.changes.append(change)
                outcome.stored[entry.id] = change.new_entry_uuid
        return outcome

    def _plan_status(
        self, target: str, original: str, new: str, location: str, patient: PatientState | None, outcome: Outcome
    ) -> list[tuple[UpdateChange, StoredEntry, AvailabilityStatus | None]]:
        stored = self.store.resolve(target)
        new_status = AvailabilityStatus.read(new)
        change = UpdateChange(kind="status", target=target, original_status=original, new_status=new)
        if stored is None:
            outcome.refuse(
                "XDSMetadataUpdateError", f"fiche à mettre à jour inconnue: {target}", location, "dmp.xds.update"
            )
            return []
        change.entry_uuid, change.lid = stored.entry_uuid, stored.lid
        if new_status is None:
            outcome.refuse("XDSMetadataUpdateError", f"NewStatus {new!r} inconnu", location, "dmp.xds.update")
            return []
        if original and AvailabilityStatus.read(original) is not stored.status:
            outcome.refuse(
                "XDSMetadataUpdateError",
                f"OriginalStatus {original!r} ne correspond pas au statut actuel ({stored.status.value})",
                location,
                "dmp.xds.update",
            )
            return []
        if patient is not None and stored.patient != patient.key:
            outcome.refuse(
                "XDSPatientIdDoesNotMatch",
                f"la fiche {target} appartient à un autre patient",
                location,
                "dmp.xds.patient-id-mismatch",
            )
            return []
        return [(change, stored, new_status)]

    def _plan_versions(
        self, submit: SubmitObjects, patient: PatientState | None, outcome: Outcome
    ) -> list[tuple[UpdateChange, StoredEntry, DocumentEntry]]:
        submission_set = submit.submission_set
        assert submission_set is not None
        members = {a.target: a for a in submit.associations if a.type == HAS_MEMBER and a.source == submission_set.id}
        planned: list[tuple[UpdateChange, StoredEntry, DocumentEntry]] = []
        for entry in submit.entries:
            change = UpdateChange(kind="metadata", target=entry.lid or entry.id, entry=entry)
            change.confidentiality_codes = entry.confidentiality_codes
            old = self.store.current(entry.lid) if entry.lid else None
            if old is None or old.status is not AvailabilityStatus.APPROVED:
                outcome.refuse(
                    "XDSMetadataUpdateError",
                    f"nouvelle version de {entry.id}: lid {entry.lid!r} ne désigne aucune fiche Approved du DMP",
                    entry.id,
                    "dmp.xds.update",
                )
                continue
            change.entry_uuid, change.lid = old.entry_uuid, old.lid
            change.original_status = change.new_status = AvailabilityStatus.APPROVED.value
            membership = members.get(entry.id)
            previous = membership.first("PreviousVersion") if membership is not None else ""
            if membership is None:
                outcome.refuse(
                    "XDSMetadataUpdateError", f"fiche {entry.id} absente du lot (HasMember)", entry.id, "dmp.xds.update"
                )
            elif not previous:
                outcome.findings.append(
                    warning(
                        "dmp.xds.previous-version",
                        f"HasMember of {entry.id} has no PreviousVersion slot",
                        entry.id,
                        SOURCE,
                    )
                )
            elif previous.strip() != str(old.version):
                outcome.refuse(
                    "XDSMetadataVersionError",
                    f"PreviousVersion {previous!r} alors que la version actuelle est {old.version}",
                    entry.id,
                    "dmp.xds.update",
                )
            if entry.unique_id and entry.unique_id != old.unique_id:
                outcome.refuse(
                    "XDSMetadataUpdateError",
                    f"uniqueId {entry.unique_id} différent de celui de la fiche ({old.unique_id})",
                    entry.id,
                    "dmp.xds.update",
                )
            if patient is not None and old.patient != patient.key:
                outcome.refuse(
                    "XDSPatientIdDoesNotMatch",
                    f"la fiche {entry.lid} appartient à un autre patient",
                    entry.id,
                    "dmp.xds.patient-id-mismatch",
                )
            planned.append((change, old, entry))
        return planned

    def _new_version(
        self, change: UpdateChange, old: StoredEntry, entry: DocumentEntry, mapping: dict[str, str], set_id: str
    ) -> None:
        assert entry.element is not None
        element = rewritten(entry.element, mapping)
        new_uuid = mapping.get(entry.id, entry.id)
        if new_uuid == old.entry_uuid or self.store.known_id(new_uuid):
            new_uuid = f"urn:uuid:{uuid.uuid4()}"
            element.set("id", new_uuid)
        element.set("lid", old.lid)
        old.status = AvailabilityStatus.DEPRECATED
        old.next_version = new_uuid
        self.store.entries[new_uuid] = StoredEntry(
            entry_uuid=new_uuid,
            lid=old.lid,
            version=old.version + 1,
            status=AvailabilityStatus.APPROVED,
            entry=read_entry(element),
            element=element,
            document=old.document,
            patient=old.patient,
            submission_set_uuid=mapping.get(set_id, set_id),
            repository_unique_id=old.repository_unique_id,
            stored_at=utcnow(),
            replaces=old.replaces,
            previous_version=old.entry_uuid,
        )
        change.new_entry_uuid, change.new_version = new_uuid, old.version + 1


# -- identifiers ---------------------------------------------------------------------------------


def assign_ids(request: etree._Element, taken: Callable[[str], bool]) -> dict[str, str]:
    """Every ``id`` of the request's registry objects → the UUID the registry uses for it.

    A ``urn:uuid:`` id is kept (unless already taken); a symbolic one (``Document01``) gets a new UUID.
    """
    mapping: dict[str, str] = {}
    for element in request.iter(f"{{{RIM}}}*"):
        object_id = element.get("id", "").strip()
        if not object_id or object_id in mapping:
            continue
        mapping[object_id] = object_id if is_uuid(object_id) and not taken(object_id) else f"urn:uuid:{uuid.uuid4()}"
    return mapping


def rewritten(element: etree._Element, mapping: dict[str, str]) -> etree._Element:
    """A deep copy of ``element`` with its ids and references to other objects replaced through ``mapping``."""
    clone = copy.deepcopy(element)
    for node in clone.iter():
        if not isinstance(node.tag, str):
            continue
        for name in ("id", *_REFERENCES):
            value = node.get(name)
            if value is not None and value.strip() in mapping:
                node.set(name, mapping[value.strip()])
    return clone
