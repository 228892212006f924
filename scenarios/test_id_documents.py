"""Copies of patients' identity documents: encrypted at rest, deleted five years after the last activity (INS/va1.42).

Applies under the profile "Stockage des copies de titres d'identité". The harness stores a
synthetic identity document carrying marker strings through the adapter, then reads the
SUT's storage as bytes on disk (``raw_storage``) and judges it with
:mod:`harness.validators.storage`: no plaintext and no marker anywhere, the added bytes
look like ciphertext, two stores of the same document differ, no key beside the data.
Retention is judged with the SUT's clock under the harness's control: kept at the last
activity + 5 years − 1 day, gone (from the list and from the raw bytes) at + 5 years + 1 day;
an activity in between restarts the period.

**Last activity**, as the harness drives it: the patient's creation and the copy's storage
at T0, then a recorded ``consultation`` (``record_activity``); ``--id-document-activity``
picks another kind the SUT knows (``document``, ``identity``). ANS's proof
``INS/va1.42.01.01`` is the vendor's documentation: it stays ``manual``, these runs support it.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from reportlab.lib.pagesizes import A6
from reportlab.pdfgen import canvas

from harness.plugin.evidence import ScenarioEvidence
from harness.sut.base import SutAdapter
from harness.sut.model import PatientTraits, RawStorageItem
from harness.validators import storage
from harness.validators.storage import StoredItem
from scenarios.vendor_statements import read_statement, statement_lines

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
"""When the copy is stored (a fixed date, so the 5-year boundaries are exact)."""
TRAITS = PatientTraits("COPIETITRE", ("ALICE",), "F", "1984-06-21", "75056")


def _years(moment: datetime, years: int) -> datetime:
    """``moment`` plus whole calendar years (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def _id_document(marker: str) -> bytes:
    """A synthetic identity-document scan: a one-page PDF whose text carries ``marker``."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A6, pageCompression=0)  # the markers stay readable in the bytes
    page.drawString(20, 380, "REPUBLIQUE FRANCAISE - SPECIMEN")
    page.drawString(20, 360, "CARTE NATIONALE D'IDENTITE")
    page.drawString(20, 340, f"NOM: {TRAITS.birth_name}  PRENOM: {TRAITS.first_names[0]}")
    page.drawString(20, 320, marker)
    page.showPage()
    page.save()
    return buffer.getvalue()


def _items(raw: list[RawStorageItem]) -> list[StoredItem]:
    return [StoredItem(item.name, item.content) for item in raw]


STATEMENT_FIELDS = {
    "algorithm": "Encryption algorithm and mode",
    "key_size": "Key size (bits)",
    "key_management": "Where the key is kept, who can reach it, how it is rotated",
    "deletion_job": "The deletion job: when it runs, what it removes (files, rows, backups)",
}


def _statement(request: pytest.FixtureRequest) -> dict[str, str]:
    """The vendor's declarative statements (``--id-document-statement``, table ``[id_documents]``), if given."""
    return read_statement(request, "segur_id_document_statement", "id_documents", STATEMENT_FIELDS)


def _documentation(measured: list[tuple[str, str]], statement: dict[str, str]) -> bytes:
    """The INS/va1.42.01.01 documentation template: facts measured by this run, the vendor's statements."""
    lines = [
        "# INS/va1.42 — storage of identity-document copies (documentation template)",
        "",
        "## Measured by the conformance run",
        "",
        *[f"- {label}: {value}" for label, value in measured],
        "",
        "## Stated by the vendor",
        "",
        *statement_lines(statement, STATEMENT_FIELDS, "--id-document-statement"),
        "",
        "The proof INS/va1.42.01.01 stays manual until the vendor has checked and signed this document.",
    ]
    return "\n".join(lines).encode("utf-8")


def _activity(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("segur_id_document_activity") or "consultation")


@pytest.mark.requirement("INS/va1.42", scenario="INS/va1.42.01", manual_proofs=("INS/va1.42.01.01",))
def test_copies_are_stored_encrypted(
    sut: SutAdapter, evidence: ScenarioEvidence, request: pytest.FixtureRequest
) -> None:
    """No plaintext or marker in the raw storage, ciphertext-looking bytes, a fresh nonce per store, no key beside."""
    sut.set_clock(T0)
    patient = sut.create_patient(TRAITS)
    marker = f"MARQUEUR-TITRE-{uuid.uuid4().hex}"
    document = _id_document(marker)
    before = _items(sut.raw_storage())
    first = sut.store_id_document(patient.id, document, "application/pdf")
    middle = _items(sut.raw_storage())
    second = sut.store_id_document(patient.id, document, "application/pdf")
    after = _items(sut.raw_storage())
    evidence.expect(
        sut.read_id_document(patient.id, first) == document,
        "storage.read-back",
        "the SUT must give back the copy it stored, byte for byte",
    )
    scan_first = storage.scan_store(before, middle, document, [marker.encode()])
    scan_second = storage.scan_store(middle, after, document, [marker.encode()])
    evidence.add(*scan_first.findings, *[f for f in scan_second.findings if f.rule != "storage.plaintext"])
    evidence.add(*storage.same_ciphertext(scan_first.added, scan_second.added))
    evidence.attach(
        "storage-scan.json",
        json.dumps(
            {
                "copies": [first, second],
                "items": [{"name": i.name, "bytes": len(i.content)} for i in after],
                "added": {
                    name: {"bytes": len(data), "entropy": round(storage.entropy(data), 3)}
                    for name, data in {**scan_first.added, **scan_second.added}.items()
                },
            },
            indent=2,
        ).encode("utf-8"),
        "application/json",
        "what the raw storage held after two stores of the same synthetic document (sizes, entropy; no content)",
    )
    new_files = {n: d for n, d in scan_first.added.items() if n not in {i.name for i in before}}
    measured = [
        ("Copy stored in", ", ".join(sorted(new_files)) or "an existing file (database)"),
        ("Bytes stored for a document of", f"{len(document)} bytes: {sorted(len(d) for d in new_files.values())}"),
        ("Entropy of the stored bytes (bits/byte)", ", ".join(f"{storage.entropy(d):.3f}" for d in new_files.values())),
        (
            "Plaintext or markers found in the storage",
            "yes" if scan_first.findings and any(f.rule == "storage.plaintext" for f in scan_first.findings) else "no",
        ),
        (
            "Two stores of the same document identical",
            "yes" if storage.same_ciphertext(scan_first.added, scan_second.added) else "no",
        ),
        ("Key material found beside the data", "yes" if storage.scan_key_material(after) else "no"),
    ]
    evidence.attach(
        "INS-va1.42-documentation.md",
        _documentation(measured, _statement(request)),
        "text/markdown",
        "the documentation proof INS/va1.42.01.01, filled with what this run measured (vendor statements to add)",
    )
    evidence.conclude()


@pytest.mark.parametrize("case", ["boundary", "activity-restarts"])
@pytest.mark.requirement("INS/va1.42", scenario="INS/va1.42.01", manual_proofs=("INS/va1.42.01.01",))
def test_copies_are_deleted_five_years_after_the_last_activity(
    sut: SutAdapter, evidence: ScenarioEvidence, request: pytest.FixtureRequest, case: str
) -> None:
    """Kept at last activity + 5 y − 1 d, deleted (list and bytes) at + 5 y + 1 d; an activity restarts the period."""
    sut.set_clock(T0)
    patient = sut.create_patient(TRAITS)
    document = _id_document(f"MARQUEUR-TITRE-{uuid.uuid4().hex}")
    before = _items(sut.raw_storage())
    copy = sut.store_id_document(patient.id, document, "application/pdf")
    known = {item.name for item in before}
    stored = {n: d for n, d in storage.added_bytes(before, _items(sut.raw_storage())).items() if n not in known}
    if not stored:
        evidence.note("the copy went into an existing file (a database): its bytes cannot be told apart after deletion")
    last_activity = T0
    if case == "activity-restarts":
        last_activity = _years(T0, 3)
        sut.set_clock(last_activity)
        sut.record_activity(patient.id, _activity(request))
        _run_at(sut, evidence, _years(T0, 5) + timedelta(days=1))
        evidence.expect(
            _kept(sut, patient.id, copy),
            "storage.retention.deleted-early",
            f"an activity at {last_activity.date()} restarts the period; the copy was deleted at "
            f"{(_years(T0, 5) + timedelta(days=1)).date()}, 5 years after its creation",
        )
    _run_at(sut, evidence, _years(last_activity, 5) - timedelta(days=1))
    evidence.expect(
        _kept(sut, patient.id, copy),
        "storage.retention.deleted-early",
        f"the copy must be kept until 5 years after the last activity ({last_activity.date()})",
    )
    deadline = _years(last_activity, 5) + timedelta(days=1)
    deleted = _run_at(sut, evidence, deadline)
    evidence.expect(
        not _kept(sut, patient.id, copy),
        "storage.retention.kept",
        f"at {deadline.date()}, 5 years and a day after the last activity, the copy must be deleted; "
        f"the job deleted {deleted or 'nothing'}",
    )
    left = storage.still_present(_items(sut.raw_storage()), stored)
    evidence.expect(
        not left,
        "storage.retention.bytes-left",
        f"a deleted copy must leave no bytes in the storage; its ciphertext is still in {', '.join(left)}",
    )
    evidence.conclude()


def _run_at(sut: SutAdapter, evidence: ScenarioEvidence, moment: datetime) -> list[str]:
    sut.set_clock(moment)
    deleted = sut.run_maintenance()
    evidence.note(f"retention job at {moment.date()}: deleted {deleted}")
    return deleted


def _kept(sut: SutAdapter, patient_id: str, copy: str) -> bool:
    return any(d.document_id == copy for d in sut.list_id_documents(patient_id))
