#!/usr/bin/env python3
"""Benchmark of the portability-export check (PORT/va1.01): 1,000 patients × 10 documents.

Builds a synthetic archive in the layout of ``docs/portability-archive.md`` — per patient
a folder with 10 CDA R2 N1 documents (the ANS N1 example with a 23 KB PDF/A-1 in its
body, each under its own id and patient name) and their PDF copies, a METADATA.XML with
20 entries; an agenda of one VEVENT per patient; traces; a data dictionary and the
integrity report — then times :func:`harness.validators.portability.check_export` on it:
the zip read with bounds, every METADATA.XML, every entry (hash, size, identity, the CDA
cross-check), every PDF through the PDF/A-1 checks (``--no-pdf`` skips them), the agenda
parsed with ``icalendar``, the traces, the dictionary, the integrity report (a SHA-256 of
every member), and the comparison with the 10,000 seeded documents. The CDA validator with
ANS's rules is timed apart on ``--cda-sample`` documents (``--cda-rules``), since a run
multiplies its per-document cost by the number of documents.

    python bench/bench_portability.py [--patients 1000] [--documents 10] [--no-pdf]
                                      [--cda-rules ../shared/data/ans/TestContenuCDA-3-0] [--cda-sample 20]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import resource
import sys
import time
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.sut.model import PatientTraits
from harness.validators.portability import (
    ExpectedAppointment,
    ExpectedDocument,
    ExpectedExport,
    ExpectedPatient,
    check_export,
)
from tests.mss_samples import ANS_N1, EXAMPLE_INS
from tests.pdf_samples import conforming_pdfa
from tests.portability_samples import DICTIONARY, PARIS, TRACES, agenda, metadata, with_integrity

EXAMPLE_ID = b"1.3.6.1.4.1.19376.1.2.20.12345.1.1"


def _small_n1(pdf: bytes) -> bytes:
    """The ANS N1 example with a small PDF in its body instead of its 330 KB one."""
    text = ANS_N1.read_bytes()
    return re.sub(
        rb'(<text mediaType="application/pdf" representation="B64">)[^<]+(</text>)',
        lambda m: m.group(1) + base64.b64encode(pdf) + m.group(2),
        text,
    )


def build(patients: int, documents: int) -> tuple[bytes, ExpectedExport]:
    pdf = conforming_pdfa()
    template = _small_n1(pdf)
    buffer = io.BytesIO()
    expected: list[ExpectedPatient] = []
    members: dict[str, bytes] = {
        "INDEX.HTM": b"<html><body>bench</body></html>",
        "README.TXT": b"bench export",
        "TRANSVERSE/TRACES.LOG": TRACES.encode(),
        "DOCUMENTATION/DICTIONNAIRE.CSV": DICTIONARY.encode(),
    }
    events = []
    created = datetime(2021, 4, 1, 13, 47, 45, tzinfo=PARIS)
    for p in range(patients):
        name = f"PAT{p:05d}".encode()
        expected_documents = []
        for d in range(documents):
            document_id = f"1.2.250.1.999.{p}.{d}"
            cda = template.replace(EXAMPLE_ID, document_id.encode()).replace(b"PAT-TROIS", name)
            folder = f"IHE_XDM/P{p:05d}"
            file_stem = f"DOC{d + 1:05d}"
            info = (
                f"PID-3|{EXAMPLE_INS[0]}^^^&{EXAMPLE_INS[1]}&ISO^NH",
                f"PID-5|{name.decode()}^DOMINIQUE^^^^^L",
                "PID-7|19790328",
                "PID-8|F",
            )
            entry_xml = metadata(cda, pdf, source_patient_info=info)
            entry_xml = entry_xml.replace(b"DOC00001.XML", f"{file_stem}.XML".encode()).replace(
                b"DOC00001.PDF", f"{file_stem}.PDF".encode()
            )
            members[f"{folder}/{file_stem}.XML"] = cda
            members[f"{folder}/{file_stem}.PDF"] = pdf
            members.setdefault(f"{folder}/METADATA.XML", b"")
            members[f"{folder}/METADATA.XML"] = _merge(members[f"{folder}/METADATA.XML"], entry_xml, d)
            expected_documents.append(ExpectedDocument(document_id, "11488-4", created))
        start = datetime(2021, 5, 3, 10, 0, tzinfo=PARIS) + timedelta(days=p)
        events.append(ExpectedAppointment(start, f"Consultation {p}"))
        traits = PatientTraits(name.decode(), ("DOMINIQUE",), "F", "1979-03-28")
        expected.append(ExpectedPatient(traits, EXAMPLE_INS, tuple(expected_documents), (events[-1],)))
    members["TRANSVERSE/AGENDA.ICS"] = _agenda(expected)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for member, content in with_integrity(members).items():
            archive.writestr(member, content)
    return buffer.getvalue(), ExpectedExport(tuple(expected), (), date(2020, 1, 1))


def _merge(current: bytes, new: bytes, index: int) -> bytes:
    """One METADATA.XML for the folder: the first submission, then each document's entries added to it."""
    if not current:
        return new
    entries = re.findall(rb"<rim:ExtrinsicObject .*?</rim:ExtrinsicObject>", new, re.S)
    renamed = [e.replace(b'"Document0', f'"D{index}Document0'.encode()) for e in entries]
    renamed = [re.sub(rb'id="(cl|ei)', f'id="d{index}\\1'.encode(), e) for e in renamed]
    renamed = [
        re.sub(rb'(classifiedObject|registryObject)="Document0', rf'\1="D{index}Document0'.encode(), e) for e in renamed
    ]
    marker = b"<rim:RegistryPackage"
    return current.replace(marker, b"".join(renamed) + marker, 1)


