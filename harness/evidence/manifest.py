"""The signed manifest that makes a run folder tamper-evident, and finalising a run.

``manifest.json`` lists every file of the run folder (except itself and its
signature) with its size and SHA-256, plus the run id, the harness version and
who signed it; ``manifest.sig`` is a detached CMS signature over its exact bytes
(:mod:`harness.evidence.signing`). Change one byte anywhere and verification
names the file.

:func:`finalize_run` is the last step of a run: it rebuilds everything derived
from the journal (matrix, ``index.html``, ``run.json``), then writes and signs
the manifest. It is idempotent: finalising an unchanged folder again produces
the same bytes and keeps the existing signature, so the pack stays identical.

Left out of the manifest, and listed under ``excluded`` with the reason: files
holding a PEM private key (a pack must never carry one), symbolic links
(nothing outside the folder is packed), names that are unsafe in a zip, and
paths matching the caller's ``exclude`` patterns (a SUT's scratch space).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from harness.catalog.model import Catalog
from harness.evidence import layout
from harness.evidence.html import render_index
from harness.evidence.journal import TMP_SUFFIX, read_journal, read_run, run_json_bytes, write_atomic
from harness.evidence.matrix import build_rows, write_matrix
from harness.evidence.signing import (
    Signer,
    SignerSpec,
    describe_certificate,
    generate_signer,
    is_generated,
    load_certificates,
    load_signer,
    sign_detached,
    verify_detached,
)

MANIFEST_FORMAT = "segur-harness-manifest/1"
ALGORITHM = "sha256"
CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----")
_OVERLAP = 64


class ManifestError(ValueError):
    """``manifest.json`` is not a manifest this harness can trust to read."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file of the run folder: path relative to it (POSIX), size in bytes, SHA-256 hex."""

    path: str
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """What ``manifest.json`` holds."""

    run_id: str
    harness_version: str
    signer: dict[str, Any]
    files: list[ManifestEntry]
    excluded: list[dict[str, str]] = field(default_factory=list)
    format: str = MANIFEST_FORMAT

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, files sorted by path, UTF-8, final newline)."""
        data = {
            "format": self.format,
            "algorithm": ALGORITHM,
            "run_id": self.run_id,
            "harness_version": self.harness_version,
            "signer": self.signer,
            "files": [
                {"path": e.path, "size": e.size, "sha256": e.sha256} for e in sorted(self.files, key=lambda e: e.path)
            ],
            "excluded": sorted(self.excluded, key=lambda e: e.get("path", "")),
        }
        return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Read and validate ``manifest.json``; every path must be safe before anyone opens it.

        Raises:
            ManifestError: saying what is wrong.
        """
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ManifestError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ManifestError("not a JSON object")
        if raw.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"unknown format {raw.get('format')!r}")
        if raw.get("algorithm", ALGORITHM) != ALGORITHM:
            raise ManifestError(f"unsupported algorithm {raw.get('algorithm')!r}")
        files = raw.get("files")
        if not isinstance(files, list):
            raise ManifestError("'files' is not a list")
        entries: list[ManifestEntry] = []
        seen: set[str] = set()
        for index, item in enumerate(files):
            if not isinstance(item, dict):
                raise ManifestError(f"files[{index}] is not an object")
            path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
            if not isinstance(path, str) or not layout.is_safe_relative(path):
                raise ManifestError(f"files[{index}]: unsafe or missing path {path!r}")
            if path in (layout.MANIFEST, layout.SIGNATURE):
                raise ManifestError(f"files[{index}]: the manifest cannot list {path}")
            if path in seen:
                raise ManifestError(f"files[{index}]: {path} listed twice")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ManifestError(f"files[{index}] ({path}): bad size {size!r}")
            if not isinstance(sha, str) or not _HEX64.match(sha):
                raise ManifestError(f"files[{index}] ({path}): bad sha256 {sha!r}")
            seen.add(path)
            entries.append(ManifestEntry(path, size, sha))
        excluded_raw = raw.get("excluded", [])
        excluded = (
            [{str(k): str(v) for k, v in e.items()} for e in excluded_raw if isinstance(e, dict)]
            if isinstance(excluded_raw, list)
            else []
        )
        signer = raw.get("signer")
        return cls(
            run_id=str(raw.get("run_id", "")),
            harness_version=str(raw.get("harness_version", "")),
            signer=dict(signer) if isinstance(signer, dict) else {},
            files=entries,
            excluded=excluded,
        )


@dataclass(frozen=True, slots=True)
class FileDigest:
    """Size and SHA-256 of a file, and whether it holds a PEM private key."""

    size: int
    sha256: str
    holds_private_key: bool


def digest_file(path: Path, scan_keys: bool = False) -> FileDigest:
    """Stream ``path`` through SHA-256 (bounded memory), optionally looking for PEM private keys."""
    digest = hashlib.sha256()
    size = 0
    found = False
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if scan_keys and not found:
                found = _PRIVATE_KEY.search(tail + chunk) is not None
                tail = chunk[-_OVERLAP:]
    return FileDigest(size, digest.hexdigest(), found)


