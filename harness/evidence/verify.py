"""``verify-pack``: check an evidence pack (zip) or a run folder against its signed manifest.

A pack travels from the vendor to ANS or a reviewer; whoever receives it runs
this to learn whether anything changed since it was signed, and by whom it was
signed. Every problem names the file it is about and has a kind a program can
test (:class:`ProblemKind`); nothing raises out of :func:`verify_pack`.

A pack is hostile input. Member names are checked before use (no absolute
path, no ``..``, no backslash, no duplicate, no symbolic link, no encryption);
declared sizes and compression ratios are capped before anything is
decompressed; hashes are streamed; the zip's entry count and directory size are read from
its end record before :mod:`zipfile` loads its index. Memory stays bounded whatever the
zip claims, and time is bounded by the caps in :class:`Limits`.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from harness.evidence import layout
from harness.evidence.manifest import Manifest, ManifestError
from harness.evidence.signing import SigningError, load_certificates, verify_detached
from harness.findings import Severity

CHUNK = 1 << 20


class ProblemKind(enum.StrEnum):
    """What is wrong, as a stable code."""

    NOT_FOUND = "not-found"
    NOT_A_ZIP = "not-a-zip"
    BROKEN_ZIP = "broken-zip"
    UNSAFE_NAME = "unsafe-name"
    DUPLICATE_ENTRY = "duplicate-entry"
    SYMLINK = "symlink"
    ENCRYPTED = "encrypted-entry"
    TOO_LARGE = "too-large"
    TOO_MANY_ENTRIES = "too-many-entries"
    MANIFEST_MISSING = "manifest-missing"
    MANIFEST_INVALID = "manifest-invalid"
    MISSING_FILE = "missing-file"
    EXTRA_FILE = "extra-file"
    SIZE_MISMATCH = "size-mismatch"
    HASH_MISMATCH = "hash-mismatch"
    UNREADABLE = "unreadable"
    SIGNATURE_MISSING = "signature-missing"
    SIGNATURE_INVALID = "signature-invalid"
    DIGEST_MISMATCH = "digest-mismatch"
    SIGNER_MISMATCH = "signer-mismatch"
    SIGNER_UNTRUSTED = "signer-untrusted"
    SIGNER_GENERATED = "signer-generated"
    SIGNER_UNVERIFIED = "signer-unverified"
    TRUST_UNREADABLE = "trust-unreadable"
    INTERNAL = "internal-error"


@dataclass(frozen=True, slots=True)
class PackProblem:
    """One problem: its kind, the file it is about (pack-relative), and a sentence."""

    kind: ProblemKind
    path: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.kind.value}]"


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that keep verification bounded on hostile packs."""

    max_member_bytes: int = 2 << 30
    max_total_bytes: int = 32 << 30
    max_entries: int = 100_000
    max_directory_bytes: int = 64 << 20
    """Largest central directory read (zipfile loads it whole)."""
    max_ratio: int = 250
    """Largest uncompressed/compressed ratio accepted for a member over 1 MiB (zip bombs exceed 1000)."""
    max_manifest_bytes: int = 64 << 20
    max_signature_bytes: int = 1 << 20


@dataclass(slots=True)
class PackVerification:
    """The outcome of :func:`verify_pack`.

    Attributes:
        source: what was verified (zip or folder).
        problems: errors; the pack is not to be trusted while there is one.
        warnings: facts a reader should know (a harness-generated signer, no trust anchor given).
        files_checked: files whose size and SHA-256 matched the manifest.
        run_id: the manifest's run id, when readable.
        signer: the signer's description from the signature, when readable.
    """

    source: Path
    problems: list[PackProblem] = field(default_factory=list)
    warnings: list[PackProblem] = field(default_factory=list)
    files_checked: int = 0
    run_id: str = ""
    signer: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: ProblemKind, path: str, message: str, severity: Severity = Severity.ERROR) -> None:
        problem = PackProblem(kind, path, message, severity)
        (self.problems if severity is Severity.ERROR else self.warnings).append(problem)

    def kinds(self) -> set[ProblemKind]:
        return {p.kind for p in (*self.problems, *self.warnings)}


