"""Data portability: the export a practice takes to its next software (PORT/va1.01, LGC.PORT.01).

The harness seeds the SUT through the adapter, once for the module (the cases only read
what it holds), with a known data set — a qualified identity, a second qualified one, a
provisional one without INS; documents produced at several dates (the SUT's clock under the
harness's control), one received from another producer; appointments — then asks for an
export (``portability`` capability) of one scope (``unitaire``, ``cible``, ``massif``) over
a depth of :data:`DEPTH_YEARS` years, and judges the archive with :mod:`harness.validators.portability`: the layout of
``docs/portability-archive.md`` (ANS's guide is a draft: the folder names are the
harness's rule, renamable with ``--portability-layout``), every seeded document within
the depth present and none before it, the identity and INS an importer needs on each
document, each CDA valid (the CDA validator, with the ANS rules of ``--cda-rules``) and
with its PDF copy, the agenda (iCalendar), the traces (Syslog), the data dictionary and
the integrity report.

The round trip imports the archive into a second, clean reference system — the next
software — and compares what it holds with what was seeded: nothing may be lost.

ANS's proof ``PORT/va1.01.01.01`` is the documentation listing the data, their format and
where each is. The run checks the archive's data dictionary covers every file and attaches,
besides it and the README, a documentation template filled from it; how an administrator runs
the export is the vendor's to write, so the proof stays ``manual`` (the scenario ``passed``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from harness.findings import Finding, Severity, error
from harness.pki import TestPki
from harness.plugin.evidence import ScenarioEvidence
from harness.plugin.fixtures import insi_endpoint_config
from harness.simulators.insi import IdentityBase, InsiSimulator
from harness.sut.base import SutAdapter, SutError, SutTimeout
from harness.sut.model import (
    Capability,
    IdentityStatus,
    PatientRecord,
    PatientTraits,
    PortabilityExport,
    PortabilityRequest,
)
from harness.validators import portability
from harness.validators.cda import CdaValidator
from harness.validators.portability import (
    ExpectedAppointment,
    ExpectedDocument,
    ExpectedExport,
    ExpectedPatient,
    PortabilityLayout,
)
from scenarios.insi_steps import identity_named, qualified_patient
from scenarios.vendor_statements import read_statement, statement_lines

HL7 = "urn:hl7-org:v3"
DEPTH_YEARS = 3
"""The history depth every export asks for (``since`` = today − 3 years)."""
LETTRE_DE_LIAISON, COMPTE_RENDU, PRESCRIPTION = "11490-0", "11488-4", "57833-6"
PROVISIONAL = PatientTraits("PORTABLE", ("CAMILLE",), "F", "1991-11-05", "69123")
PDF_MEDIA = "application/pdf"


@dataclass
class Seeded:
    """What the harness put in the SUT, patient by patient (in the order of :func:`_seed`)."""

    sut: SutAdapter
    now: datetime
    records: list[PatientRecord] = field(default_factory=list)
    patients: list[ExpectedPatient] = field(default_factory=list)

    @property
    def since(self) -> date:
        return _years(self.now, -DEPTH_YEARS).date()


def _years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def _months(moment: datetime, months: int) -> datetime:
    return moment - timedelta(days=round(30.4 * months))


def _received_copy(cda: bytes) -> bytes:
    """A CDA as a correspondent would send it: the SUT's own document under a new id (another producer's)."""
    root = etree.fromstring(cda, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    identifier = root.find(f"{{{HL7}}}id")
    assert identifier is not None, "a produced CDA has an id"
    identifier.set("root", f"2.25.{uuid.uuid4().int}")
    identifier.attrib.pop("extension", None)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _seed(sut: SutAdapter, identities: IdentityBase) -> Seeded:
    """Three patients, their documents over five years, their appointments; the SUT's clock back at now."""
    now = datetime.now(UTC).replace(microsecond=0)
    seeded = Seeded(sut, now)
    first = qualified_patient(sut, identity_named(identities, "ordinary-1"))
    second = qualified_patient(sut, identity_named(identities, "ordinary-2"))
    third = sut.create_patient(PROVISIONAL)
    plan = {
        first.id: [
            (_months(now, 2), LETTRE_DE_LIAISON),
            (_months(now, 20), COMPTE_RENDU),
            (_months(now, 50), PRESCRIPTION),
        ],
        second.id: [(_months(now, 1), COMPTE_RENDU), (_months(now, 26), LETTRE_DE_LIAISON)],
        third.id: [(_months(now, 3), PRESCRIPTION), (_months(now, 44), COMPTE_RENDU)],
    }
    documents: dict[str, list[ExpectedDocument]] = {p: [] for p in plan}
    steps = sorted((moment, patient_id, code) for patient_id, items in plan.items() for moment, code in items)
    received_done = False
    for moment, patient_id, code in steps:
        sut.set_clock(moment)
        produced = sut.produce_document(patient_id, code)
        documents[patient_id].append(ExpectedDocument(produced.document_id, produced.type_code, moment))
        if patient_id == first.id and not received_done and produced.cda is not None and moment > _months(now, 10):
            received_done = True
            stored = sut.import_document(patient_id, _received_copy(produced.cda))
            documents[patient_id].append(ExpectedDocument(stored.document_id, stored.type_code, moment))
    sut.set_clock(now)
    appointments = {
        first.id: [(now + timedelta(days=7), "Consultation de suivi"), (_months(now, 12), "Vaccination")],
        second.id: [(_months(now, 40), "Consultation ancienne")],
        third.id: [(now + timedelta(days=2, hours=3), "Bilan annuel")],
    }
    for patient_id, items in appointments.items():
        for start, summary in items:
            sut.create_appointment(patient_id, start, start + timedelta(minutes=20), summary)
    for record in (first, second, third):
        current = sut.get_patient(record.id)
        seeded.records.append(current)
        seeded.patients.append(
            ExpectedPatient(
                current.traits,
                _shareable_ins(current),
                tuple(documents[record.id]),
                tuple(ExpectedAppointment(start, summary) for start, summary in appointments[record.id]),
            )
        )
    return seeded


