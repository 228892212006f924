"""PDF/A features, the INS DataMatrix and the printed INS, on PDFs built by tests/pdf_samples.py."""

from __future__ import annotations

import io
import random

import pikepdf
import pytest
from PIL import ImageOps
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from harness.findings import Finding, Severity
from harness.validators.pdf import (
    check_ins_datamatrix,
    check_ins_printed,
    check_pdfa,
    pdf_text,
    read_datamatrix,
)
from tests import pdf_samples as samples

MATRICULE = samples.TEST_MATRICULE
OID = samples.TEST_INS_OID


def _rules(findings: list[Finding], severity: Severity = Severity.ERROR) -> set[str]:
    return {f.rule for f in findings if f.severity is severity}


@pytest.fixture(scope="module")
def conforming() -> bytes:
    return samples.conforming_pdfa(datamatrix=samples.ins_datamatrix_text())


# --------------------------------------------------------------------------------------
# PDF/A
# --------------------------------------------------------------------------------------


def test_conforming_pdfa_1b_has_no_finding(conforming: bytes) -> None:
    assert check_pdfa(conforming) == []


def test_conformance_level_a_is_accepted() -> None:
    assert check_pdfa(samples.add_pdfa(samples.reportlab_pdf(), conformance="A")) == []


def test_plain_reportlab_pdf() -> None:
    findings = check_pdfa(samples.plain_pdf())
    assert _rules(findings) == {"pdf.pdfa.identification", "pdf.output-intent", "pdf.font-not-embedded"}
    font = next(f for f in findings if f.rule == "pdf.font-not-embedded")
    assert "Helvetica" in font.message


def test_wrong_part_and_conformance() -> None:
    pdf = samples.add_pdfa(samples.reportlab_pdf(), part=2, conformance="U")
    assert _rules(check_pdfa(pdf, part=1)) == {"pdf.pdfa.identification"}
    assert check_pdfa(pdf, part=2) == []


def test_unknown_part_is_a_programming_error(conforming: bytes) -> None:
    with pytest.raises(ValueError):
        check_pdfa(conforming, part=4)


def test_missing_output_intent() -> None:
    pdf = samples.add_pdfa(samples.reportlab_pdf(), output_intent=False)
    assert _rules(check_pdfa(pdf)) == {"pdf.output-intent"}


def test_output_intent_without_icc_profile(conforming: bytes) -> None:
    with pikepdf.open(io.BytesIO(conforming)) as pdf:
        pdf.Root.OutputIntents[0].DestOutputProfile = pdf.make_stream(b"not an icc profile")
        out = io.BytesIO()
        pdf.save(out)
    assert _rules(check_pdfa(out.getvalue())) == {"pdf.output-intent"}


def test_smask_image_is_transparency_for_pdfa_1_only() -> None:
    pdf = samples.smask_pdf()
    findings = check_pdfa(pdf, source_label="nonXMLBody")
    assert _rules(findings) == {"pdf.transparency"}
    assert findings[0].location.startswith("nonXMLBody: /Root/Pages/Kids[0]/Resources/XObject/")
    assert "SMask" in findings[0].location
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        with opened.open_metadata() as meta:
            meta["pdfaid:part"] = "2"
        out = io.BytesIO()
        opened.save(out)
    assert check_pdfa(out.getvalue(), part=2) == []


def test_constant_alpha_is_transparency(conforming: bytes) -> None:
    assert _rules(check_pdfa(samples.with_ca(conforming, 0.5))) == {"pdf.transparency"}
    assert check_pdfa(samples.with_ca(conforming, 1.0)) == []


def test_javascript(conforming: bytes) -> None:
    findings = check_pdfa(samples.with_javascript(conforming))
    assert _rules(findings) == {"pdf.javascript"}
    assert findings[0].location == "/Root/OpenAction"


def test_embedded_files(conforming: bytes) -> None:
    pdf = samples.with_embedded_file(conforming)
    assert _rules(check_pdfa(pdf)) == {"pdf.embedded-files"}
    findings = [f for f in check_pdfa(pdf, part=2) if f.rule == "pdf.embedded-files"]
    assert [f.severity for f in findings] == [Severity.WARNING]


def test_lzw(conforming: bytes) -> None:
    assert _rules(check_pdfa(samples.with_lzw_stream(conforming))) == {"pdf.lzw"}


def test_trailer_id_missing(conforming: bytes) -> None:
    # qpdf always writes an /ID, so blank it out of the trailer of an uncompressed (QDF) copy.
    with pikepdf.open(io.BytesIO(conforming)) as pdf:
        out = io.BytesIO()
        pdf.save(out, qdf=True, static_id=True)
    raw = out.getvalue()
    start = raw.rindex(b"/ID [")
    end = raw.index(b"]", start) + 1
    stripped = raw[:start] + b" " * (end - start) + raw[end:]
    assert _rules(check_pdfa(stripped)) == {"pdf.trailer-id"}


def test_version_above_1_4_is_a_warning_for_pdfa_1(conforming: bytes) -> None:
    with pikepdf.open(io.BytesIO(conforming)) as pdf:
        out = io.BytesIO()
        pdf.save(out, force_version="1.7")
    findings = check_pdfa(out.getvalue())
    assert _rules(findings) == set()
    assert _rules(findings, Severity.WARNING) == {"pdf.version"}


def test_header_not_at_byte_0(conforming: bytes) -> None:
    assert "pdf.header" in _rules(check_pdfa(b"\n\n" + conforming))


def test_truncated(conforming: bytes) -> None:
    findings = check_pdfa(samples.truncated(conforming))
    assert "pdf.unreadable" in _rules(findings)
    assert "BytesIO" not in findings[0].message


