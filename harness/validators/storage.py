"""Whether copies of identity documents sit encrypted in a SUT's storage: what a scan of its raw bytes shows.

INS/va1.42 asks that an electronic copy of a patient's identity document be stored
encrypted and deleted five years after the patient's last activity. Vendors prove it today
with documentation alone; here the SUT hands over its storage as bytes on disk (files,
database files) and this module judges those bytes:

- **no plaintext**: neither the document nor any of the marker strings planted in it appears
  anywhere, nor a 64-byte run of the document (so a copy split or framed differently is
  still found);
- **looks like ciphertext**: the bytes a store added carry no file-type signature (PDF, PNG,
  JPEG, TIFF, GIF, ZIP) and have the entropy of random data (≥ 7.5 bits per byte over at
  least 1 KiB — our threshold, inferred: compressed plaintext also scores high, which is why
  the signature and marker checks come first);
- **a fresh nonce per store**: two stores of the same document give different bytes;
- **no key material beside the data**: no PEM private key, no JWK with a private or secret
  member, no file named like a key in the dump (a heuristic: a raw key in a binary column
  cannot be told from data).

"What a store added" is read by comparing the dump before and after: new items, or the
bytes of an item that changed. Signatures and entropy are judged on new items only (a copy
in a file of its own); a database file that changed mixes the copy with other pages, so it
is scanned for plaintext only, and the report says so. A scan is bounded (``max_bytes``)
and never raises.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.findings import Finding, error, info

SOURCE = "storage"
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
WINDOW = 64
"""Length of the document runs searched for in the storage."""
MIN_ENTROPY_BYTES = 1024
ENTROPY_THRESHOLD = 7.5
SIGNATURES = {
    b"%PDF": "PDF",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF8": "GIF",
    b"PK\x03\x04": "ZIP",
}
_KEY_PATTERNS = (
    re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    re.compile(rb'"kty"\s*:\s*"(?:oct|RSA|EC|OKP)"[^}]{0,4096}"(?:k|d)"\s*:'),
)
_KEY_NAME = re.compile(r"(?:^|/)[^/]*(?:\.key|\.pem|\.jwk|keyfile|secret)[^/]*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One item of a raw dump: its name and its bytes (what :class:`harness.sut.model.RawStorageItem` carries)."""

    name: str
    content: bytes


@dataclass(slots=True)
class StorageScan:
    """What scanning a dump found."""

    findings: list[Finding] = field(default_factory=list)
    added: dict[str, bytes] = field(default_factory=dict)
    """Item name → the bytes a store added (a whole new item, or the changed part of one)."""


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    counts = Counter(data)
    total = len(data)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def added_bytes(before: Iterable[StoredItem], after: Iterable[StoredItem]) -> dict[str, bytes]:
    """What ``after`` has that ``before`` had not: new items whole, changed items from their first difference."""
    old = {item.name: item.content for item in before}
    added: dict[str, bytes] = {}
    for item in after:
        previous = old.get(item.name)
        if previous is None:
            added[item.name] = item.content
        elif previous != item.content:
            common = min(len(previous), len(item.content))
            start = next((i for i, (a, b) in enumerate(zip(previous, item.content, strict=False)) if a != b), common)
            added[item.name] = item.content[start:]
    return added