def _shareable_ins(record: PatientRecord) -> tuple[str, str] | None:
    """The INS the export must carry: only a qualified one may be shared (référentiel INS)."""
    if record.ins is None or record.status is not IdentityStatus.QUAL:
        return None
    return record.ins.matricule, record.ins.oid


@pytest.fixture(scope="module")
def seeded(harness_sut: SutAdapter, insi_simulator: InsiSimulator) -> Seeded:
    """The data set, seeded once for this module's cases: they only export it (and import it elsewhere)."""
    harness_sut.require(Capability.PORTABILITY)
    if Capability.RESET in harness_sut.describe().capabilities:
        harness_sut.reset()
    insi_simulator.reset()
    return _seed(harness_sut, insi_simulator.base)


def _describe(seeded: Seeded) -> str:
    return "; ".join(
        f"{p.label}: INS {p.ins[0] if p.ins else 'none'}, {len(p.documents)} documents "
        f"({', '.join(f'{d.created:%Y-%m-%d}' for d in p.documents)}), {len(p.appointments)} appointments"
        for p in seeded.patients
    )


def _layout(request: pytest.FixtureRequest) -> PortabilityLayout:
    path = request.config.getoption("segur_portability_layout")
    return PortabilityLayout.from_toml(Path(path)) if path else PortabilityLayout()


def _timeout(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("segur_portability_timeout"))


def _export(
    sut: SutAdapter, evidence: ScenarioEvidence, request: pytest.FixtureRequest, ask: PortabilityRequest
) -> PortabilityExport | None:
    """The SUT's archive, or None with a finding when it gave none in time."""
    timeout = _timeout(request)
    evidence.note(f"export asked: scope {ask.scope}, patients {list(ask.patient_ids)}, since {ask.since or 'ever'}")
    try:
        return sut.export_portability(ask, timeout_s=timeout)
    except SutTimeout as exc:
        evidence.add(error("portability.export.timeout", f"no archive within {timeout:g} s ({exc})", source="scenario"))
        return None


STATEMENT_FIELDS = {
    "launch": "How an administrator launches an export: where in the product, which rights it needs",
    "scope_and_depth": "How the scope (unitaire, ciblé, massif) and the history depth are chosen",
    "delivery": "How the archive is handed over (encrypted link, HDS transfer platform, physical medium), protected",
}
"""What only the vendor can write in the documentation (``--portability-statement``, table ``[portability]``)."""


