"""The practice's SQLite database: identities and INS history, call log, work list, documents, DMP, MSSanté, users.

It keeps the settings too, the agenda (appointments), the index of the identity-document copies (their encrypted
bytes are files, :mod:`harness.reference.id_documents`) and each patient's last activity.

The reference system keeps its state in one file (``--db``) so a run can be inspected
afterwards and a restarted process finds its configuration again. One connection,
guarded by a lock, is shared by the HTTP and MLLP threads; every method is one short
transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.reference.model import ExternalId, Ins, InsHistoryEntry, Patient, Status, Traits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    match_key TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS patients_match ON patients(match_key);
CREATE TABLE IF NOT EXISTS ins_history (
    patient_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    matricule TEXT NOT NULL,
    oid TEXT NOT NULL,
    start TEXT NOT NULL DEFAULT '',
    "end" TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (patient_id, position)
);
CREATE TABLE IF NOT EXISTS traces (seq INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS worklist (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL,
    document_id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    cda BLOB NOT NULL,
    stylesheet BLOB
);
CREATE INDEX IF NOT EXISTS documents_patient ON documents(patient_id);
CREATE TABLE IF NOT EXISTS dmp_documents (
    set_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dmp_consent (patient_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mss_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    data TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS mss_messages_id ON mss_messages(message_id, direction);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    login TEXT UNIQUE,
    subject_name_id TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS users_subject ON users(subject_name_id);
CREATE TABLE IF NOT EXISTS id_documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    scheme TEXT NOT NULL,
    file TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS id_documents_patient ON id_documents(patient_id);
CREATE TABLE IF NOT EXISTS patient_activity (patient_id TEXT PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appointments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL,
    start TEXT NOT NULL,
    "end" TEXT NOT NULL,
    summary TEXT NOT NULL,
    uid TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS appointments_patient ON appointments(patient_id);
"""


class DuplicateDocument(ValueError):
    """A document with this id is already stored."""


class UnknownDocument(LookupError):
    """No document with this id for this patient (the API answers 404)."""


class DuplicateLogin(ValueError):
    """A local account with this login already exists."""


class DuplicateAppointment(ValueError):
    """An appointment with this iCalendar UID is already in the agenda."""


APPOINTMENT_FIELDS = ("id", "patient_id", "start", "end", "summary", "uid", "created")
"""The columns of an appointment, in the order :meth:`Store.list_appointments` gives them."""