def verify_pack(path: Path, trusted_cert: Path | None = None, limits: Limits | None = None) -> PackVerification:
    """Verify an evidence pack zip, or a finalised run folder, against its signed manifest.

    Args:
        path: the ``.zip`` or the run folder.
        trusted_cert: a certificate (PEM, possibly several, or DER) the signer
            must be, or be directly issued by. Without it a generated signer is
            a warning, and any other signer is reported as unverified.
        limits: caps for hostile input.
    """
    path = Path(path)
    result = PackVerification(source=path)
    caps = limits or Limits()
    try:
        if path.is_dir():
            _verify(_DirSource(path, result), result, trusted_cert, caps, honour_excluded=True)
        elif path.exists():
            source = _ZipSource.load(path, result, caps)
            if source is not None:
                with source:
                    _verify(source, result, trusted_cert, caps, honour_excluded=False)
        else:
            result.add(ProblemKind.NOT_FOUND, str(path), "no such file or folder")
    except Exception as exc:  # the promise: never an exception out of verify_pack
        result.add(ProblemKind.INTERNAL, str(path), f"verification stopped: {type(exc).__name__}: {exc}")
    return result


# -- sources ---------------------------------------------------------------------------------
class _DirSource:
    """A run folder: regular files found without following links."""

    def __init__(self, root: Path, result: PackVerification) -> None:
        self.root = root
        self.sizes: dict[str, int] = {}
        self.blocked: set[str] = set()
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            base = Path(directory)
            for name in sorted(dirnames + filenames):
                full = base / name
                rel = full.relative_to(root).as_posix()
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    result.add(ProblemKind.SYMLINK, rel, "symbolic link in the pack folder")
                    self.blocked.add(rel)
                elif stat.S_ISREG(mode):
                    self.sizes[rel] = full.lstat().st_size
            dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())

    def open(self, name: str) -> IO[bytes]:
        return open(self.root / name, "rb")


class _ZipSource:
    """A zip whose member names and sizes were checked before anything is decompressed."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.sizes: dict[str, int] = {}
        self.infos: dict[str, zipfile.ZipInfo] = {}
        self.blocked: set[str] = set()

    @classmethod
    def load(cls, path: Path, result: PackVerification, caps: Limits) -> _ZipSource | None:
        name = path.name
        try:
            with open(path, "rb") as handle:
                magic = handle.read(4)
            directory = _central_directory(path)
        except OSError as exc:
            result.add(ProblemKind.UNREADABLE, name, f"cannot read the pack: {exc}")
            return None
        if directory is None:
            kind = ProblemKind.BROKEN_ZIP if magic.startswith(b"PK") else ProblemKind.NOT_A_ZIP
            result.add(kind, name, "not a readable zip (no end-of-central-directory record)")
            return None
        entries, directory_size = directory
        if entries > caps.max_entries:
            result.add(ProblemKind.TOO_MANY_ENTRIES, name, f"{entries} entries (limit {caps.max_entries})")
            return None
        if directory_size > caps.max_directory_bytes:
            result.add(
                ProblemKind.TOO_LARGE,
                name,
                f"central directory of {directory_size} bytes (limit {caps.max_directory_bytes})",
            )
            return None
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            kind = ProblemKind.BROKEN_ZIP if magic.startswith(b"PK") else ProblemKind.NOT_A_ZIP
            result.add(kind, name, f"not a readable zip: {exc}")
            return None
        source = cls(archive)
        source._index(result, caps)
        return source

    def _index(self, result: PackVerification, caps: Limits) -> None:
        infos = self.archive.infolist()
        counts = Counter(info.filename for info in infos)
        declared_total = 0
        for info in infos:
            name = info.filename
            if not layout.is_safe_relative(name.rstrip("/") if info.is_dir() else name):
                result.add(ProblemKind.UNSAFE_NAME, repr(name)[1:-1], "unsafe member name (absolute, '..' or odd)")
                continue
            if counts[name] > 1:
                if name not in self.blocked:
                    result.add(ProblemKind.DUPLICATE_ENTRY, name, f"appears {counts[name]} times in the zip")
                self.blocked.add(name)
                continue
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                result.add(ProblemKind.SYMLINK, name, "symbolic-link member")
                self.blocked.add(name)
                continue
            if info.flag_bits & 0x1:
                result.add(ProblemKind.ENCRYPTED, name, "encrypted member")
                self.blocked.add(name)
                continue
            too_big = info.file_size > caps.max_member_bytes
            ratio = info.file_size / max(info.compress_size, 1)
            if too_big or (info.file_size > 1 << 20 and ratio > caps.max_ratio):
                result.add(
                    ProblemKind.TOO_LARGE,
                    name,
                    f"declares {info.file_size} bytes from {info.compress_size} compressed (ratio {ratio:.0f}); "
                    "not decompressed (zip bomb?)",
                )
                self.blocked.add(name)
            declared_total += info.file_size
            self.sizes[name] = info.file_size
            self.infos[name] = info
        if declared_total > caps.max_total_bytes:
            result.add(
                ProblemKind.TOO_LARGE,
                "(pack)",
                f"members declare {declared_total} bytes in all (limit {caps.max_total_bytes})",
            )
            self.blocked.update(self.sizes)

    def open(self, name: str) -> IO[bytes]:
        return self.archive.open(self.infos[name])

    def __enter__(self) -> _ZipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.archive.close()


_Source = _DirSource | _ZipSource


def _central_directory(path: Path) -> tuple[int, int] | None:
    """(entries, size in bytes) the zip's end record announces, zip64 aware; None without an end record."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        window = min(size, 22 + 0xFFFF)
        handle.seek(size - window)
        tail = handle.read(window)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        count = int.from_bytes(tail[at + 10 : at + 12], "little")
        directory_size = int.from_bytes(tail[at + 12 : at + 16], "little")
        locator = at - 20
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            offset = int.from_bytes(tail[locator + 8 : locator + 16], "little")
            if offset + 56 <= size:
                handle.seek(offset)
                record = handle.read(56)
                if record[:4] == b"PK\x06\x06":
                    count = max(count, int.from_bytes(record[32:40], "little"))
                    directory_size = max(directory_size, int.from_bytes(record[40:48], "little"))
        return count, directory_size


