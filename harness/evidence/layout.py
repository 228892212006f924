"""The run directory layout: every file and folder name the evidence code writes.

One place for the contract other parts rely on (the pytest plugin, the CLI, the
pack verifier), and for turning ANS ids and pytest node ids into names that are
safe on every filesystem and inside a zip::

    <run_dir>/
      journal.jsonl        append-only source of truth
      run.json             run facts
      requirements/<req>/<scenario>/<case>/verdict.json
                                          /exchanges/<NNN>-<simulator>.json
                                          /files/<artefact name>
      matrix.csv  matrix.xlsx  index.html
      manifest.json  manifest.sig  signer.pem
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath

JOURNAL = "journal.jsonl"
RUN = "run.json"
REQUIREMENTS = "requirements"
VERDICT = "verdict.json"
EXCHANGES = "exchanges"
FILES = "files"
MATRIX_CSV = "matrix.csv"
MATRIX_XLSX = "matrix.xlsx"
INDEX_HTML = "index.html"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNER_CERT = "signer.pem"

UNMAPPED = "_unmapped"
"""Folder for a verdict that names no requirement (or no compliance scenario)."""
UNCOVERED_CASE = "uncovered"
"""Case folder of a verdict with no pytest node id (a requirement no scenario covers)."""

MAX_NAME = 48
"""Longest name component written; longer ones are cut and given a hash suffix."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PARAMS = re.compile(r"\[(.*)\]$")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}


def safe_name(text: str, max_len: int = MAX_NAME) -> str:
    """A filesystem- and zip-safe single path component for ``text``.

    ``/`` becomes ``_`` (``INS/va1.06`` → ``INS_va1.06``), accents are folded, any
    other character outside ``[A-Za-z0-9._-]`` becomes ``_``, a leading dot is
    escaped (no ``.``/``..``/hidden names). A name longer than ``max_len`` is cut
    and ends with 8 hex digits of the original's SHA-256, so distinct long names
    stay distinct.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", folded.replace("/", "_")).strip("_") or "_"
    if name.startswith("."):
        name = "_" + name
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name = "_" + name
    if len(name) > max_len:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        name = name[: max_len - 9].rstrip("._-") + "-" + digest
    return name


def case_name(nodeid: str) -> str:
    """The case folder name from a pytest node id: its parameters, else its test name.

    ``scenarios/test_insi.py::test_verify[qualifiee-ko]`` → ``qualifiee-ko``;
    ``scenarios/test_insi.py::test_trace`` → ``test_trace``; an empty node id (a
    requirement no scenario covers) → ``uncovered``. Uniqueness within a
    scenario folder is the journal's job (it adds ``-2``, ``-3``...).
    """
    if not nodeid:
        return UNCOVERED_CASE
    last = nodeid.split("::")[-1]
    params = _PARAMS.search(last)
    return safe_name(params.group(1) if params and params.group(1) else last.split("[")[0])


def requirement_folder(requirement_refs: list[str], scenario_ref: str) -> PurePosixPath:
    """``requirements/<req>/<scenario>``, relative to the run directory.

    The first requirement a verdict names owns its folder (ANS scenario ids do
    not always nest under their requirement's id, so the folder follows the
    verdict's own declaration, not the id's shape).
    """
    req = safe_name(requirement_refs[0]) if requirement_refs and requirement_refs[0] else UNMAPPED
    scenario = safe_name(scenario_ref) if scenario_ref else UNMAPPED
    return PurePosixPath(REQUIREMENTS, req, scenario)


def exchange_name(position: int, simulator: str) -> str:
    """``001-insi.json``: position within the scenario (1-based), then the simulator."""
    return f"{position:03d}-{safe_name(simulator or 'exchange', 32)}.json"


def is_safe_relative(path: str) -> bool:
    """True for a relative POSIX path with no ``..``, no empty or dot segment, no backslash.

    What a manifest entry or a zip member name must look like before the
    verifier opens anything by that name.
    """
    if not path or len(path) > 1024 or "\\" in path or "\x00" in path or path.startswith("/"):
        return False
    if re.match(r"^[A-Za-z]:", path):
        return False
    parts = path.split("/")
    return all(part not in ("", ".", "..") for part in parts)
