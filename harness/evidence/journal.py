"""The run journal: the append-only record every other piece of evidence is rebuilt from.

A conformance run can be killed (a hung SUT, a CI timeout, a laptop lid). The
journal makes sure every scenario that finished before that is kept: each verdict
is written with its exchanges and files, then one JSON line is appended to
``journal.jsonl`` and fsynced. Readers ignore a truncated last line, so a killed
run still yields a matrix, a report and a pack for what it did.

Lines (one JSON object each, ``type`` first)::

    {"type": "run-started",  "at": ..., "journal": 1, "run": {RunInfo}}
    {"type": "run-updated",  "at": ..., "changes": {"sut": {...}}}
    {"type": "verdict",      "at": ..., "folder": "requirements/...", "case": "...", "verdict": {Verdict}}
    {"type": "run-finished", "at": ..., "ended": ...}

``run.json`` and each ``verdict.json`` are convenience copies for people
browsing the folder; the journal wins when they disagree.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import json
import os
import platform
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from harness import __version__
from harness.evidence import layout
from harness.evidence.redact import redact_exchange
from harness.simulators.recording import Exchange
from harness.verdicts import Artefact, Verdict

JOURNAL_FORMAT = 1
TMP_SUFFIX = ".evidence-tmp"
"""Suffix of files being written atomically; never part of a manifest."""


class JournalError(RuntimeError):
    """The journal cannot be used: no run started, a corrupt line, a second start."""


@dataclass(slots=True)
class RunInfo:
    """The facts of one conformance run, as ``run.json`` records them.

    Attributes:
        run_id: the run's id (the run folder's name by convention).
        sut: who was tested: ``publisher``, ``software``, ``version`` and the
            ``adapter`` used (control-API URL, ``reference``, ``python:...``).
        dsr: the DSR whose catalogue applied (``LGC``).
        profiles: the ANS profiles claimed.
        catalog_version: content hash of the catalogue data.
        started, ended: UTC timestamps; ``ended`` is None until the run finishes.
        harness_version: version of this harness.
        host: hostname, platform, python (filled by :meth:`RunJournal.start` when empty).
        command: the command line that started the run.
        signer: who signed the manifest (set when the run is finalised).
        rules: the external rule sets that judged the run's documents and their versions
            (``{"cda": "TestContenuCDA sha256:… (harness-schematron 2)"}``); empty when none.
    """

    run_id: str
    sut: dict[str, str]
    dsr: str
    profiles: list[str]
    catalog_version: str
    started: datetime
    harness_version: str = __version__
    host: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    ended: datetime | None = None
    signer: dict[str, Any] | None = None
    rules: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "harness_version": self.harness_version,
            "sut": dict(self.sut),
            "dsr": self.dsr,
            "profiles": list(self.profiles),
            "catalog_version": self.catalog_version,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "host": dict(self.host),
            "command": list(self.command),
        }
        if self.signer is not None:
            data["signer"] = self.signer
        if self.rules:
            data["rules"] = dict(self.rules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(
            run_id=str(data["run_id"]),
            sut={str(k): str(v) for k, v in dict(data.get("sut") or {}).items()},
            dsr=str(data.get("dsr", "")),
            profiles=[str(p) for p in data.get("profiles") or []],
            catalog_version=str(data.get("catalog_version", "")),
            started=datetime.fromisoformat(data["started"]),
            harness_version=str(data.get("harness_version", "")),
            host={str(k): str(v) for k, v in dict(data.get("host") or {}).items()},
            command=[str(c) for c in data.get("command") or []],
            ended=datetime.fromisoformat(data["ended"]) if data.get("ended") else None,
            signer=dict(data["signer"]) if isinstance(data.get("signer"), dict) else None,
            rules={str(k): str(v) for k, v in dict(data.get("rules") or {}).items()},
        )


def host_facts() -> dict[str, str]:
    """Where the run happens: hostname, platform, Python version."""
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0]}


@dataclass(frozen=True, slots=True)
class RecordedVerdict:
    """A verdict as the journal holds it, with the folder its evidence lives in.

    Attributes:
        verdict: the verdict, artefact and exchange paths filled.
        folder: the case folder relative to the run directory
            (``requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko``).
        case: the case folder's name (mapped from the pytest node id).
        at: when it was journaled.
    """

    verdict: Verdict
    folder: str
    case: str
    at: datetime | None = None


@dataclass(slots=True)
class JournalContents:
    """Everything a journal holds, read back.

    Attributes:
        run: the run facts with updates applied (None if no run-started line).
        records: every journaled verdict, in order.
        finished: True once a run-finished line was read.
        last_at: time of the last complete line (the end of a killed run).
        truncated: True when a partial last line was ignored.
    """

    run: RunInfo | None
    records: list[RecordedVerdict]
    finished: bool
    last_at: datetime | None
    truncated: bool


class RunJournal:
    """Writes one run's evidence folder: the journal, ``run.json`` and per-scenario evidence.

    Example:
        >>> journal = RunJournal(run_dir)
        >>> journal.start(RunInfo(run_id="r1", sut={...}, dsr="LGC", profiles=["Général"],
        ...                       catalog_version="abc", started=now))
        >>> written = journal.record(verdict, exchanges, files)   # once per scenario
        >>> journal.finish(datetime.now(UTC))

    Opening a folder whose journal already has a run continues that run (after a
    crash): a partial last line is dropped and new verdicts are appended.
    ``durable=False`` skips the fsyncs (for benchmarks and throw-away runs).
    """

    def __init__(self, run_dir: Path, *, durable: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / layout.JOURNAL
        self.durable = durable
        self._lock = threading.Lock()
        self._repaired = False
        self._run: RunInfo | None = read_journal(self.run_dir).run if self.path.exists() else None

    @property
    def run(self) -> RunInfo:
        """The run facts as written so far."""
        if self._run is None:
            raise JournalError(f"{self.path}: no run started")
        return self._run

    def start(self, info: RunInfo) -> None:
        """Begin the run: write ``run.json`` and the ``run-started`` line."""
        with self._lock:
            if self._run is not None:
                raise JournalError(f"{self.path}: this folder already holds run {self._run.run_id!r}")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not info.host:
                info = replace(info, host=host_facts())
            self._run = info
            self._write_run_json()
            self._append({"type": "run-started", "journal": JOURNAL_FORMAT, "run": info.to_dict()})
            self._fsync_dir(self.run_dir)

    def update(self, *, sut: dict[str, str] | None = None, profiles: Sequence[str] | None = None) -> RunInfo:
        """Record facts learnt after the start (the SUT identity once the adapter answered)."""
        with self._lock:
            run = self.run
            changes: dict[str, Any] = {}
            if sut is not None:
                run.sut = dict(sut)
                changes["sut"] = dict(sut)
            if profiles is not None:
                run.profiles = list(profiles)
                changes["profiles"] = list(profiles)
            if changes:
                self._write_run_json()
                self._append({"type": "run-updated", "changes": changes})
            return run

    def record(
        self,
        verdict: Verdict,
        exchanges: Iterable[Exchange] = (),
        files: Iterable[tuple[Artefact, bytes]] = (),
    ) -> Verdict:
        """Write one scenario's evidence and journal its verdict; returns it with paths filled.

        Exchanges are redacted (:mod:`harness.evidence.redact`) and written as
        ``exchanges/<NNN>-<simulator>.json``; files go to ``files/<name>``. The
        returned verdict's ``artefacts`` carry path and SHA-256, and its
        ``exchanges`` list one entry per exchange written (simulator, seq,
        action, path, sha256, redactions) — the entries given are kept when no
        exchange is passed. Everything is on disk before the journal line, so a
        journaled verdict never points to a missing file.
        """
        with self._lock:
            if self._run is None:
                raise JournalError(f"{self.path}: record() before start()")
            folder, case = self._claim_case_folder(verdict)
            case_dir = self.run_dir / folder
            written_dirs = {case_dir, *list(case_dir.parents)[:3]}

            descriptors: list[dict[str, Any]] = []
            for position, exchange in enumerate(exchanges, start=1):
                safe, data = exchange_evidence(exchange)
                rel = folder / layout.EXCHANGES / layout.exchange_name(position, exchange.simulator)
                sha = self._write_file(self.run_dir / rel, data)
                written_dirs.add(self.run_dir / rel.parent)
                descriptors.append(
                    {
                        "seq": exchange.seq,
                        "simulator": exchange.simulator,
                        "protocol": exchange.protocol,
                        "action": safe.action,
                        "direction": exchange.direction,
                        "started": exchange.started.isoformat(),
                        "path": rel.as_posix(),
                        "sha256": sha,
                        "redactions": list(safe.meta.get("redactions", [])),
                    }
                )

            artefacts = list(verdict.artefacts)
            used: set[str] = set()
            for artefact, data in files:
                name = _unique(_artefact_file_name(artefact.name), used)
                rel = folder / layout.FILES / name
                sha = self._write_file(self.run_dir / rel, data)
                written_dirs.add(self.run_dir / rel.parent)
                artefacts.append(replace(artefact, path=rel.as_posix(), sha256=sha))

            written = replace(
                verdict,
                artefacts=artefacts,
                exchanges=descriptors if descriptors else list(verdict.exchanges),
            )
            verdict_json = {
                **written.to_dict(),
                "evidence": {"folder": folder.as_posix(), "case": case, "nodeid": verdict.nodeid},
            }
            self._write_file(case_dir / layout.VERDICT, _dumps(verdict_json, indent=2).encode("utf-8"))
            for directory in sorted(written_dirs, key=lambda p: len(p.parts), reverse=True):
                self._fsync_dir(directory)
            self._append({"type": "verdict", "folder": folder.as_posix(), "case": case, "verdict": written.to_dict()})
            return written

    def finish(self, ended: datetime | None = None) -> RunInfo:
        """End the run: a ``run-finished`` line, and ``run.json`` with its end time."""
        with self._lock:
            run = self.run
            run.ended = ended or datetime.now(UTC)
            self._write_run_json()
            self._append({"type": "run-finished", "ended": run.ended.isoformat()})
            return run

    # -- internals -------------------------------------------------------------------
    def _claim_case_folder(self, verdict: Verdict) -> tuple[PurePosixPath, str]:
        """Create the case folder, adding ``-2``, ``-3``... until the name is free.

        Names are compared without case, so a pack unzipped on a case-insensitive
        filesystem (macOS, Windows) never has two folders collide.
        """
        parent = layout.requirement_folder(verdict.requirement_refs, verdict.scenario_ref)
        (self.run_dir / parent).mkdir(parents=True, exist_ok=True)
        taken = {name.lower() for name in os.listdir(self.run_dir / parent)}
        base = layout.case_name(verdict.nodeid)
        for attempt in range(1, 100_000):
            case = base if attempt == 1 else f"{base}-{attempt}"
            if case.lower() in taken:
                continue
            try:
                (self.run_dir / parent / case).mkdir()
            except FileExistsError:
                continue
            return parent / case, case
        raise JournalError(f"no free case folder under {parent}")  # pragma: no cover

    def _write_file(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
            if self.durable:
                handle.flush()
                os.fsync(handle.fileno())
        return hashlib.sha256(data).hexdigest()

    def _write_run_json(self) -> None:
        write_atomic(self.run_dir / layout.RUN, run_json_bytes(self.run), self.durable)

    def _append(self, entry: dict[str, Any]) -> None:
        line = _dumps({"type": entry.pop("type"), "at": datetime.now(UTC).isoformat(), **entry}) + "\n"
        if not self._repaired:
            _repair_tail(self.path)
            self._repaired = True
        with open(self.path, "ab") as handle:
            handle.write(line.encode("utf-8"))
            handle.flush()
            if self.durable:
                os.fsync(handle.fileno())

    def _fsync_dir(self, directory: Path) -> None:
        if not self.durable or os.name != "posix":
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def exchange_evidence(exchange: Exchange) -> tuple[Exchange, bytes]:
    """The exchange with its secrets redacted, and the JSON file that records it as evidence."""
    safe = redact_exchange(exchange)
    return safe, _dumps(safe.to_dict(), indent=2).encode("utf-8")


def run_json_bytes(run: RunInfo) -> bytes:
    """The content of ``run.json`` for ``run``."""
    return (_dumps(run.to_dict(), indent=2) + "\n").encode("utf-8")


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def _repair_tail(path: Path) -> None:
    """Make the journal end with a newline before appending after a crash.

    A complete JSON object missing only its newline is kept; a partial one is cut.
    """
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        line_start = _last_line_start(handle, size)
        handle.seek(line_start)
        last = handle.read()
        try:
            json.loads(last)
        except ValueError:
            handle.truncate(line_start)
        else:
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")


def _last_line_start(handle: BinaryIO, size: int, chunk: int = 1 << 16) -> int:
    """Offset just after the last newline of the file (0 when there is none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        cut = handle.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _unique(name: str, used: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}-{n}.{ext}" if dot else f"{stem}-{n}"
    used.add(candidate.lower())
    return candidate


def _artefact_file_name(name: str) -> str:
    """A safe file name for an artefact, keeping a short extension intact."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if dot and stem and 0 < len(ext) <= 10 and ext.isalnum():
        return layout.safe_name(stem, 80 - len(ext) - 1) + "." + ext
    return layout.safe_name(base, 80)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, Path | PurePosixPath):
        return str(value)
    return repr(value)


def _dumps(value: Any, indent: int | None = None) -> str:
    separators = (",", ": ") if indent else (",", ":")
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, default=_json_default)


# -- reading -----------------------------------------------------------------------------
def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, complete) for each line; the last may be incomplete."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            yield number, raw, raw.endswith(b"\n")


def read_journal(run_dir: Path) -> JournalContents:
    """Read a run's journal back, tolerating a truncated last line.

    Raises:
        JournalError: no journal, or a corrupt line that is not the last one.
    """
    path = Path(run_dir) / layout.JOURNAL
    if not path.is_file():
        raise JournalError(f"{path}: no journal")
    run: RunInfo | None = None
    records: list[RecordedVerdict] = []
    finished = False
    last_at: datetime | None = None
    truncated = False
    pending_error: str | None = None
    for number, raw, complete in _lines(path):
        if pending_error:
            raise JournalError(pending_error)
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
            kind = entry.get("type")
            at = datetime.fromisoformat(entry["at"]) if entry.get("at") else None
            if kind == "run-started":
                run = RunInfo.from_dict(entry["run"])
            elif kind == "run-updated" and run is not None:
                changes = entry.get("changes") or {}
                if "sut" in changes:
                    run.sut = {str(k): str(v) for k, v in dict(changes["sut"]).items()}
                if "profiles" in changes:
                    run.profiles = [str(p) for p in changes["profiles"]]
            elif kind == "verdict":
                records.append(
                    RecordedVerdict(
                        verdict=Verdict.from_dict(entry["verdict"]),
                        folder=str(entry.get("folder", "")),
                        case=str(entry.get("case", "")),
                        at=at,
                    )
                )
            elif kind == "run-finished":
                finished = True
                if run is not None and entry.get("ended"):
                    run.ended = datetime.fromisoformat(entry["ended"])
        except (ValueError, KeyError, TypeError) as exc:
            if complete:
                pending_error = f"{path}:{number}: unreadable journal line ({exc})"
                continue
            truncated = True
            continue
        last_at = at or last_at
    if pending_error:
        # the bad line was the last complete one: a write cut short just before a crash
        truncated = True
    return JournalContents(run=run, records=records, finished=finished, last_at=last_at, truncated=truncated)


def read_verdicts(run_dir: Path) -> list[Verdict]:
    """Every verdict journaled in ``run_dir``, in order (a killed run keeps its finished scenarios)."""
    return [record.verdict for record in read_journal(run_dir).records]


def read_records(run_dir: Path) -> list[RecordedVerdict]:
    """Every journaled verdict with the folder holding its evidence."""
    return read_journal(run_dir).records


def read_run(run_dir: Path) -> RunInfo:
    """The run facts, from the journal (``run.json`` only if the journal has no start line).

    ``ended`` stays None for a run that never finished; see :func:`run_end`.
    """
    run_dir = Path(run_dir)
    contents = read_journal(run_dir) if (run_dir / layout.JOURNAL).is_file() else None
    if contents is not None and contents.run is not None:
        return contents.run
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return RunInfo.from_dict(json.loads((run_dir / layout.RUN).read_text(encoding="utf-8")))
    raise JournalError(f"{run_dir}: no run facts (no run-started line, no readable run.json)")


def run_end(run_dir: Path) -> datetime:
    """When the run ended: its recorded end, else its last journal line, else its start."""
    contents = read_journal(run_dir)
    run = contents.run or read_run(run_dir)
    return run.ended or contents.last_at or run.started