def _documentation(
    report: portability.PortabilityReport,
    exported: PortabilityExport,
    ask: PortabilityRequest,
    layout: PortabilityLayout,
    statement: dict[str, str],
) -> bytes:
    """The PORT/va1.01.01.01 documentation template: what the archive holds, from its own dictionary, and what
    only the vendor can say."""
    rows = [
        f"| {data} | {kind} | `{where}` | {sum(1 for n in report.members if portability.matches_location(n, where))} |"
        for data, kind, where in report.dictionary
    ]
    lines = [
        "# PORT/va1.01 — data portability: documentation of the export (template)",
        "",
        "## Measured by the conformance run",
        "",
        f"- Export asked: scope {ask.scope}, patients {', '.join(ask.patient_ids) or 'all'}, "
        f"since {ask.since or 'the whole history'}",
        f"- Archive: {exported.file_name}, {len(exported.archive):,} bytes, {len(report.members)} files, "
        f"{len(report.folders)} patient folder(s), {len(report.entries)} document entries, "
        f"{report.events} appointment(s), {report.trace_lines} trace line(s)",
        f"- Layout judged: docs/portability-archive.md of the harness; transverse part `{layout.transverse_folder}/`, "
        f"documentation `{layout.documentation_folder}/`",
        f"- Findings of the run on this archive: {len(report.errors)} error(s)",
        "",
        "## The data made available, their format and where each is (the archive's data dictionary)",
        "",
        "| data | format | location | files in this export |",
        "|---|---|---|---|",
        *(rows or ["| (no readable data dictionary in the archive) | | | |"]),
        "",
        "## Stated by the vendor",
        "",
        *statement_lines(statement, STATEMENT_FIELDS, "--portability-statement"),
        "",
        "The proof PORT/va1.01.01.01 stays manual until the vendor has completed and signed this document.",
    ]
    return "\n".join(lines).encode("utf-8")


def _attach_documentation(
    evidence: ScenarioEvidence,
    request: pytest.FixtureRequest,
    report: portability.PortabilityReport,
    exported: PortabilityExport,
    ask: PortabilityRequest,
    layout: PortabilityLayout,
) -> None:
    """The archive's own documentation and the template of ANS's proof PORT/va1.01.01.01 built from it."""
    for path, media_type, what in (
        (layout.dictionary_path, "text/csv", "the data dictionary of the export (data, format, location)"),
        ("README.TXT", "text/plain", "the README of the export (software, date, scope, depth)"),
    ):
        content = report.members.get(path)
        if content is not None:
            evidence.attach(path.replace("/", "-"), content, media_type, what)
    evidence.attach(
        "PORT-va1.01-documentation.md",
        _documentation(
            report,
            exported,
            ask,
            layout,
            read_statement(request, "segur_portability_statement", "portability", STATEMENT_FIELDS),
        ),
        "text/markdown",
        "the documentation proof PORT/va1.01.01.01, filled from the archive's dictionary (vendor statements to add)",
    )


SCOPES = ["massif", "cible", "unitaire"]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.requirement("PORT/va1.01", scenario="PORT/va1.01.01")
def test_the_export_holds_the_data_within_the_depth(
    seeded: Seeded,
    evidence: ScenarioEvidence,
    request: pytest.FixtureRequest,
    cda_validator: CdaValidator,
    scope: str,
) -> None:
    """Every seeded document and appointment of the scope within the depth, nothing else; each part as documented."""
    sut = seeded.sut
    evidence.note(f"seeded: {_describe(seeded)}")
    chosen = {"massif": [0, 1, 2], "cible": [0, 2], "unitaire": [1]}[scope]
    ids = tuple(seeded.records[i].id for i in chosen) if scope != "massif" else ()
    ask = PortabilityRequest(scope, ids, seeded.since.isoformat())
    exported = _export(sut, evidence, request, ask)
    if exported is None:
        evidence.conclude()
        return
    layout = _layout(request)
    expected = ExpectedExport(
        tuple(seeded.patients[i] for i in chosen),
        tuple(p for i, p in enumerate(seeded.patients) if i not in chosen),
        seeded.since,
    )
    check_cda = portability.cda_check(cda_validator)
    report = portability.check_export(exported.archive, expected, layout=layout, check_cda=check_cda)
    evidence.note(f"CDA judged by {cda_validator.ruleset or 'the harness rules only (no ANS rules configured)'}")
    evidence.add(*[f for f in report.findings if f.severity is not Severity.INFO][:200])
    evidence.attach(
        exported.file_name or "export.zip", exported.archive, "application/zip", f"the {scope} export the SUT produced"
    )
    evidence.attach(
        "portability-check.json",
        json.dumps(
            {"asked": {"scope": scope, "patients": list(ids), "since": ask.since}, **report.inventory()}, indent=2
        ).encode("utf-8"),
        "application/json",
        "what the archive held, patient by patient, and how many findings",
    )
    _attach_documentation(evidence, request, report, exported, ask, layout)
    evidence.conclude()