class Store:
    """Everything the practice remembers, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.document_listeners: list[Callable[[str], None]] = []
        """Called with the patient id after a document is stored (produced or imported)."""

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- settings ----------------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value))

    # -- identities --------------------------------------------------------------------
    def create_patient(self, build: Callable[[str], Patient]) -> Patient:
        """Allocate the next identifier (``P000001``…), build the identity with it and save it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._db.execute("INSERT INTO patients(id) VALUES (NULL)").lastrowid
                patient = build(f"P{seq:06d}")
                self._write_patient(patient, seq)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return patient

    def save_patient(self, patient: Patient) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._write_patient(patient, None)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _write_patient(self, patient: Patient, seq: int | None) -> None:
        data = json.dumps(_patient_record(patient), ensure_ascii=False)
        if seq is not None:
            self._db.execute(
                "UPDATE patients SET id = ?, match_key = ?, data = ? WHERE seq = ?",
                (patient.id, patient.traits.match_key(), data, seq),
            )
        else:
            self._db.execute(
                "UPDATE patients SET match_key = ?, data = ? WHERE id = ?",
                (patient.traits.match_key(), data, patient.id),
            )
        self._db.execute("DELETE FROM ins_history WHERE patient_id = ?", (patient.id,))
        self._db.executemany(
            'INSERT INTO ins_history(patient_id, position, matricule, oid, start, "end") VALUES (?, ?, ?, ?, ?, ?)',
            [(patient.id, i, h.matricule, h.oid, h.start, h.end) for i, h in enumerate(patient.ins_history)],
        )

    def get_patient(self, patient_id: str) -> Patient | None:
        with self._lock:
            row = self._db.execute("SELECT id, data FROM patients WHERE id = ?", (patient_id,)).fetchone()
            return None if row is None else self._read_patient(str(row[0]), str(row[1]))

    def list_patients(self) -> list[Patient]:
        with self._lock:
            rows = self._db.execute("SELECT id, data FROM patients WHERE id IS NOT NULL ORDER BY seq").fetchall()
            return [self._read_patient(str(r[0]), str(r[1])) for r in rows]

    def find_by_match_key(self, key: str) -> Patient | None:
        """The oldest identity with these normalised strict traits, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, data FROM patients WHERE match_key = ? AND id IS NOT NULL ORDER BY seq LIMIT 1", (key,)
            ).fetchone()
            return None if row is None else self._read_patient(str(row[0]), str(row[1]))

    def _read_patient(self, patient_id: str, data: str) -> Patient:
        history = self._db.execute(
            'SELECT matricule, oid, start, "end" FROM ins_history WHERE patient_id = ? ORDER BY position',
            (patient_id,),
        ).fetchall()
        return _patient_from_record(patient_id, json.loads(data), [InsHistoryEntry(*map(str, h)) for h in history])

    # -- call log ----------------------------------------------------------------------
    def add_trace(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO traces(data) VALUES (?)", (json.dumps(entry, ensure_ascii=False),))

    def list_traces(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM traces ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- work list ---------------------------------------------------------------------
    def add_work_item(self, patient_id: str, reason: str, created: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO worklist(patient_id, reason, created, data) VALUES (?, ?, ?, ?)",
                (patient_id, reason, created, json.dumps(detail, ensure_ascii=False)),
            )

    def list_work_items(self) -> list[dict[str, Any]]:
        with self._lock:
            query = "SELECT seq, patient_id, reason, created, data FROM worklist ORDER BY seq"
            rows = self._db.execute(query).fetchall()
        return [
            {"id": f"W{r[0]:06d}", "patient_id": r[1], "reason": r[2], "created": r[3], "detail": json.loads(r[4])}
            for r in rows
        ]

    # -- documents ---------------------------------------------------------------------
    def add_document(
        self, patient_id: str, document_id: str, record: dict[str, Any], cda: bytes, stylesheet: bytes | None
    ) -> None:
        """Store a document with what describes it; raises DuplicateDocument for a known id."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO documents(patient_id, document_id, data, cda, stylesheet) VALUES (?, ?, ?, ?, ?)",
                    (patient_id, document_id, json.dumps(record, ensure_ascii=False), cda, stylesheet),
                )
        except sqlite3.IntegrityError:
            raise DuplicateDocument(f"document {document_id!r} is already stored") from None
        for listener in self.document_listeners:
            listener(patient_id)

    def list_documents(self, patient_id: str) -> list[dict[str, Any]]:
        """The patient's documents in the order they were stored, each with what its stylesheet column holds."""
        with self._lock:
            query = "SELECT document_id, data, stylesheet FROM documents WHERE patient_id = ? ORDER BY seq"
            rows = self._db.execute(query, (patient_id,)).fetchall()
        out = []
        for document_id, data, stylesheet in rows:
            record = {"document_id": document_id, **json.loads(data)}
            record["has_stylesheet"] = stylesheet is not None
            record["stylesheet_sha256"] = hashlib.sha256(stylesheet).hexdigest() if stylesheet is not None else ""
            out.append(record)
        return out

    def document_content(self, document_id: str) -> tuple[bytes, bytes | None] | None:
        """The stored CDA and stylesheet of a document, or None."""
        with self._lock:
            row = self._db.execute("SELECT cda, stylesheet FROM documents WHERE document_id = ?", (document_id,))
            found = row.fetchone()
        return None if found is None else (bytes(found[0]), None if found[1] is None else bytes(found[1]))

    def find_document(self, patient_id: str, document_id: str) -> tuple[dict[str, Any], bytes] | None:
        """What describes one of the patient's documents, and its CDA; None if the patient has no such document."""
        with self._lock:
            query = "SELECT data, cda FROM documents WHERE patient_id = ? AND document_id = ?"
            row = self._db.execute(query, (patient_id, document_id)).fetchone()
        if row is None:
            return None
        return {"document_id": document_id, **json.loads(row[0])}, bytes(row[1])

    # -- DMP -----------------------------------------------------------------------------
    def dmp_document(self, set_id: str) -> dict[str, Any] | None:
        """The DMP state of a document (all its versions share the setId): validation, visibility, entries sent."""
        with self._lock:
            row = self._db.execute("SELECT data FROM dmp_documents WHERE set_id = ?", (set_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_dmp_document(self, set_id: str, patient_id: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO dmp_documents(set_id, patient_id, data) VALUES (?, ?, ?)",
                (set_id, patient_id, json.dumps(state, ensure_ascii=False)),
            )

    def dmp_consent(self, patient_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM dmp_consent WHERE patient_id = ?", (patient_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_dmp_consent(self, patient_id: str, consent: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO dmp_consent(patient_id, data) VALUES (?, ?)",
                (patient_id, json.dumps(consent, ensure_ascii=False)),
            )

    # -- MSSanté --------------------------------------------------------------------------
    def add_mss_message(self, message_id: str, direction: str, data: dict[str, Any], raw: bytes) -> None:
        """Keep a message the practice sent (``out``) or read (``in``), with what it did with it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO mss_messages(message_id, direction, data, raw) VALUES (?, ?, ?, ?)",
                (message_id, direction, json.dumps(data, ensure_ascii=False), raw),
            )

    def find_mss_message(self, message_id: str, direction: str) -> tuple[dict[str, Any], bytes] | None:
        """The latest message kept with this Message-ID in this direction, or None."""
        with self._lock:
            query = "SELECT data, raw FROM mss_messages WHERE message_id = ? AND direction = ? ORDER BY seq DESC"
            row = self._db.execute(query, (message_id, direction)).fetchone()
        return None if row is None else (dict(json.loads(row[0])), bytes(row[1]))

    def list_mss_messages(self, direction: str) -> list[dict[str, Any]]:
        with self._lock:
            query = "SELECT message_id, data FROM mss_messages WHERE direction = ? ORDER BY seq"
            rows = self._db.execute(query, (direction,)).fetchall()
        return [{"message_id": r[0], **json.loads(r[1])} for r in rows]

    # -- users -----------------------------------------------------------------------------
    def add_user(self, login: str | None, subject_name_id: str, data: dict[str, Any]) -> str:
        """Store a local account (``login`` None for one created by a PSC login); its id (``U000001``…).

        Raises DuplicateLogin when the login is taken.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._db.execute(
                    "INSERT INTO users(login, subject_name_id, data) VALUES (?, ?, ?)",
                    (login, subject_name_id, json.dumps(data, ensure_ascii=False)),
                ).lastrowid
                user_id = f"U{seq:06d}"
                self._db.execute("UPDATE users SET id = ? WHERE seq = ?", (user_id, seq))
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise DuplicateLogin(f"the login {login!r} is already taken") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return user_id

    def find_user_by_login(self, login: str) -> dict[str, Any] | None:
        """The account with this login (``id``, ``login``, ``subject_name_id`` and its data), or None."""
        return self._user("login = ?", login)

    def find_user_by_subject(self, subject_name_id: str) -> dict[str, Any] | None:
        """The oldest account whose stored IDNPS is ``subject_name_id``, or None."""
        return self._user("subject_name_id = ? AND subject_name_id != ''", subject_name_id)

    def _user(self, condition: str, value: str) -> dict[str, Any] | None:
        query = f"SELECT id, login, subject_name_id, data FROM users WHERE {condition} ORDER BY seq LIMIT 1"
        with self._lock:
            row = self._db.execute(query, (value,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[3]), "id": row[0], "login": row[1] or "", "subject_name_id": row[2]}

    # -- identity-document copies and patient activity -----------------------------------
    def add_id_document(self, record: dict[str, str]) -> None:
        """Index a copy: ``document_id``, ``patient_id``, ``media_type``, ``stored_at``, ``scheme``, ``file``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO id_documents(document_id, patient_id, media_type, stored_at, scheme, file)"
                " VALUES (:document_id, :patient_id, :media_type, :stored_at, :scheme, :file)",
                record,
            )

    def list_id_documents(self, patient_id: str | None = None) -> list[dict[str, str]]:
        """The indexed copies (of one patient, or all), in the order they were stored."""
        query = "SELECT document_id, patient_id, media_type, stored_at, scheme, file FROM id_documents"
        with self._lock:
            if patient_id is None:
                rows = self._db.execute(f"{query} ORDER BY seq").fetchall()
            else:
                rows = self._db.execute(f"{query} WHERE patient_id = ? ORDER BY seq", (patient_id,)).fetchall()
        names = ("document_id", "patient_id", "media_type", "stored_at", "scheme", "file")
        return [dict(zip(names, map(str, row), strict=True)) for row in rows]

    def delete_id_documents(self, document_ids: list[str]) -> None:
        """Remove these copies from the index, then VACUUM so the freed pages leave the file."""
        with self._lock:
            self._db.executemany("DELETE FROM id_documents WHERE document_id = ?", [(d,) for d in document_ids])
            self._db.execute("VACUUM")

    def note_activity(self, patient_id: str, at: str, kind: str) -> None:
        """Record something done for the patient at ``at`` (ISO 8601); the latest is kept."""
        with self._lock:
            row = self._db.execute("SELECT at FROM patient_activity WHERE patient_id = ?", (patient_id,)).fetchone()
            if row is None or _instant(str(row[0])) <= _instant(at):
                self._db.execute(
                    "INSERT OR REPLACE INTO patient_activity(patient_id, at, kind) VALUES (?, ?, ?)",
                    (patient_id, at, kind),
                )

    def last_activity(self, patient_id: str) -> str | None:
        """The latest activity recorded for the patient (ISO 8601), or None."""
        with self._lock:
            row = self._db.execute("SELECT at FROM patient_activity WHERE patient_id = ?", (patient_id,)).fetchone()
        return None if row is None else str(row[0])

    # -- agenda ---------------------------------------------------------------------------
    def add_appointment(self, record: dict[str, str]) -> None:
        """Add an appointment (the keys of :data:`APPOINTMENT_FIELDS`); DuplicateAppointment for a known UID."""
        try:
            with self._lock:
                self._db.execute(
                    'INSERT INTO appointments(id, patient_id, start, "end", summary, uid, created)'
                    " VALUES (:id, :patient_id, :start, :end, :summary, :uid, :created)",
                    record,
                )
        except sqlite3.IntegrityError:
            raise DuplicateAppointment(f"appointment {record['uid']!r} is already in the agenda") from None

    def list_appointments(self, patient_id: str) -> list[dict[str, str]]:
        """The patient's appointments, in the order they were added."""
        query = 'SELECT id, patient_id, start, "end", summary, uid, created FROM appointments WHERE patient_id = ?'
        with self._lock:
            rows = self._db.execute(f"{query} ORDER BY seq", (patient_id,)).fetchall()
        return [dict(zip(APPOINTMENT_FIELDS, map(str, row), strict=True)) for row in rows]

    def raw_files(self) -> list[Path]:
        """The database file and its WAL, after a checkpoint that writes the WAL into the database."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        candidates = (self.path, self.path.with_name(self.path.name + "-wal"))
        return [path for path in candidates if path.is_file()]

    # -- reset -------------------------------------------------------------------------
    def wipe_test_data(self) -> None:
        """Forget identities, INS history, call log, work list, documents, DMP, MSSanté state, users, ID-document
        copies (the index; the service removes the files), activities and the agenda; keep settings."""
        tables = ("patients", "ins_history", "traces", "worklist", "documents", "dmp_documents", "dmp_consent")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in (*tables, "mss_messages", "users", "id_documents", "patient_activity", "appointments"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("COMMIT")


def _instant(iso: str) -> datetime:
    """An ISO 8601 instant, naive values taken as UTC."""
    value = datetime.fromisoformat(iso)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _patient_record(patient: Patient) -> dict[str, Any]:
    record = patient.to_json()
    del record["id"], record["ins_history"]
    return record


def _patient_from_record(patient_id: str, data: dict[str, Any], history: list[InsHistoryEntry]) -> Patient:
    t = data["traits"]
    ins = data.get("ins")
    return Patient(
        id=patient_id,
        traits=Traits(
            birth_name=t["birth_name"],
            first_names=tuple(t["first_names"]),
            sex=t["sex"],
            birth_date=t["birth_date"],
            birthplace_cog=t.get("birthplace_cog", ""),
            used_name=t.get("used_name", ""),
            used_first_name=t.get("used_first_name", ""),
        ),
        status=Status(data["status"]),
        ins=Ins(ins["matricule"], ins["oid"]) if ins else None,
        identity_document=data.get("identity_document", ""),
        origin=data.get("origin", "local"),
        ins_history=tuple(history),
        external_ids=tuple(
            ExternalId(e["value"], e["authority"], e["oid"], e["type"]) for e in data.get("external_ids", [])
        ),
        created=data.get("created", ""),
        updated=data.get("updated", ""),
    )
