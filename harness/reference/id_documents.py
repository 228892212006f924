"""Copies of patients' identity documents, kept encrypted at rest and deleted 5 years after the last activity.

Storage: each copy is one file ``<db folder>/id-documents/<document id>.bin`` holding
``nonce (12 bytes) || AES-256-GCM ciphertext and tag`` (``cryptography``'s AESGCM, a fresh
random 96-bit nonce per copy, ``"<patient id>/<document id>"`` as associated data). The
SQLite index (table ``id_documents``) keeps only the ids, the media type, when the copy was
stored, the scheme and the file name: no plaintext in the database, the file names or the logs.

Key: 32 random bytes in ``<db folder>/keys/id-documents.key`` (owner-only), made on first use.
That folder sits next to what ``GET /storage/raw`` dumps (the database file and its WAL, and
the files of ``id-documents/``), never inside it, so the key is not in the dump.

Last activity of a patient: the latest of the identity's creation, its last identity change
(traits or status: the record's ``updated`` time), a document produced or imported for the
patient, an activity recorded through ``POST /patients/{id}/activities``, and the storing of a
copy; all by the practice clock. The retention job deletes every copy whose patient's last
activity plus 5 calendar years (29 February → 28 February) is before now, the file included.

Defects (:mod:`harness.reference.defects`): ``id-doc-plaintext`` (files hold the plaintext),
``id-doc-fixed-nonce`` (an all-zero nonce and no associated data: the same document gives the
same bytes), ``id-doc-delete-after-creation`` (5 years from the copy's storing),
``id-doc-never-delete`` (the job deletes nothing), ``id-doc-delete-index-only`` (the index
row goes, the ciphertext file stays).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness.reference.identity import IdentityService
from harness.reference.model import InvalidInput, decoded_base64
from harness.reference.store import UnknownDocument

MAX_CONTENT_BYTES = 10 * 1024 * 1024
MAX_BODY_BYTES = MAX_CONTENT_BYTES * 4 // 3 + 64 * 1024
"""A ``POST /patients/{id}/id-documents`` body: the base64 of the largest copy, and some room."""
MAX_RAW_BYTES = 256 * 1024 * 1024
RETENTION_YEARS = 5
ACTIVITY_KINDS = ("consultation", "document", "identity")
NONCE_BYTES = 12
FIXED_NONCE = bytes(NONCE_BYTES)
FOLDER, KEY_FOLDER, KEY_FILE = "id-documents", "keys", "id-documents.key"
SCHEME_GCM, SCHEME_FIXED, SCHEME_PLAIN = "aes-256-gcm", "aes-256-gcm-fixed-nonce", "plain"
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$")


class StorageTooLarge(RuntimeError):
    """The raw storage is larger than the API hands out (507)."""


@dataclass(frozen=True, slots=True)
class RawItem:
    """A file of the practice's storage, as it is on disk."""

    name: str
    content: bytes

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "content_base64": base64.b64encode(self.content).decode("ascii")}