@pytest.mark.requirement("PORT/va1.01", scenario="PORT/va1.01.01")
def test_the_export_can_be_imported_into_another_system(
    seeded: Seeded,
    evidence: ScenarioEvidence,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    insi_simulator: InsiSimulator,
    pki: TestPki,
) -> None:
    """The whole history imported into a clean reference system: every patient, INS, document and appointment back."""
    from harness.sut.reference import ReferenceSut

    evidence.note(f"seeded: {_describe(seeded)}")
    exported = _export(seeded.sut, evidence, request, PortabilityRequest("massif"))
    if exported is None:
        evidence.conclude()
        return
    evidence.attach(exported.file_name or "export.zip", exported.archive, "application/zip", "the whole-history export")
    importer = ReferenceSut(tmp_path / "next-software", remove_work_dir=True)
    try:
        importer.configure_endpoints(insi_endpoint_config(insi_simulator.url, pki))  # it verifies the INS it receives
        try:
            outcome = importer.import_portability(exported.archive, timeout_s=_timeout(request))
        except SutError as exc:
            evidence.add(
                error(
                    "portability.round-trip.refused",
                    f"the receiving system refused the archive: {exc}",
                    source="scenario",
                )
            )
            evidence.conclude()
            return
        evidence.note(
            f"imported: {len(outcome.patient_ids)} patient(s), {outcome.documents} document(s), "
            f"{outcome.appointments} appointment(s)"
        )
        for message in outcome.refused[:50]:
            evidence.add(
                error(
                    "portability.round-trip.refused",
                    f"the receiving system refused a part: {message}",
                    source="scenario",
                )
            )
        evidence.add(*_compare(importer, seeded))
    finally:
        importer.close()
    evidence.conclude()


def _compare(importer: SutAdapter, seeded: Seeded) -> list[Finding]:
    """What the receiving system holds against what was seeded: a finding per thing lost."""
    findings: list[Finding] = []
    received = importer.list_patients()
    for expected in seeded.patients:
        traits = expected.traits
        match = next(
            (
                r
                for r in received
                if r.traits.birth_name == traits.birth_name
                and r.traits.first_names[:1] == traits.first_names[:1]
                and r.traits.birth_date == traits.birth_date
                and r.traits.sex == traits.sex
            ),
            None,
        )
        if match is None:
            findings.append(
                error("portability.round-trip.patient", f"{expected.label} was not imported", source="scenario")
            )
            continue
        if expected.ins is not None and (match.ins is None or (match.ins.matricule, match.ins.oid) != expected.ins):
            findings.append(
                error(
                    "portability.round-trip.ins",
                    f"{expected.label}: the INS {expected.ins[0]} did not reach the receiving system "
                    f"(it has {match.ins.matricule if match.ins else 'none'})",
                    source="scenario",
                )
            )
        documents = {d.document_id: d for d in importer.list_documents(match.id)}
        for document in expected.documents:
            got = documents.get(document.document_id)
            if got is None:
                findings.append(
                    error(
                        "portability.round-trip.document",
                        f"{expected.label}: document {document.document_id} (type {document.type_code}, "
                        f"{document.created:%Y-%m-%d}) was lost",
                        source="scenario",
                    )
                )
            elif got.type_code != document.type_code:
                findings.append(
                    error(
                        "portability.round-trip.document",
                        f"{expected.label}: document {document.document_id} came back as type {got.type_code}, "
                        f"not {document.type_code}",
                        source="scenario",
                    )
                )
        appointments = {(a.summary, _instant(a.start)) for a in importer.list_appointments(match.id)}
        for appointment in expected.appointments:
            if (appointment.summary, appointment.start) not in appointments:
                findings.append(
                    error(
                        "portability.round-trip.appointment",
                        f"{expected.label}: the appointment {appointment.summary!r} of {appointment.start.isoformat()} "
                        "was lost",
                        source="scenario",
                    )
                )
    return findings


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