def _windows(document: bytes) -> list[bytes]:
    """Runs of the document to look for: its start, middle and end, and one every 512 bytes (at most 16 runs).

    Each run is a full pass over the storage, so their number bounds the scan's time; the
    marker strings planted in the document are the finer net.
    """
    if len(document) <= WINDOW:
        return [document] if document else []
    step = max(512, len(document) // 16)
    offsets = {0, len(document) // 2, len(document) - WINDOW, *range(0, len(document) - WINDOW, step)}
    return [document[o : o + WINDOW] for o in sorted(offsets)]


def scan_plaintext(items: Iterable[StoredItem], document: bytes, markers: Iterable[bytes]) -> list[Finding]:
    """``storage.plaintext`` for every item holding a marker or a run of the document."""
    needles = [m for m in markers if m] + _windows(document)
    findings: list[Finding] = []
    for item in items:
        hit = next((n for n in needles if n in item.content), None)
        if hit is not None:
            where = item.content.find(hit)
            shown = hit[:24].decode("latin-1")
            findings.append(
                error(
                    "storage.plaintext",
                    f"{item.name} holds the identity document in clear ({shown!r}... at byte {where})",
                    item.name,
                    SOURCE,
                )
            )
    return findings


def scan_key_material(items: Iterable[StoredItem]) -> list[Finding]:
    """``storage.key-material`` for a PEM private key, a private JWK or a key-named file in the dump [I]."""
    findings: list[Finding] = []
    for item in items:
        if _KEY_NAME.search(item.name):
            findings.append(
                error("storage.key-material", f"the dump holds a key-named file {item.name}", item.name, SOURCE)
            )
            continue
        for pattern in _KEY_PATTERNS:
            found = pattern.search(item.content)
            if found is not None:
                findings.append(
                    error(
                        "storage.key-material",
                        f"{item.name} holds what looks like private key material at byte {found.start()}",
                        item.name,
                        SOURCE,
                    )
                )
                break
    return findings


def judge_ciphertext(name: str, data: bytes) -> list[Finding]:
    """``storage.signature`` (a file-type signature) and ``storage.entropy`` (too regular for ciphertext)."""
    findings: list[Finding] = []
    for signature, kind in SIGNATURES.items():
        if data.startswith(signature):
            findings.append(
                error("storage.signature", f"the bytes stored in {name} start like a {kind} file", name, SOURCE)
            )
    if len(data) >= MIN_ENTROPY_BYTES:
        bits = entropy(data)
        if bits < ENTROPY_THRESHOLD:
            findings.append(
                error(
                    "storage.entropy",
                    f"the bytes stored in {name} have {bits:.2f} bits of entropy per byte; ciphertext has about 8",
                    name,
                    SOURCE,
                )
            )
    else:
        findings.append(
            info("storage.entropy.short", f"{name}: {len(data)} bytes, too few to judge entropy", name, SOURCE)
        )
    return findings


def scan_store(
    before: list[StoredItem],
    after: list[StoredItem],
    document: bytes,
    markers: Iterable[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> StorageScan:
    """Judge the dump after a document was stored (``after``) against the one before."""
    scan = StorageScan()
    size = sum(len(item.content) for item in after)
    if size > max_bytes:
        scan.findings.append(
            error("storage.too-large", f"the dump is {size:,} bytes, above the {max_bytes:,}-byte limit", "", SOURCE)
        )
        return scan
    scan.findings.extend(scan_plaintext(after, document, markers))
    scan.findings.extend(scan_key_material(after))
    scan.added = added_bytes(before, after)
    if not scan.added:
        scan.findings.append(
            error("storage.nothing-stored", "storing the copy changed nothing in the raw storage", "", SOURCE)
        )
    known = {item.name for item in before}
    for name, data in scan.added.items():
        if name in known:  # a database file that changed: its new pages mix the copy with everything else
            scan.findings.append(
                info("storage.changed-file", f"{name} changed; its bytes are scanned for plaintext only", name, SOURCE)
            )
        else:
            scan.findings.extend(judge_ciphertext(name, data))
    return scan


def same_ciphertext(first: dict[str, bytes], second: dict[str, bytes]) -> list[Finding]:
    """``storage.same-ciphertext`` when two stores of the same document added identical bytes (a fixed nonce)."""
    ours = {data for data in first.values() if len(data) >= WINDOW}
    twins = sorted(name for name, data in second.items() if data in ours)
    if not twins:
        return []
    return [
        error(
            "storage.same-ciphertext",
            f"storing the same document twice gave identical bytes ({', '.join(twins)}): the nonce or IV is not fresh",
            twins[0],
            SOURCE,
        )
    ]


def still_present(items: Iterable[StoredItem], stored: dict[str, bytes]) -> list[str]:
    """The names of items still holding a run of the bytes a store added (``stored``): deletion left them."""
    needles = [data[len(data) // 2 : len(data) // 2 + WINDOW] for data in stored.values() if len(data) >= WINDOW]
    return sorted({item.name for item in items for needle in needles if needle in item.content})