# -- checks ----------------------------------------------------------------------------------
def _verify(
    source: _Source, result: PackVerification, trusted_cert: Path | None, caps: Limits, honour_excluded: bool
) -> None:
    manifest_bytes = _read_small(source, layout.MANIFEST, caps.max_manifest_bytes, result, ProblemKind.MANIFEST_MISSING)
    manifest: Manifest | None = None
    if manifest_bytes is not None:
        try:
            manifest = Manifest.parse(manifest_bytes)
            result.run_id = manifest.run_id
        except ManifestError as exc:
            result.add(ProblemKind.MANIFEST_INVALID, layout.MANIFEST, f"unusable manifest: {exc}")

    _check_signature(source, manifest_bytes, manifest, result, trusted_cert, caps)
    if manifest is None:
        return

    listed = {entry.path for entry in manifest.files}
    budget = caps.max_total_bytes
    for entry in sorted(manifest.files, key=lambda e: e.path):
        if entry.path in source.blocked:
            continue
        if entry.path not in source.sizes:
            result.add(ProblemKind.MISSING_FILE, entry.path, "listed in the manifest, absent from the pack")
            continue
        actual = source.sizes[entry.path]
        if actual != entry.size:
            result.add(ProblemKind.SIZE_MISMATCH, entry.path, f"{actual} bytes, the manifest says {entry.size}")
            continue
        if entry.size > budget:
            result.add(ProblemKind.TOO_LARGE, entry.path, "not hashed: the size budget for this pack is spent")
            continue
        budget -= entry.size
        digest = _hash_member(source, entry.path, entry.size, result)
        if digest is None:
            continue
        if digest != entry.sha256:
            result.add(ProblemKind.HASH_MISMATCH, entry.path, "SHA-256 differs from the manifest (content changed)")
            continue
        result.files_checked += 1

    excluded = {e.get("path", "") for e in manifest.excluded} if honour_excluded else set()
    for name in sorted(source.sizes):
        if name in listed or name in (layout.MANIFEST, layout.SIGNATURE) or name in excluded:
            continue
        if name in source.blocked:
            continue
        result.add(ProblemKind.EXTRA_FILE, name, "present in the pack but not in the manifest")


def _read_small(source: _Source, name: str, cap: int, result: PackVerification, missing: ProblemKind) -> bytes | None:
    if name in source.blocked:
        return None
    if name not in source.sizes:
        result.add(missing, name, "missing from the pack")
        return None
    if source.sizes[name] > cap:
        result.add(ProblemKind.TOO_LARGE, name, f"{source.sizes[name]} bytes (limit {cap})")
        return None
    try:
        with source.open(name) as handle:
            data = handle.read(cap + 1)
    except Exception as exc:  # zipfile raises many kinds on damaged members
        result.add(ProblemKind.UNREADABLE, name, f"cannot be read: {type(exc).__name__}: {exc}")
        return None
    if len(data) > cap:
        result.add(ProblemKind.TOO_LARGE, name, f"larger than declared (limit {cap})")
        return None
    return data


