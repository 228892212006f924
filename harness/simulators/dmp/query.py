"""The DMP's consultation side: stored queries (ITI-18, TD3.1) and document retrieval (ITI-43, TD3.2).

A practice searches a patient's DMP (FindDocuments by patientId and status, with the
usual code and time filters; FindSubmissionSets; GetDocuments, GetAssociations,
GetDocumentsAndAssociations by UUID or uniqueId), then retrieves the documents it
chose. Answers are built from the entries as stored (ids resolved, current status and
version, ``repositoryUniqueId`` and computed ``hash``/``size`` added when the source left
them out), so what a client reads back is what the registry holds.

Access follows the patient's DMP state (inferred, no public DMP text): consultation is
refused when the DMP is not open, when the professional is not authorised
(``authorization`` other than ``VALIDE``) or when the patient opposed consultation.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field

from lxml import etree

from harness.findings import Finding, error
from harness.simulators.dmp.ebxml import (
    FIND_DOCUMENTS,
    FIND_SUBMISSION_SETS,
    GET_ASSOCIATIONS,
    GET_DOCUMENTS_AND_ASSOCIATIONS,
    QUERY,
    RIM,
    STORED_QUERIES,
    XDSB,
    AvailabilityStatus,
    Code,
    ResponseStatus,
    patient_key,
    read_slots,
)
from harness.simulators.dmp.records import RegistryError
from harness.simulators.dmp.store import DmpStore, StoredEntry, StoredSubmissionSet

SOURCE = "dmp-simulator"
_TOKEN = re.compile(r"'((?:[^']|'')*)'|([^,()\s']+)")
_CODE_FILTERS = {
    "$XDSDocumentEntryClassCode": "class_code",
    "$XDSDocumentEntryTypeCode": "type_code",
    "$XDSDocumentEntryPracticeSettingCode": "practice_setting_code",
    "$XDSDocumentEntryHealthcareFacilityTypeCode": "healthcare_facility_type_code",
    "$XDSDocumentEntryFormatCode": "format_code",
}
_TIME_FILTERS = {
    "$XDSDocumentEntryCreationTime": "creation_time",
    "$XDSDocumentEntryServiceStartTime": "service_start_time",
    "$XDSDocumentEntryServiceStopTime": "service_stop_time",
}


class QueryError(Exception):
    """A query that cannot be run: ``code`` is the registry error code to answer."""

    def __init__(self, code: str, message: str, location: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.location = location


@dataclass(slots=True, kw_only=True)
class StoredQuery:
    """A parsed ``query:AdhocQueryRequest``.

    Attributes:
        id: the stored query UUID.
        name: its IHE name (``FindDocuments``...).
        return_type: ``LeafClass`` or ``ObjectRef``.
        parameters: each ``$...`` slot with its values as sent.
        values: each parameter's values unquoted, lists flattened.
    """

    id: str
    name: str
    return_type: str
    parameters: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)

    def one(self, name: str) -> str:
        found = self.values.get(name, [])
        return found[0] if found else ""


@dataclass(slots=True)
class Answer:
    """What a query or a retrieval gives: registry status, errors, objects, and the patients it touched."""

    status: ResponseStatus = ResponseStatus.SUCCESS
    errors: list[RegistryError] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    objects: list[etree._Element] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    documents: list[StoredEntry] = field(default_factory=list)

    def refuse(self, code: str, context: str, location: str, rule: str) -> Answer:
        self.errors.append(RegistryError(code, context, location=location))
        self.findings.append(error(rule, f"{code}: {context}", location, SOURCE))
        self.status = ResponseStatus.FAILURE
        return self


def parse_values(raw: list[str]) -> list[str]:
    """``'a'``, ``('a','b')``, ``20200101`` → plain values (doubled quotes undone)."""
    values: list[str] = []
    for text in raw:
        for quoted, bare in _TOKEN.findall(text):
            values.append(quoted.replace("''", "'") if quoted or not bare else bare)
    return values


def parse_adhoc(request: etree._Element) -> StoredQuery:
    """Read a ``query:AdhocQueryRequest``.

    Raises:
        QueryError: no ``rim:AdhocQuery``, or an id that is not one of the five stored queries served.
    """
    query = request.find(f"{{{RIM}}}AdhocQuery")
    if query is None:
        raise QueryError("XDSRegistryError", "AdhocQueryRequest sans rim:AdhocQuery", "query:AdhocQueryRequest")
    query_id = query.get("id", "").strip()
    name = STORED_QUERIES.get(query_id)
    if name is None:
        raise QueryError(
            "XDSUnknownStoredQuery", f"requête stockée inconnue ou non servie: {query_id!r}", "rim:AdhocQuery/@id"
        )
    response_option = request.find(f"{{{QUERY}}}ResponseOption")
    return_type = response_option.get("returnType", "ObjectRef") if response_option is not None else "ObjectRef"
    parameters = read_slots(query)
    return StoredQuery(
        id=query_id,
        name=name,
        return_type=return_type,
        parameters=parameters,
        values={key: parse_values(raw) for key, raw in parameters.items()},
    )


class Consultation:
    """ITI-18 and ITI-43 over a :class:`DmpStore`."""

    def __init__(self, store: DmpStore, repository_unique_id: str) -> None:
        self.store = store
        self.repository_unique_id = repository_unique_id

    # -- ITI-18 ----------------------------------------------------------------------------------
    def query(self, query: StoredQuery) -> Answer:
        answer = Answer()
        leaf = query.return_type == "LeafClass"
        if query.return_type not in ("LeafClass", "ObjectRef"):
            return answer.refuse(
                "XDSRegistryError",
                f"returnType {query.return_type!r} inconnu",
                "query:ResponseOption",
                "dmp.iti18.return-type",
            )
        with self.store.lock:
            if query.id == FIND_DOCUMENTS:
                self._find_documents(query, answer, leaf)
            elif query.id == FIND_SUBMISSION_SETS:
                self._find_submission_sets(query, answer, leaf)
            elif query.id == GET_ASSOCIATIONS:
                self._get_associations(query.values.get("$uuid", []), answer, leaf)
            else:
                self._get_documents(query, answer, leaf, with_associations=query.id == GET_DOCUMENTS_AND_ASSOCIATIONS)
        if answer.status is ResponseStatus.FAILURE:
            answer.objects, answer.returned = [], []
        return answer

    def _find_documents(self, query: StoredQuery, answer: Answer, leaf: bool) -> None:
        patient_id = self._required(query, "$XDSDocumentEntryPatientId", answer)
        statuses = self._statuses(query, "$XDSDocumentEntryStatus", answer)
        if not patient_id or statuses is None or not self._access(patient_id, answer):
            return
        key = patient_key(patient_id)
        assert key is not None
        answer.patients.append(patient_id)
        for stored in self.store.for_patient(key):
            if stored.status in statuses and _matches(stored, query):
                answer.returned.append(stored.entry_uuid)
                answer.objects.append(self.entry_element(stored) if leaf else _object_ref(stored.entry_uuid))

    def _find_submission_sets(self, query: StoredQuery, answer: Answer, leaf: bool) -> None:
        patient_id = self._required(query, "$XDSSubmissionSetPatientId", answer)
        statuses = self._statuses(query, "$XDSSubmissionSetStatus", answer)
        if not patient_id or statuses is None or not self._access(patient_id, answer):
            return
        answer.patients.append(patient_id)
        for package in self.store.submission_sets.values():
            if package.patient == patient_key(patient_id) and package.status in statuses:
                answer.returned.append(package.uuid)
                answer.objects.append(_package_element(package) if leaf else _object_ref(package.uuid))

    def _get_documents(self, query: StoredQuery, answer: Answer, leaf: bool, *, with_associations: bool) -> None:
        uuids = query.values.get("$XDSDocumentEntryEntryUUID", [])
        unique_ids = query.values.get("$XDSDocumentEntryUniqueId", [])
        if with_associations and not uuids:
            uuids = query.values.get("$uuid", [])
        if bool(uuids) == bool(unique_ids):
            answer.refuse(
                "XDSStoredQueryParamNumber",
                "$XDSDocumentEntryEntryUUID ou $XDSDocumentEntryUniqueId attendu (l'un des deux)",
                "rim:AdhocQuery",
                "dmp.iti18.parameters",
            )
            return
        found = [self.store.entries[u] for u in uuids if u in self.store.entries]
        for unique_id in unique_ids:
            found.extend(self.store.by_unique_id(unique_id))
        for patient_id in sorted({e.patient_id for e in found}):
            if not self._access(patient_id, answer):
                return
            answer.patients.append(patient_id)
        for stored in found:
            answer.returned.append(stored.entry_uuid)
            answer.objects.append(self.entry_element(stored) if leaf else _object_ref(stored.entry_uuid))
        if with_associations:
            self._get_associations([e.entry_uuid for e in found], answer, leaf, check_access=False)

    def _get_associations(self, uuids: list[str], answer: Answer, leaf: bool, *, check_access: bool = True) -> None:
        if not uuids:
            answer.refuse(
                "XDSStoredQueryParamNumber", "paramètre $uuid attendu", "rim:AdhocQuery", "dmp.iti18.parameters"
            )
            return
        wanted = set(uuids)
        found = [a for a in self.store.associations.values() if a.source in wanted or a.target in wanted]
        if check_access:
            patients = {self.store.entries[u].patient_id for u in wanted if u in self.store.entries}
            for patient_id in sorted(patients):
                if not self._access(patient_id, answer):
                    return
                answer.patients.append(patient_id)
        for association in found:
            answer.returned.append(association.uuid)
            if leaf:
                element = copy.deepcopy(association.element)
                element.set("status", association.status.value)
                answer.objects.append(element)
            else:
                answer.objects.append(_object_ref(association.uuid))

    def _required(self, query: StoredQuery, name: str, answer: Answer) -> str:
        value = query.one(name)
        if not value:
            answer.refuse(
                "XDSStoredQueryParamNumber", f"paramètre obligatoire {name} absent", name, "dmp.iti18.parameters"
            )
        return value

    def _statuses(self, query: StoredQuery, name: str, answer: Answer) -> set[AvailabilityStatus] | None:
        values = query.values.get(name, [])
        if not values:
            answer.refuse(
                "XDSStoredQueryParamNumber", f"paramètre obligatoire {name} absent", name, "dmp.iti18.parameters"
            )
            return None
        statuses = {s for s in (AvailabilityStatus.read(v) for v in values) if s is not None}
        return statuses

    def _access(self, patient_id: str, answer: Answer) -> bool:
        patient = self.store.patient(patient_id)
        if patient is None:
            answer.refuse(
                "XDSUnknownPatientId", f"patient inconnu du DMP: {patient_id}", "patientId", "dmp.xds.unknown-patient"
            )
            return False
        if patient.dmp_status != "EXISTANT":
            answer.refuse(
                "XDSRegistryError",
                f"le DMP du patient n'est pas ouvert (statut {patient.dmp_status})",
                "patientId",
                "dmp.xds.dmp-status",
            )
            return False
        if patient.authorization != "VALIDE":
            answer.refuse(
                "XDSRegistryError",
                f"accès au DMP refusé: autorisation {patient.authorization}",
                "patientId",
                "dmp.xds.authorization",
            )
            return False
        if patient.consultation_opposition:
            answer.refuse(
                "XDSRegistryError",
                "Le patient s'est opposé à la consultation de son DMP",
                "patientId",
                "dmp.xds.consultation-opposition",
            )
            return False
        return True

    def entry_element(self, stored: StoredEntry) -> etree._Element:
        """The ``rim:ExtrinsicObject`` answered for ``stored``: current status, lid, version, repository, hash, size."""
        element = copy.deepcopy(stored.element)
        element.set("id", stored.entry_uuid)
        element.set("lid", stored.lid)
        element.set("status", stored.status.value)
        slots = read_slots(element)
        added = {
            "repositoryUniqueId": stored.repository_unique_id,
            "hash": hashlib.sha1(stored.document).hexdigest(),
            "size": str(len(stored.document)),
        }
        last_slot = None
        for child in element:
            if isinstance(child.tag, str) and child.tag == f"{{{RIM}}}Slot":
                last_slot = child
        for name, value in added.items():
            if name in slots:
                continue
            slot = etree.Element(f"{{{RIM}}}Slot", name=name)
            etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
            if last_slot is None:
                element.insert(0, slot)
            else:
                last_slot.addnext(slot)
            last_slot = slot
        _set_version(element, stored.version)
        return element

    # -- ITI-43 ----------------------------------------------------------------------------------
    def retrieve(self, requests: list[tuple[str, str]]) -> Answer:
        """Find the documents asked for (``(repositoryUniqueId, documentUniqueId)`` pairs)."""
        answer = Answer()
        with self.store.lock:
            for repository, unique_id in requests:
                if repository != self.repository_unique_id:
                    answer.errors.append(
                        RegistryError("XDSUnknownRepositoryId", f"dépôt inconnu: {repository!r}", location=unique_id)
                    )
                    continue
                candidates = [
                    e for e in self.store.by_unique_id(unique_id) if e.status is not AvailabilityStatus.DELETED
                ]
                if not candidates:
                    answer.errors.append(
                        RegistryError(
                            "XDSDocumentUniqueIdError", f"document inconnu du DMP: {unique_id!r}", location=unique_id
                        )
                    )
                    continue
                stored = max(candidates, key=lambda e: e.version)
                if stored.patient_id not in answer.patients:
                    if not self._access(stored.patient_id, answer):
                        answer.documents, answer.returned = [], []
                        return answer
                    answer.patients.append(stored.patient_id)
                answer.documents.append(stored)
                answer.returned.append(unique_id)
        for problem in answer.errors:
            answer.findings.append(
                error("dmp.iti43.unknown-document", f"{problem.code}: {problem.context}", problem.location, SOURCE)
            )
        if answer.errors:
            answer.status = ResponseStatus.PARTIAL_SUCCESS if answer.documents else ResponseStatus.FAILURE
        return answer


def parse_retrieve(request: etree._Element) -> list[tuple[str, str]]:
    """The ``(RepositoryUniqueId, DocumentUniqueId)`` pairs of a ``xdsb:RetrieveDocumentSetRequest``."""
    pairs = []
    for item in request.iterfind(f"{{{XDSB}}}DocumentRequest"):
        pairs.append(
            (
                (item.findtext(f"{{{XDSB}}}RepositoryUniqueId") or "").strip(),
                (item.findtext(f"{{{XDSB}}}DocumentUniqueId") or "").strip(),
            )
        )
    return pairs


# -- matching ------------------------------------------------------------------------------------


def _matches(stored: StoredEntry, query: StoredQuery) -> bool:
    entry = stored.entry
    for name, attribute in _CODE_FILTERS.items():
        wanted = query.values.get(name)
        if wanted and not _code_in(getattr(entry, attribute), wanted):
            return False
    for name in ("$XDSDocumentEntryConfidentialityCode", "$XDSDocumentEntryEventCodeList"):
        wanted = query.values.get(name)
        codes = entry.confidentiality_codes if "Confidentiality" in name else entry.event_codes
        if wanted and not any(_code_in(code, wanted) for code in codes):
            return False
    for prefix, attribute in _TIME_FILTERS.items():
        value = getattr(entry, attribute)
        low, high = query.one(prefix + "From"), query.one(prefix + "To")
        if (low or high) and not value:
            return False
        if low and _pad(value) < _pad(low):
            return False
        if high and _pad(value) >= _pad(high):
            return False
    author = query.one("$XDSDocumentEntryAuthorPerson")
    if author:
        pattern = re.compile("^" + re.escape(author).replace("%", ".*").replace("_", ".") + "$")
        if not any(pattern.match(a.person) for a in entry.entry_authors):
            return False
    types = query.values.get("$XDSDocumentEntryType")
    return not (types and entry.object_type not in types)


def _code_in(code: Code | None, wanted: list[str]) -> bool:
    if code is None:
        return False
    for item in wanted:
        value, _, scheme = item.partition("^^")
        if value == code.code and (not scheme or scheme == code.scheme):
            return True
    return False


def _pad(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())[:14]
    return digits.ljust(14, "0")


def _object_ref(object_id: str) -> etree._Element:
    return etree.Element(f"{{{RIM}}}ObjectRef", id=object_id)


def _package_element(package: StoredSubmissionSet) -> etree._Element:
    element = copy.deepcopy(package.element)
    element.set("id", package.uuid)
    element.set("status", package.status.value)
    return element


def _set_version(element: etree._Element, version: int) -> None:
    info = element.find(f"{{{RIM}}}VersionInfo")
    if info is None:
        info = etree.Element(f"{{{RIM}}}VersionInfo")
        anchor = None
        for child in element:
            if isinstance(child.tag, str) and etree.QName(child).localname in ("Slot", "Name", "Description"):
                anchor = child
        if anchor is None:
            element.insert(0, info)
        else:
            anchor.addnext(info)
    info.set("versionName", str(version))
