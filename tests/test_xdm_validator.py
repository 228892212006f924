"""The XDM package validator: a conforming IHE_XDM.ZIP passes, each hostile or broken variant is caught."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from harness.validators.xdm import check_xdm
from tests.mss_samples import ANS_N1, EXAMPLE_INS
from tests.mss_samples import metadata_for as _metadata
from tests.mss_samples import xdm_members as _members
from tests.mss_samples import zipped as _zip

N1 = ANS_N1
INS = EXAMPLE_INS

pytestmark = pytest.mark.skipif(not N1.is_file(), reason="ANS example documents not found beside the repository")


def _errors(data: bytes) -> set[str]:
    return {f.rule for f in check_xdm(data, expected_ins=INS).findings if f.severity.value == "error"}


def _rules(data: bytes) -> set[str]:
    return {f.rule for f in check_xdm(data, expected_ins=INS).findings}


def test_a_conforming_package_passes() -> None:
    report = check_xdm(_zip(_members()), expected_ins=INS)
    assert [f for f in report.findings if f.severity.value == "error"] == []
    assert not any(f.rule.startswith("xdm.") for f in report.findings)
    assert report.metadata_paths == ["IHE_XDM/SUBSET01/METADATA.XML"]
    assert report.documents["IHE_XDM/SUBSET01/DOC0001.XML"] == N1.read_bytes()


def test_missing_metadata() -> None:
    members = _members()
    del members["IHE_XDM/SUBSET01/METADATA.XML"]
    rules = _rules(_zip(members))
    assert "xdm.layout.metadata" in rules
    assert "xdm.layout.unreferenced" in rules


@pytest.mark.parametrize(("name", "rule"), [("INDEX.HTM", "xdm.layout.index"), ("README.TXT", "xdm.layout.readme")])
def test_missing_root_files(name: str, rule: str) -> None:
    members = _members()
    del members[name]
    assert rule in _errors(_zip(members))


def test_case_variance_is_a_warning() -> None:
    members = {
        k.replace("METADATA.XML", "metadata.xml").replace("INDEX.HTM", "index.htm"): v for k, v in _members().items()
    }
    report = check_xdm(_zip(members), expected_ins=INS)
    assert "xdm.layout.case" in {f.rule for f in report.findings if f.severity.value == "warning"}
    assert not [f for f in report.findings if f.severity.value == "error"]


def test_uri_to_a_missing_file() -> None:
    members = _members()
    members["IHE_XDM/SUBSET01/METADATA.XML"] = _metadata(N1.read_bytes(), "DOC0002.XML")
    errors = _errors(_zip(members))
    assert "xdm.uri.missing-file" in errors
    assert "xds.document.missing" in errors


def test_uri_escaping_the_subset() -> None:
    members = _members()
    members["IHE_XDM/SUBSET01/METADATA.XML"] = _metadata(N1.read_bytes(), "../../DOC0001.XML")
    assert "xdm.uri.path" in _errors(_zip(members))


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "IHE_XDM\\SUBSET01\\x.xml", "C:/evil.txt"])
def test_zip_slip_names(name: str) -> None:
    members = _members()
    members[name] = b"evil"
    report = check_xdm(_zip(members), expected_ins=INS)
    assert "xdm.zip.path" in {f.rule for f in report.findings}
    assert name not in report.documents


def test_a_bomb_is_not_inflated() -> None:
    members = _members()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        with archive.open("IHE_XDM/SUBSET01/ZEROS.BIN", "w") as stream:
            block = bytes(1024 * 1024)
            for _ in range(300):
                stream.write(block)
    data = buffer.getvalue()
    assert len(data) < 5 * 1024 * 1024
    report = check_xdm(data, expected_ins=INS)
    assert "xdm.zip.bomb" in {f.rule for f in report.findings}
    assert "IHE_XDM/SUBSET01/ZEROS.BIN" not in report.documents


def test_a_member_inflating_past_its_declared_size() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.TXT", b"A" * 5000)
    data = bytearray(buffer.getvalue())
    # lie in both headers: declare 100 bytes uncompressed (local header offset 22, central offset 24)
    data[22:26] = (100).to_bytes(4, "little")
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    report = check_xdm(bytes(data))
    assert {"xdm.zip.bomb", "xdm.zip.unreadable"} & {f.rule for f in report.findings}
    assert "README.TXT" not in report.documents


def test_too_many_members() -> None:
    assert "xdm.zip.members" in {f.rule for f in check_xdm(_zip(_members()), max_members=3).findings}


def test_xxe_in_metadata_is_refused() -> None:
    members = _members()
    members["IHE_XDM/SUBSET01/METADATA.XML"] = (
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&xxe;'
        b"</lcm:SubmitObjectsRequest>"
    )
    report = check_xdm(_zip(members), expected_ins=INS)
    unsafe = [f for f in report.findings if f.rule == "xdm.metadata.unsafe"]
    assert unsafe
    assert not any("root:" in f.message for f in report.findings)


def test_encrypted_flag() -> None:
    data = bytearray(_zip(_members()))
    name = b"IHE_XDM/SUBSET01/DOC0001.XML"
    # set general-purpose bit 0 (encrypted) in the member's local (offset 6) and central (offset 8) headers
    for signature, flag_offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while at >= 0 and data[at + name_offset : at + name_offset + len(name)] != name:
            at = data.find(signature, at + 1)
        data[at + flag_offset] |= 0x1
    report = check_xdm(bytes(data), expected_ins=INS)
    assert "xdm.zip.encrypted" in {f.rule for f in report.findings}
    assert "IHE_XDM/SUBSET01/DOC0001.XML" not in report.documents


def test_symlink_member() -> None:
    members = _members()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        link = zipfile.ZipInfo("IHE_XDM/SUBSET01/LINK")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    assert "xdm.zip.symlink" in _errors(buffer.getvalue())


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_non_zip_bytes(data: bytes) -> None:
    assert _errors(data) == {"xdm.zip.unreadable"}


def test_oversized_package() -> None:
    assert "xdm.zip.too-large" in {f.rule for f in check_xdm(_zip(_members()), max_bytes=100).findings}


def test_hash_mismatch_surfaces_xds_hash() -> None:
    members = _members()
    members["IHE_XDM/SUBSET01/DOC0001.XML"] = N1.read_bytes() + b"\n"
    assert "xds.hash" in _errors(_zip(members))


def test_missing_pdf_is_a_warning() -> None:
    members = _members()
    del members["IHE_XDM/SUBSET01/DOC0001.PDF"]
    report = check_xdm(_zip(members), expected_ins=INS)
    assert "xdm.pdf.missing" in {f.rule for f in report.findings if f.severity.value == "warning"}
    assert not [f for f in report.findings if f.severity.value == "error"]


def test_unreferenced_document_is_a_warning() -> None:
    members = _members()
    members["IHE_XDM/SUBSET01/OTHER.XML"] = b"<x/>"
    assert "xdm.layout.unreferenced" in _rules(_zip(members))


def test_wrong_patient() -> None:
    report = check_xdm(_zip(_members()), expected_ins=("180000000000000", INS[1]))
    assert "xds.patient-id.ins" in {f.rule for f in report.findings}