def _hash_member(source: _Source, name: str, size: int, result: PackVerification) -> str | None:
    digest = hashlib.sha256()
    read = 0
    try:
        with source.open(name) as handle:
            for chunk in _chunks(handle, size + 1):
                digest.update(chunk)
                read += len(chunk)
    except Exception as exc:  # CRC errors, truncated data, bad compression...
        kind = ProblemKind.BROKEN_ZIP if isinstance(source, _ZipSource) else ProblemKind.UNREADABLE
        result.add(kind, name, f"cannot be read: {type(exc).__name__}: {exc}")
        return None
    if read != size:
        result.add(ProblemKind.SIZE_MISMATCH, name, f"{read} bytes read, {size} expected")
        return None
    return digest.hexdigest()


def _chunks(handle: IO[bytes], limit: int) -> Iterator[bytes]:
    left = limit
    while left > 0:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _check_signature(
    source: _Source,
    manifest_bytes: bytes | None,
    manifest: Manifest | None,
    result: PackVerification,
    trusted_cert: Path | None,
    caps: Limits,
) -> None:
    anchors: list[x509.Certificate] = []
    if trusted_cert is not None:
        try:
            anchors = load_certificates(trusted_cert)
        except SigningError as exc:
            result.add(ProblemKind.TRUST_UNREADABLE, str(trusted_cert), str(exc))
    signature = _read_small(source, layout.SIGNATURE, caps.max_signature_bytes, result, ProblemKind.SIGNATURE_MISSING)
    if signature is None or manifest_bytes is None:
        return
    check = verify_detached(signature, manifest_bytes, anchors)
    result.signer = check.signer
    if not check.readable:
        result.add(ProblemKind.SIGNATURE_INVALID, layout.SIGNATURE, "; ".join(check.messages) or "unreadable")
        return
    if not check.digest_ok:
        result.add(
            ProblemKind.DIGEST_MISMATCH,
            layout.MANIFEST,
            "manifest.json is not what manifest.sig signed (messageDigest mismatch)",
        )
    if not check.signature_ok:
        result.add(ProblemKind.SIGNATURE_INVALID, layout.SIGNATURE, "the signature does not verify")
    if not check.signing_time_ok:
        result.add(
            ProblemKind.SIGNER_UNVERIFIED,
            layout.SIGNATURE,
            "the signing time is outside the signer certificate's validity",
            Severity.WARNING,
        )
    subject = (check.signer or {}).get("subject", "?")
    if anchors:
        if not check.trusted:
            result.add(ProblemKind.SIGNER_UNTRUSTED, layout.SIGNATURE, f"signer {subject} is not trusted")
    elif check.generated:
        result.add(
            ProblemKind.SIGNER_GENERATED,
            layout.SIGNATURE,
            "signed by a key the harness generated: proves integrity since signing, not who signed",
            Severity.WARNING,
        )
    else:
        result.add(
            ProblemKind.SIGNER_UNVERIFIED,
            layout.SIGNATURE,
            f"signer {subject} not checked against a trusted certificate (pass one to check it)",
            Severity.WARNING,
        )
    if manifest is not None and check.signer is not None:
        claimed = manifest.signer.get("sha256")
        if claimed and claimed != check.signer.get("sha256"):
            result.add(
                ProblemKind.SIGNER_MISMATCH, layout.MANIFEST, "the manifest names another signer than the signature's"
            )
        _check_signer_pem(source, check.certificate, result)


def _check_signer_pem(source: _Source, certificate: x509.Certificate | None, result: PackVerification) -> None:
    """``signer.pem``, when present, must start with the certificate that signed."""
    if certificate is None or layout.SIGNER_CERT not in source.sizes or layout.SIGNER_CERT in source.blocked:
        return
    if source.sizes[layout.SIGNER_CERT] > 1 << 20:
        return
    try:
        with source.open(layout.SIGNER_CERT) as handle:
            first = x509.load_pem_x509_certificates(handle.read((1 << 20) + 1))[0]
    except Exception:  # reported by the hash check if it was altered
        result.add(ProblemKind.SIGNER_MISMATCH, layout.SIGNER_CERT, "not a readable PEM certificate")
        return
    if first != certificate:
        result.add(ProblemKind.SIGNER_MISMATCH, layout.SIGNER_CERT, "is not the certificate that signed the manifest")