def scan_run_dir(run_dir: Path, exclude: Sequence[str] = ()) -> tuple[list[ManifestEntry], list[dict[str, str]]]:
    """Every file the manifest must list, and those left out with the reason."""
    entries: list[ManifestEntry] = []
    excluded: list[dict[str, str]] = []
    for directory, dirnames, filenames in os.walk(run_dir, followlinks=False):
        base = Path(directory)
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                excluded.append({"path": _rel(run_dir, base / name), "reason": "symbolic link (not followed)"})
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
        for name in sorted(filenames):
            path = base / name
            rel = _rel(run_dir, path)
            if rel in (layout.MANIFEST, layout.SIGNATURE) or (name.startswith(".") and name.endswith(TMP_SUFFIX)):
                continue
            reason = _exclusion(rel, path, exclude)
            if reason:
                excluded.append({"path": rel, "reason": reason})
                continue
            found = digest_file(path, scan_keys=True)
            if found.holds_private_key:
                excluded.append({"path": rel, "reason": "holds a PEM private key"})
                continue
            entries.append(ManifestEntry(rel, found.size, found.sha256))
    return entries, excluded


def _rel(run_dir: Path, path: Path) -> str:
    return path.relative_to(run_dir).as_posix()


def _exclusion(rel: str, path: Path, exclude: Sequence[str]) -> str:
    if path.is_symlink():
        return "symbolic link (not followed)"
    if not path.is_file():
        return "not a regular file"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    if not layout.is_safe_relative(rel):
        return "file name unsafe in a zip"
    for pattern in exclude:
        if fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, pattern.rstrip("/") + "/*"):
            return f"excluded by pattern {pattern!r}"
    return ""


# -- finalising a run ----------------------------------------------------------------------
def finalize_run(
    run_dir: Path,
    catalog: Catalog,
    signer: Signer | SignerSpec | tuple[Path, Path] | None = None,
    *,
    exclude: Iterable[str] = (),
) -> Path:
    """Rebuild the matrix, ``index.html`` and ``run.json`` from the journal, then sign the manifest.

    Args:
        run_dir: the run folder (its journal must have a ``run-started`` line).
        catalog: the requirements the matrix lists (all of them, with or without verdicts).
        signer: a key and certificate (PEM paths, or a loaded :class:`Signer`);
            None generates a harness signer whose certificate says so.
        exclude: glob patterns of paths (relative to ``run_dir``) to leave out of the manifest.

    Returns:
        The path of ``manifest.json``.

    Raises:
        JournalError: the journal is missing or corrupt.
        SigningError: the given signer cannot be loaded.
    """
    run_dir = Path(run_dir)
    patterns = tuple(exclude)
    contents = read_journal(run_dir)
    run = contents.run or read_run(run_dir)
    moment = run.ended or contents.last_at or run.started
    rows = build_rows(catalog, contents.records)
    write_matrix(run_dir, rows, run, moment)

    def compose(description: dict[str, Any], pem: bytes) -> bytes:
        _write_if_changed(run_dir / layout.SIGNER_CERT, pem)
        run.signer = description
        _write_if_changed(run_dir / layout.RUN, run_json_bytes(run))
        page = render_index(run, catalog, rows, contents.records, moment)
        _write_if_changed(run_dir / layout.INDEX_HTML, page.encode("utf-8"))
        files, excluded = scan_run_dir(run_dir, patterns)
        return Manifest(run.run_id, run.harness_version, description, files, excluded).to_bytes()

    active: Signer | None = None
    if isinstance(signer, Signer):
        active = signer
    elif signer is not None:
        active = load_signer(signer)

    if active is not None:
        manifest = compose(active.describe(), active.pem())
        if not _already_signed(run_dir, manifest, active.certificate.public_bytes(Encoding.DER)):
            _write_signed(run_dir, manifest, active)
        return run_dir / layout.MANIFEST

    previous = _previous_generated(run_dir)
    if previous is not None:
        certificate_pem, certificate_der, description = previous
        manifest = compose(description, certificate_pem)
        if _already_signed(run_dir, manifest, certificate_der):
            return run_dir / layout.MANIFEST
    fresh = generate_signer(moment)
    manifest = compose(fresh.describe(), fresh.pem())
    _write_signed(run_dir, manifest, fresh)
    return run_dir / layout.MANIFEST


def read_manifest(run_dir: Path) -> Manifest:
    """The manifest of a finalised run folder.

    Raises:
        ManifestError: missing or invalid.
    """
    try:
        data = (Path(run_dir) / layout.MANIFEST).read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {layout.MANIFEST}: {exc}") from None
    return Manifest.parse(data)


def _previous_generated(run_dir: Path) -> tuple[bytes, bytes, dict[str, Any]] | None:
    """The harness-generated certificate a previous finalisation left, if that is what is there."""
    path = run_dir / layout.SIGNER_CERT
    if not path.is_file():
        return None
    try:
        certificates = load_certificates(path)
    except ValueError:
        return None
    if len(certificates) != 1 or not is_generated(certificates[0]):
        return None
    certificate = certificates[0]
    return path.read_bytes(), certificate.public_bytes(Encoding.DER), describe_certificate(certificate)


def _already_signed(run_dir: Path, manifest: bytes, certificate_der: bytes) -> bool:
    """True when the folder already holds this manifest, validly signed by this certificate."""
    try:
        if (run_dir / layout.MANIFEST).read_bytes() != manifest:
            return False
        signature = (run_dir / layout.SIGNATURE).read_bytes()
    except OSError:
        return False
    check = verify_detached(signature, manifest)
    return (
        check.valid
        and check.certificate is not None
        and check.certificate.public_bytes(Encoding.DER) == certificate_der
    )


def _write_signed(run_dir: Path, manifest: bytes, signer: Signer) -> None:
    write_atomic(run_dir / layout.MANIFEST, manifest)
    write_atomic(run_dir / layout.SIGNATURE, sign_detached(manifest, signer))


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    write_atomic(path, data)
