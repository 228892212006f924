"""The XDS metadata validator: DMP rules and cross-checks with the CDA, one broken field at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from harness.validators.cda.valuesets import ValueSets
from harness.validators.xds import RIM, Scheme, check_submission, masking_codes
from tests.xds_samples import submission_for

ANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans" / "TestContenuCDA-3-0"
N1 = ANS / "ExemplesCDA" / "DOC_NON_STRUCTURE_CDA-R2-N1.xml"
INS = ("279035121518989", "1.2.250.1.213.1.4.10")

pytestmark = pytest.mark.skipif(not N1.is_file(), reason="ANS example documents not found beside the repository")


@pytest.fixture(scope="module")
def value_sets() -> ValueSets:
    return ValueSets.load(ANS / "jeuxDeValeurs")


def _errors(request: etree._Element, cda: bytes, value_sets: ValueSets | None) -> set[str]:
    return {
        f.rule for f in check_submission(request, {"Document01": cda}, value_sets, INS) if f.severity.value == "error"
    }


def test_metadata_built_from_the_cda_pass(value_sets: ValueSets) -> None:
    cda = N1.read_bytes()
    assert _errors(submission_for(cda, ("MASQUE_PS",)), cda, value_sets) == set()
    assert masking_codes(next(submission_for(cda, ("MASQUE_PS",)).iter(f"{{{RIM}}}ExtrinsicObject"))) == {"MASQUE_PS"}


def _classification(request: etree._Element, scheme: str) -> etree._Element:
    return next(c for c in request.iter(f"{{{RIM}}}Classification") if c.get("classificationScheme") == scheme)


def _external(request: etree._Element, scheme: str) -> etree._Element:
    return next(e for e in request.iter(f"{{{RIM}}}ExternalIdentifier") if e.get("identificationScheme") == scheme)


def _slot_value(request: etree._Element, name: str) -> etree._Element:
    slot = next(s for s in request.iter(f"{{{RIM}}}Slot") if s.get("name") == name)
    value = slot.find(f".//{{{RIM}}}Value")
    assert value is not None
    return value


def _add_confidentiality(request: etree._Element, code: str, system: str) -> None:
    extra = etree.SubElement(
        _classification(request, Scheme.CONFIDENTIALITY_CODE).getparent(),  # type: ignore[arg-type]
        f"{{{RIM}}}Classification",
        classificationScheme=Scheme.CONFIDENTIALITY_CODE,
        nodeRepresentation=code,
    )
    slot = etree.SubElement(extra, f"{{{RIM}}}Slot", name="codingScheme")
    etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = system


MUTATIONS: list[tuple[str, Callable[[etree._Element], None], str]] = [
    (
        "format-code",
        lambda r: _classification(r, Scheme.FORMAT_CODE).set("nodeRepresentation", "urn:ihe:iti:xds-sd:text:2008"),
        "xds.format-code.n1",
    ),
    (
        "type-code",
        lambda r: _classification(r, Scheme.TYPE_CODE).set("nodeRepresentation", "34133-9"),
        "xds.cda.type-code",
    ),
    (
        "type-code-jdv",
        lambda r: _classification(r, Scheme.TYPE_CODE).set("nodeRepresentation", "99999-9"),
        "xds.type-code.jdv",
    ),
    (
        "patient-oid",
        lambda r: [
            e.set("value", "279035121518989^^^&1.2.250.1.213.1.4.2&ISO^NH")
            for e in r.iter(f"{{{RIM}}}ExternalIdentifier")
            if "213.1.4" in e.get("value", "")
        ],
        "xds.patient-id.oid",
    ),
    (
        "patient-key",
        lambda r: [
            e.set("value", "279035121518988^^^&1.2.250.1.213.1.4.10&ISO^NH")
            for e in r.iter(f"{{{RIM}}}ExternalIdentifier")
            if "213.1.4" in e.get("value", "")
        ],
        "xds.patient-id.key",
    ),
    (
        "patient-mismatch",
        lambda r: _external(r, Scheme.SET_PATIENT_ID).set("value", "180012B01234578^^^&1.2.250.1.213.1.4.10&ISO^NH"),
        "xds.patient-id.mismatch",
    ),
    (
        "patient-type",
        lambda r: [
            e.set("value", e.get("value", "").replace("^NH", "^INS")) for e in r.iter(f"{{{RIM}}}ExternalIdentifier")
        ],
        "xds.patient-id.type",
    ),
    ("masking-code", lambda r: _add_confidentiality(r, "SECRET", "1.2.3"), "xds.confidentiality.masking"),
    (
        "service-start",
        lambda r: setattr(_slot_value(r, "serviceStartTime"), "text", "20260101000000"),
        "xds.cda.service-start",
    ),
    (
        "creation-time",
        lambda r: setattr(_slot_value(r, "creationTime"), "text", "20000101000000"),
        "xds.cda.creation-time",
    ),
    ("hash", lambda r: setattr(_slot_value(r, "hash"), "text", "0" * 40), "xds.hash"),
    ("size", lambda r: setattr(_slot_value(r, "size"), "text", "12"), "xds.size"),
    ("unique-id", lambda r: _external(r, Scheme.ENTRY_UNIQUE_ID).set("value", "1.2.3.4"), "xds.cda.unique-id"),
    (
        "author",
        lambda r: [
            setattr(v, "text", "899999999999^X^Y^^^^^^&1.2.250.1.71.4.2.1&ISO")
            for v in r.iter(f"{{{RIM}}}Value")
            if "&1.2.250.1.71.4.2.1&ISO" in (v.text or "")
        ],
        "xds.cda.author",
    ),
    (
        "facility",
        lambda r: _classification(r, Scheme.HEALTHCARE_FACILITY_TYPE_CODE).set("nodeRepresentation", "SA01"),
        "xds.cda.facility-type",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "rule"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_broken_field_is_named(
    value_sets: ValueSets, name: str, mutate: Callable[[etree._Element], None], rule: str
) -> None:
    cda = N1.read_bytes()
    request = submission_for(cda)
    mutate(request)
    assert rule in _errors(request, cda, value_sets)


def test_a_missing_document_and_an_unreadable_cda(value_sets: ValueSets) -> None:
    cda = N1.read_bytes()
    request = submission_for(cda)
    assert {f.rule for f in check_submission(request, {}, value_sets)} >= {"xds.document.missing"}
    broken = {f.rule for f in check_submission(request, {"Document01": b"<not-a-cda"}, value_sets)}
    assert "xds.cda.unreadable" in broken and "xds.hash" in broken


def test_dates_compare_as_instants_across_offsets() -> None:
    cda = N1.read_bytes()
    request = submission_for(cda)
    # the CDA says 20210401134745+0100; 12:47:45 UTC is the same instant
    assert _slot_value(request, "creationTime").text == "20210401124745"
    assert "xds.cda.creation-time" not in _errors(request, cda, None)
    _slot_value(request, "creationTime").text = "20210401"
    assert "xds.cda.creation-time" not in _errors(request, cda, None)
