"""The reference system's identity-document copies: encrypted at rest, key kept out of the data, 5-year retention.

Every test drives a launched reference system through the HTTP adapter: the conforming
one (reset before each test), or one started with a single ``id-doc-*`` defect.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from harness.reference.id_documents import add_years
from harness.sut.base import SutError
from harness.sut.model import PatientTraits, RawStorageItem
from harness.sut.reference import ReferenceSut

T0 = datetime(2020, 2, 29, 10, 0, tzinfo=UTC)
"""A leap day: five years later is 28 February 2025."""
EXPIRY = datetime(2025, 2, 28, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MARKER = b"SEGUR-MARKER-CNI-0123456789"
COPY = b"%PDF-1.7\n" + MARKER + b" Nom: TEMOIN Prenom: CAMILLE " + MARKER * 20 + b"\n%%EOF\n"
TRAITS = PatientTraits("TEMOIN", ("CAMILLE",), "F", "1980-05-17", "75056")


@pytest.fixture(scope="module")
def conforming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceSut]:
    sut = ReferenceSut(tmp_path_factory.mktemp("id-docs-reference"))
    try:
        yield sut
    finally:
        sut.close()


@pytest.fixture
def sut(conforming: ReferenceSut) -> ReferenceSut:
    conforming.reset()
    conforming.set_clock(T0)
    return conforming


def start_defective(tmp_path: Path, defect: str) -> ReferenceSut:
    sut = ReferenceSut(tmp_path / defect, defects=(defect,))
    sut.set_clock(T0)
    return sut


def copies_on_disk(items: list[RawStorageItem]) -> list[bytes]:
    return [item.content for item in items if item.name.startswith("id-documents/")]


def dump(sut: ReferenceSut) -> bytes:
    return b"".join(item.content for item in sut.raw_storage())


def test_a_copy_is_kept_listed_and_read_back(sut: ReferenceSut) -> None:
    patient = sut.create_patient(TRAITS)
    copy_id = sut.store_id_document(patient.id, COPY, "application/pdf")
    [listed] = sut.list_id_documents(patient.id)
    assert listed.document_id == copy_id and listed.media_type == "application/pdf"
    assert datetime.fromisoformat(listed.stored_at) - T0 < timedelta(minutes=1)  # by the practice clock
    assert sut.read_id_document(patient.id, copy_id) == COPY


def test_the_raw_storage_holds_no_plaintext_no_signature_and_no_key(sut: ReferenceSut) -> None:
    patient = sut.create_patient(TRAITS)
    first = sut.store_id_document(patient.id, COPY, "application/pdf")
    second = sut.store_id_document(patient.id, COPY, "application/pdf")
    items = sut.raw_storage()
    names = {item.name for item in items}
    assert "reference.sqlite" in names and {f"id-documents/{first}.bin", f"id-documents/{second}.bin"} <= names
    everything = b"".join(item.content for item in items)
    assert MARKER not in everything and b"TEMOIN Prenom" not in everything
    [one, two] = copies_on_disk(items)
    assert not one.startswith(b"%PDF") and len(one) == 12 + len(COPY) + 16  # nonce + ciphertext + tag
    assert one != two and one[:12] != two[:12]  # a fresh nonce per copy
    key = (sut.work_dir / "keys" / "id-documents.key").read_bytes()
    assert len(key) == 32 and key not in everything and key.hex().encode() not in everything
    assert not any(name.startswith("keys/") for name in names)


def test_a_copy_is_kept_five_years_after_the_last_activity_then_deleted_with_its_bytes(sut: ReferenceSut) -> None:
    patient = sut.create_patient(TRAITS)
    copy_id = sut.store_id_document(patient.id, COPY, "image/jpeg")
    [ciphertext] = copies_on_disk(sut.raw_storage())
    sut.set_clock(EXPIRY - DAY)
    assert sut.run_maintenance() == []
    assert sut.read_id_document(patient.id, copy_id) == COPY
    sut.set_clock(EXPIRY + DAY)
    assert sut.run_maintenance() == [copy_id]
    assert sut.list_id_documents(patient.id) == []
    with pytest.raises(SutError, match="404"):
        sut.read_id_document(patient.id, copy_id)
    items = sut.raw_storage()
    assert copies_on_disk(items) == [] and ciphertext[12:40] not in b"".join(i.content for i in items)
    assert copy_id.encode() not in b"".join(i.content for i in items)  # the index row is vacuumed away


@pytest.mark.parametrize("how", ["consultation", "traits-change"])
def test_an_activity_restarts_the_retention_period(sut: ReferenceSut, how: str) -> None:
    patient = sut.create_patient(TRAITS)
    copy_id = sut.store_id_document(patient.id, COPY, "application/pdf")
    later = T0 + timedelta(days=3 * 365)
    sut.set_clock(later)
    if how == "consultation":
        sut.record_activity(patient.id, "consultation")
    else:
        sut.update_traits(patient.id, {"used_name": "USAGE"})
    sut.set_clock(EXPIRY + DAY)
    assert sut.run_maintenance() == []
    sut.set_clock(add_years(later, 5) + DAY)
    assert sut.run_maintenance() == [copy_id]


def test_five_calendar_years_take_29_february_to_28_february() -> None:
    assert add_years(T0, 5) == EXPIRY
    assert add_years(datetime(2021, 3, 1, tzinfo=UTC), 5) == datetime(2026, 3, 1, tzinfo=UTC)
    assert add_years(T0, 4) == datetime(2024, 2, 29, 10, 0, tzinfo=UTC)


def test_bad_requests_are_refused(sut: ReferenceSut) -> None:
    patient = sut.create_patient(TRAITS)
    base = f"{sut.base_url}/patients/{patient.id}"
    good = {"content_base64": "JVBERi0x", "media_type": "application/pdf"}
    refused = [
        [],
        {"media_type": "application/pdf"},
        {**good, "content_base64": "not base64!"},
        {**good, "content_base64": ""},
        {**good, "media_type": "pdf"},
        {**good, "content_base64": "A" * (10 * 1024 * 1024 * 4 // 3 + 8)},
    ]
    for body in refused:
        assert requests.post(f"{base}/id-documents", json=body, timeout=30).status_code == 422, str(body)[:60]
    assert requests.post(f"{base}/activities", json={"kind": "coffee"}, timeout=10).status_code == 422
    unknown = f"{sut.base_url}/patients/P999999"
    assert requests.post(f"{unknown}/id-documents", json=good, timeout=10).status_code == 404
    assert requests.get(f"{unknown}/id-documents", timeout=10).status_code == 404
    assert requests.post(f"{unknown}/activities", json={"kind": "consultation"}, timeout=10).status_code == 404
    assert requests.get(f"{base}/id-documents/0123abcd", timeout=10).status_code == 404
    assert sut.list_id_documents(patient.id) == []


def test_defect_plaintext_leaves_the_copy_readable_on_disk(tmp_path: Path) -> None:
    sut = start_defective(tmp_path, "id-doc-plaintext")
    try:
        patient = sut.create_patient(TRAITS)
        copy_id = sut.store_id_document(patient.id, COPY, "application/pdf")
        assert copies_on_disk(sut.raw_storage()) == [COPY]
        assert sut.read_id_document(patient.id, copy_id) == COPY
    finally:
        sut.close()


def test_defect_fixed_nonce_gives_the_same_bytes_twice(tmp_path: Path) -> None:
    sut = start_defective(tmp_path, "id-doc-fixed-nonce")
    try:
        patient = sut.create_patient(TRAITS)
        first = sut.store_id_document(patient.id, COPY, "application/pdf")
        sut.store_id_document(patient.id, COPY, "application/pdf")
        [one, two] = copies_on_disk(sut.raw_storage())
        assert one == two and MARKER not in one
        assert sut.read_id_document(patient.id, first) == COPY
    finally:
        sut.close()


def test_defect_delete_after_creation_ignores_later_activity(tmp_path: Path) -> None:
    sut = start_defective(tmp_path, "id-doc-delete-after-creation")
    try:
        patient = sut.create_patient(TRAITS)
        copy_id = sut.store_id_document(patient.id, COPY, "application/pdf")
        sut.set_clock(T0 + timedelta(days=3 * 365))
        sut.record_activity(patient.id, "consultation")
        sut.set_clock(EXPIRY + DAY)
        assert sut.run_maintenance() == [copy_id]
    finally:
        sut.close()


def test_defect_never_delete_keeps_every_copy(tmp_path: Path) -> None:
    sut = start_defective(tmp_path, "id-doc-never-delete")
    try:
        patient = sut.create_patient(TRAITS)
        copy_id = sut.store_id_document(patient.id, COPY, "application/pdf")
        sut.set_clock(EXPIRY + 400 * DAY)
        assert sut.run_maintenance() == []
        assert [c.document_id for c in sut.list_id_documents(patient.id)] == [copy_id]
    finally:
        sut.close()


def test_defect_delete_index_only_leaves_the_ciphertext_on_disk(tmp_path: Path) -> None:
    sut = start_defective(tmp_path, "id-doc-delete-index-only")
    try:
        patient = sut.create_patient(TRAITS)
        copy_id = sut.store_id_document(patient.id, COPY, "application/pdf")
        [ciphertext] = copies_on_disk(sut.raw_storage())
        sut.set_clock(EXPIRY + DAY)
        assert sut.run_maintenance() == [copy_id]
        assert sut.list_id_documents(patient.id) == []
        assert copies_on_disk(sut.raw_storage()) == [ciphertext]
    finally:
        sut.close()
