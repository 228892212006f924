"""The raw-storage scan for copies of identity documents: ciphertext passes, each way of leaking is caught."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness.validators.storage import (
    StoredItem,
    added_bytes,
    entropy,
    same_ciphertext,
    scan_key_material,
    scan_store,
    still_present,
)

MARKER = b"MARQUEUR-CNI-4f1c2a"
DOCUMENT = b"%PDF-1.4\n" + b"CARTE NATIONALE D'IDENTITE " + MARKER + b" " + os.urandom(4096) + b"\n%%EOF\n"
DB = StoredItem("practice.sqlite", b"SQLite format 3\x00" + bytes(8192))


def _encrypted() -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(AESGCM.generate_key(bit_length=256)).encrypt(nonce, DOCUMENT, b"patient-1")


def _rules(before: list[StoredItem], after: list[StoredItem]) -> set[str]:
    return {f.rule for f in scan_store(before, after, DOCUMENT, [MARKER]).findings if f.severity.value == "error"}


def test_an_encrypted_copy_passes() -> None:
    assert _rules([DB], [DB, StoredItem("id-documents/1.bin", _encrypted())]) == set()


def test_plaintext_anywhere_is_caught() -> None:
    assert "storage.plaintext" in _rules([DB], [DB, StoredItem("id-documents/1.bin", DOCUMENT)])
    framed = StoredItem("practice.sqlite", DB.content + b"row" + DOCUMENT[200:900])
    assert "storage.plaintext" in _rules([DB], [framed])


def test_a_file_signature_and_low_entropy_are_caught() -> None:
    rules = _rules([DB], [DB, StoredItem("copy.pdf", b"%PDF-1.4\n" + b"A" * 4096)])
    assert {"storage.signature", "storage.entropy"} <= rules


def test_a_changed_database_file_is_scanned_for_plaintext_only() -> None:
    grown = StoredItem("practice.sqlite", DB.content + b"A" * 4096)
    findings = scan_store([DB], [grown], DOCUMENT, [MARKER]).findings
    assert [f.rule for f in findings] == ["storage.changed-file"]


def test_nothing_stored_is_caught() -> None:
    assert "storage.nothing-stored" in _rules([DB], [DB])


def test_two_identical_stores_mean_a_fixed_nonce() -> None:
    first = {"a.bin": b"\x01" * 100}
    assert same_ciphertext(first, {"b.bin": b"\x01" * 100})
    assert not same_ciphertext({"a.bin": _encrypted()}, {"b.bin": _encrypted()})


def test_key_material_beside_the_data_is_caught() -> None:
    pem = StoredItem("config.txt", b"x\n-----BEGIN PRIVATE KEY-----\nMIIE...\n")
    jwk = StoredItem("settings.json", b'{"kty": "oct", "k": "c2VjcmV0"}')
    named = StoredItem("keys/storage.key", os.urandom(32))
    assert len(scan_key_material([pem, jwk, named, DB])) == 3


def test_added_bytes_and_what_is_still_present() -> None:
    grown = StoredItem("practice.sqlite", DB.content + b"new-row")
    added = added_bytes([DB], [grown, StoredItem("n.bin", b"xyz")])
    assert added == {"practice.sqlite": b"new-row", "n.bin": b"xyz"}
    stored = {"id/1.bin": _encrypted()}
    assert still_present([StoredItem("id/1.bin", stored["id/1.bin"])], stored) == ["id/1.bin"]
    assert still_present([DB], stored) == []


def test_entropy_and_size_bounds() -> None:
    assert entropy(os.urandom(65536)) > 7.9 and entropy(bytes(1000)) == 0.0
    big = [StoredItem("big", bytes(2000))]
    assert [f.rule for f in scan_store([], big, DOCUMENT, [], max_bytes=1000).findings] == ["storage.too-large"]