def _agenda(patients: list[ExpectedPatient]) -> bytes:
    calendars = [agenda(p.appointments, attendee=f"DOMINIQUE {p.traits.birth_name}") for p in patients]
    events = [re.search(rb"BEGIN:VEVENT.*?END:VEVENT\r\n", c, re.S) for c in calendars]
    head, _, _ = calendars[0].partition(b"BEGIN:VEVENT")
    body = b"".join(m.group(0).replace(b"rdv-1@", f"rdv-{n}@".encode()) for n, m in enumerate(events) if m)
    return head + body + b"END:VCALENDAR\r\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--no-pdf", action="store_true", help="skip the PDF/A-1 checks of the PDF copies")
    parser.add_argument("--cda-rules", default="", help="TestContenuCDA folder: time the CDA validator apart")
    parser.add_argument("--cda-sample", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    archive, expected = build(args.patients, args.documents)
    built_s = time.perf_counter() - started
    print(
        f"archive: {len(archive) / 1e6:.0f} MB zip, {args.patients} patients × {args.documents} documents "
        f"(+ PDF copies), built in {built_s:.0f} s; sha256 {hashlib.sha256(archive).hexdigest()[:12]}"
    )
    started = time.perf_counter()
    report = check_export(archive, expected, check_pdf=not args.no_pdf)
    check_s = time.perf_counter() - started
    errors = sorted({f.rule for f in report.errors})
    print(
        f"check_export{' (no PDF/A checks)' if args.no_pdf else ''}: {check_s:.1f} s "
        f"({check_s / (args.patients * args.documents) * 1000:.2f} ms per document); "
        f"{len(report.members)} members, {len(report.entries)} entries; error rules {errors}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (the archive and its members are held in memory)")
    if args.cda_rules:
        from harness.validators.cda import CdaValidator, RuleSet

        validator = CdaValidator(RuleSet.open(args.cda_rules))
        sample = [c for n, c in report.members.items() if n.endswith(".XML") and "/DOC" in n][: args.cda_sample]
        validator.validate(sample[0], "warm-up")
        started = time.perf_counter()
        for number, content in enumerate(sample):
            validator.validate(content, f"doc-{number}")
        per_document = (time.perf_counter() - started) / len(sample)
        total = per_document * args.patients * args.documents
        print(
            f"CDA validator (ANS rules, warm): {per_document * 1000:.0f} ms per document over {len(sample)}; "
            f"{total:.0f} s for all {args.patients * args.documents}"
        )


if __name__ == "__main__":
    main()