class IdDocumentService:
    """The practice's store of identity-document copies, and its retention job."""

    def __init__(self, identities: IdentityService) -> None:
        self.identities = identities
        self.store = identities.store
        root = self.store.path.parent
        self.folder = root / FOLDER
        self.key_path = root / KEY_FOLDER / KEY_FILE
        self._lock = threading.Lock()
        self.store.document_listeners.append(lambda patient_id: self.note_activity(patient_id, "document"))

    def has(self, defect: str) -> bool:
        return defect in self.identities.defects

    # -- copies ------------------------------------------------------------------------------------
    def store_copy(self, patient_id: str, body: Any) -> str:
        """Encrypt and keep the copy a ``POST /patients/{id}/id-documents`` body carries; its id."""
        self.identities.get(patient_id)
        content, media_type = _copy_request(body)
        document_id = secrets.token_hex(16)
        if self.has("id-doc-plaintext"):
            scheme, stored = SCHEME_PLAIN, content
        elif self.has("id-doc-fixed-nonce"):
            scheme, stored = SCHEME_FIXED, FIXED_NONCE + AESGCM(self._key()).encrypt(FIXED_NONCE, content, None)
        else:
            nonce = os.urandom(NONCE_BYTES)
            aad = _associated_data(patient_id, document_id)
            scheme, stored = SCHEME_GCM, nonce + AESGCM(self._key()).encrypt(nonce, content, aad)
        file_name = f"{document_id}.bin"
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_private(self.folder / file_name, stored)
        now = self.identities.clock.iso()
        self.store.add_id_document(
            {
                "document_id": document_id,
                "patient_id": patient_id,
                "media_type": media_type,
                "stored_at": now,
                "scheme": scheme,
                "file": file_name,
            }
        )
        self.store.note_activity(patient_id, now, "id-document")
        return document_id

    def list_copies(self, patient_id: str) -> list[dict[str, str]]:
        self.identities.get(patient_id)
        return [
            {"document_id": r["document_id"], "media_type": r["media_type"], "stored_at": r["stored_at"]}
            for r in self.store.list_id_documents(patient_id)
        ]

    def read_copy(self, patient_id: str, document_id: str) -> dict[str, str]:
        """The decrypted copy and its media type; UnknownDocument when the patient has no such copy (any more)."""
        self.identities.get(patient_id)
        record = next((r for r in self.store.list_id_documents(patient_id) if r["document_id"] == document_id), None)
        if record is None:
            raise UnknownDocument(f"no identity-document copy {document_id!r} for {patient_id!r}")
        try:
            stored = (self.folder / record["file"]).read_bytes()
        except FileNotFoundError:
            raise UnknownDocument(f"the identity-document copy {document_id!r} is gone") from None
        content = self._decrypt(record, stored)
        return {"content_base64": base64.b64encode(content).decode("ascii"), "media_type": record["media_type"]}

    def _decrypt(self, record: dict[str, str], stored: bytes) -> bytes:
        if record["scheme"] == SCHEME_PLAIN:
            return stored
        nonce, sealed = stored[:NONCE_BYTES], stored[NONCE_BYTES:]
        fixed = record["scheme"] == SCHEME_FIXED
        aad = None if fixed else _associated_data(record["patient_id"], record["document_id"])
        return AESGCM(self._key()).decrypt(nonce, sealed, aad)

    def _key(self) -> bytes:
        """The AES-256 key, made (owner-only) the first time it is needed."""
        with self._lock:
            if not self.key_path.is_file():
                self.key_path.parent.mkdir(parents=True, exist_ok=True)
                _write_private(self.key_path, AESGCM.generate_key(bit_length=256))
            key = self.key_path.read_bytes()
        if len(key) != 32:
            raise RuntimeError(f"the identity-document key {self.key_path} is not 32 bytes")
        return key

    # -- activity and retention --------------------------------------------------------------------
    def record_activity(self, patient_id: str, body: Any) -> None:
        """A ``POST /patients/{id}/activities`` body: something done for the patient now."""
        self.identities.get(patient_id)
        kind = body.get("kind") if isinstance(body, dict) else None
        if kind not in ACTIVITY_KINDS:
            raise InvalidInput(f"the body must be an object with 'kind' one of {', '.join(ACTIVITY_KINDS)}")
        self.note_activity(patient_id, str(kind))

    def note_activity(self, patient_id: str, kind: str) -> None:
        self.store.note_activity(patient_id, self.identities.clock.iso(), kind)

    def last_activity(self, patient_id: str) -> datetime | None:
        """The latest of the identity's creation and last change and the activities recorded for it."""
        patient = self.store.get_patient(patient_id)
        moments = [patient.created, patient.updated] if patient is not None else []
        moments.append(self.store.last_activity(patient_id) or "")
        parsed = [_instant(m) for m in moments if m]
        return max(parsed) if parsed else None

    def run_maintenance(self) -> list[str]:
        """Delete every copy past its retention by the practice clock; the ids deleted."""
        if self.has("id-doc-never-delete"):
            return []
        now = self.identities.clock.now()
        expired: list[dict[str, str]] = []
        for record in self.store.list_id_documents():
            start = None if self.has("id-doc-delete-after-creation") else self.last_activity(record["patient_id"])
            start = start or _instant(record["stored_at"])
            if now > add_years(start, RETENTION_YEARS):
                expired.append(record)
        if not expired:
            return []
        if not self.has("id-doc-delete-index-only"):
            for record in expired:
                (self.folder / record["file"]).unlink(missing_ok=True)
        deleted = [r["document_id"] for r in expired]
        self.store.delete_id_documents(deleted)
        return deleted

    def reset(self) -> None:
        """Remove every copy's file (``POST /reset``; the store forgets the index)."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.is_file():
                    path.unlink()

    # -- raw storage -------------------------------------------------------------------------------
    def raw_storage(self) -> list[RawItem]:
        """The database file(s) and every file of the copy store, as bytes on disk; StorageTooLarge above 256 MiB."""
        root = self.store.path.parent
        paths = self.store.raw_files()
        if self.folder.is_dir():
            paths += sorted(p for p in self.folder.iterdir() if p.is_file())
        if sum(p.stat().st_size for p in paths) > MAX_RAW_BYTES:
            raise StorageTooLarge(f"the storage is larger than {MAX_RAW_BYTES // (1024 * 1024)} MiB")
        return [RawItem(p.relative_to(root).as_posix(), p.read_bytes()) for p in paths]


def add_years(moment: datetime, years: int) -> datetime:
    """``moment`` plus calendar years; 29 February becomes 28 February in a common year."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def _copy_request(body: Any) -> tuple[bytes, str]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be an object with 'content_base64' and 'media_type'")
    encoded, media_type = body.get("content_base64"), body.get("media_type")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.match(media_type):
        raise InvalidInput("'media_type' must be a media type (type/subtype)")
    content = decoded_base64(encoded, "content_base64", MAX_CONTENT_BYTES)
    return content, media_type.lower()


def _associated_data(patient_id: str, document_id: str) -> bytes:
    return f"{patient_id}/{document_id}".encode()


def _instant(iso: str) -> datetime:
    value = datetime.fromisoformat(iso)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