@pytest.mark.parametrize(
    "data", [b"", b"hello world", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64], ids=["empty", "text", "png"]
)
def test_not_a_pdf(data: bytes) -> None:
    assert [f.rule for f in check_pdfa(data)] == ["pdf.not-pdf"]


def test_encrypted_with_user_password() -> None:
    assert _rules(check_pdfa(samples.encrypted_pdf("user"))) == {"pdf.encrypted"}


def test_encrypted_without_user_password_still_checked() -> None:
    # Opens without a password, so the other checks run too; AES-256 raised the header to 1.7.
    findings = check_pdfa(samples.encrypted_pdf(""))
    assert _rules(findings) == {"pdf.encrypted"}
    assert _rules(findings, Severity.WARNING) == {"pdf.version"}


def test_size_limit(conforming: bytes) -> None:
    assert [f.rule for f in check_pdfa(conforming, max_bytes=1000)] == ["pdf.too-large"]


def test_damaged_bytes_never_raise(conforming: bytes) -> None:
    rng = random.Random(20240501)
    for _ in range(40):
        data = bytearray(conforming)
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        mutated = bytes(data)
        check_pdfa(mutated)
        read_datamatrix(mutated)
        pdf_text(mutated)


# --------------------------------------------------------------------------------------
# DataMatrix
# --------------------------------------------------------------------------------------


def test_read_datamatrix(conforming: bytes) -> None:
    assert read_datamatrix(conforming) == [samples.ins_datamatrix_text()]


def test_ins_datamatrix_present(conforming: bytes) -> None:
    findings = check_ins_datamatrix(conforming, MATRICULE, OID)
    assert _rules(findings) == set()
    assert _rules(findings, Severity.INFO) == {"pdf.ins-datamatrix.layout-not-checked"}


def test_ins_datamatrix_missing() -> None:
    findings = check_ins_datamatrix(samples.conforming_pdfa(), MATRICULE, OID)
    assert _rules(findings) == {"pdf.ins-datamatrix.missing"}
    assert _rules(findings, Severity.INFO) == {"pdf.ins-datamatrix.layout-not-checked"}


def test_ins_datamatrix_without_the_ins() -> None:
    pdf = samples.conforming_pdfa(datamatrix="https://example.org/not-an-ins")
    assert _rules(check_ins_datamatrix(pdf, MATRICULE, OID)) == {"pdf.ins-datamatrix.ins"}
    wrong_oid = samples.conforming_pdfa(datamatrix=samples.ins_datamatrix_text(oid="1.2.250.1.213.1.4.8"))
    assert _rules(check_ins_datamatrix(wrong_oid, MATRICULE, OID)) == {"pdf.ins-datamatrix.ins"}


def test_small_symbol_without_quiet_zone_is_retried() -> None:
    # One pixel per module, no quiet zone, a grey surround: zxing-cpp reads nothing as is;
    # the retry binarises it, adds a white quiet zone and scales it up.
    symbol = samples.datamatrix_image(MATRICULE, scale=1)
    bare = symbol.crop((1, 1, symbol.width - 1, symbol.height - 1))
    framed = ImageOps.expand(bare, border=2, fill=128)
    pdf = samples.reportlab_pdf(pictures=[samples.Picture(framed, size=48)])
    assert read_datamatrix(pdf) == [MATRICULE]


def test_datamatrix_inside_a_form_xobject() -> None:
    out = io.BytesIO()
    page = canvas.Canvas(out, invariant=1)
    page.beginForm("stamp")
    page.drawImage(ImageReader(samples.datamatrix_image(samples.ins_datamatrix_text())), 0, 0, width=96, height=96)
    page.endForm()
    page.doForm("stamp")
    page.showPage()
    page.save()
    assert read_datamatrix(out.getvalue()) == [samples.ins_datamatrix_text()]


@pytest.mark.parametrize("data", [b"", b"not a pdf", b"%PDF-1.4\ntruncated"], ids=["empty", "text", "truncated"])
def test_read_datamatrix_never_raises(data: bytes) -> None:
    assert read_datamatrix(data) == []
    assert _rules(check_ins_datamatrix(data, MATRICULE, OID)) == {"pdf.ins-datamatrix.missing"}


def test_read_datamatrix_size_limit(conforming: bytes) -> None:
    assert read_datamatrix(conforming, max_bytes=100) == []


# --------------------------------------------------------------------------------------
# Printed INS
# --------------------------------------------------------------------------------------


def test_pdf_text(conforming: bytes) -> None:
    assert MATRICULE in pdf_text(conforming)


@pytest.mark.parametrize("written", [MATRICULE, "2 79 03 51 215 189 89", "2 79 03 51 215 189\u00a089"])
def test_ins_printed_with_or_without_spaces(written: str) -> None:
    pdf = samples.conforming_pdfa(lines=("Patient PAT-TROIS DOMINIQUE", f"INS : {written}"))
    assert check_ins_printed(pdf, MATRICULE) == []
    assert check_ins_printed(pdf, "2 79 03 51 215 189 89") == []


def test_ins_not_printed() -> None:
    pdf = samples.conforming_pdfa(lines=("Patient PAT-TROIS DOMINIQUE",))
    findings = check_ins_printed(pdf, MATRICULE)
    assert [f.rule for f in findings] == ["pdf.ins-printed"]
    assert "is not in the text" in findings[0].message


def test_ins_printed_on_garbage() -> None:
    findings = check_ins_printed(b"garbage", MATRICULE)
    assert [f.rule for f in findings] == ["pdf.ins-printed"]
    assert "no extractable text" in findings[0].message
