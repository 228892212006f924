"""Load and validate the catalogue data files (TOML, one file per REM section).

Data is checked on load: a duplicate id, an unknown profile, an unknown nature or
proof kind, a malformed reference or an empty statement is a :class:`CatalogError`
naming the file and the entry. Every problem found is reported at once.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from harness.catalog.model import (
    Catalog,
    ComplianceScenario,
    ExpectedProof,
    Nature,
    ProofKind,
    Requirement,
)

REF_PATTERN = re.compile(r"^[A-Za-z][A-Za-z]*(/[A-Za-z0-9]+)*\.[A-Za-z0-9]+$")
"""REM references: ``INS/va1.42``, ``DMP/ALI/PROG.01``, ``PSC.08``."""
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/.]*$")
"""Scenario and proof ids; ANS's own ids do not always nest under their requirement."""
VA1_PATTERN = re.compile(r"^[A-Z]+\.[A-Za-z]+\.[0-9]+$")
STATUSES = ("Approuvée", "A retravailler", "Obsolète")
WAVES = ("va1", "va2")


class CatalogError(ValueError):
    """The catalogue data is invalid; ``problems`` lists each problem with its file and entry."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid catalogue:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def default_data_dir() -> Path:
    """The catalogue shipped with the harness."""
    return Path(str(resources.files("harness.catalog") / "data"))


def load_catalog(dsr: str = "LGC", data_dir: Path | str | None = None) -> Catalog:
    """Load the catalogue of one DSR (``LGC``) from ``data_dir``.

    Raises:
        CatalogError: listing every problem found, each naming its file and entry.
    """
    root = Path(data_dir) if data_dir else default_data_dir()
    problems: list[str] = []
    profiles = _load_profiles(root / "profiles.toml", problems)
    dsr_dir = root / dsr.lower()
    files = sorted(dsr_dir.glob("*.toml"))
    if not files:
        raise CatalogError([f"{dsr_dir}: no catalogue file for DSR {dsr!r}"])
    digest = hashlib.sha256()
    catalog = Catalog(profiles=tuple(profiles))
    origin: dict[str, str] = {}
    for path in [root / "profiles.toml", *files]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for path in files:
        for index, raw in enumerate(_read_toml(path, problems).get("requirement", []), start=1):
            where = f"{path.name}: requirement #{index} ({raw.get('ref', '?')})"
            req = _requirement(dsr.upper(), raw, where, set(profiles), problems)
            if req is None:
                continue
            if req.ref in origin:
                problems.append(f"{where}: duplicate id {req.ref!r}, first defined in {origin[req.ref]}")
                continue
            origin[req.ref] = where
            catalog.requirements[req.ref] = req
    if problems:
        raise CatalogError(problems)
    catalog.version = digest.hexdigest()[:16]
    return catalog


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{path.name}: cannot read: {exc}")
        return {}


def _load_profiles(path: Path, problems: list[str]) -> list[str]:
    data = _read_toml(path, problems)
    names = [str(p.get("name", "")) for p in data.get("profile", [])]
    if not names:
        problems.append(f"{path.name}: no profile defined")
    seen: set[str] = set()
    for name in names:
        if not name:
            problems.append(f"{path.name}: a profile has no name")
        if name in seen:
            problems.append(f"{path.name}: duplicate profile {name!r}")
        seen.add(name)
    return names


def _text(raw: dict[str, Any], key: str, where: str, problems: list[str], required: bool = True) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        problems.append(f"{where}: {key} must be a string")
        return ""
    if required and not value.strip():
        problems.append(f"{where}: {key} is empty")
    return value.strip()


def _requirement(
    rem: str, raw: dict[str, Any], where: str, profiles: set[str], problems: list[str]
) -> Requirement | None:
    before = len(problems)
    ref = _text(raw, "ref", where, problems)
    if ref and not REF_PATTERN.match(ref):
        problems.append(f"{where}: malformed reference {ref!r}")
    va1_refs = tuple(raw.get("va1_refs", []))
    for va1 in va1_refs:
        if not VA1_PATTERN.match(str(va1)):
            problems.append(f"{where}: malformed va1 reference {va1!r}")
    socle_ref = _text(raw, "socle_ref", where, problems, required=False)
    if socle_ref and not socle_ref.startswith("SC."):
        problems.append(f"{where}: socle reference {socle_ref!r} must start with 'SC.'")
    wave = _text(raw, "wave", where, problems)
    if wave and wave not in WAVES:
        problems.append(f"{where}: unknown wave {wave!r}")
    profile = _text(raw, "profile", where, problems)
    if profile and profile not in profiles:
        problems.append(f"{where}: unknown profile {profile!r}")
    status = _text(raw, "status", where, problems)
    if status and status not in STATUSES:
        problems.append(f"{where}: unknown status {status!r}")
    nature_text = _text(raw, "nature", where, problems)
    nature = Nature.EXIGENCE
    try:
        nature = Nature(nature_text)
    except ValueError:
        problems.append(f"{where}: unknown nature {nature_text!r}")
    scenarios = tuple(_scenarios(raw.get("scenario", []), where, problems))
    req = Requirement(
        rem=rem,
        ref=ref,
        va1_refs=tuple(str(v) for v in va1_refs),
        socle_ref=socle_ref,
        wave=wave,
        section_id=_text(raw, "section_id", where, problems),
        section=_text(raw, "section", where, problems),
        bloc=_text(raw, "bloc", where, problems, required=False),
        fonction=_text(raw, "fonction", where, problems, required=False),
        nature=nature,
        profile=profile,
        status=status,
        statement=_text(raw, "statement", where, problems),
        scenarios=scenarios,
        source=where,
    )
    return req if len(problems) == before else None


def _scenarios(items: Iterable[dict[str, Any]], where: str, problems: list[str]) -> list[ComplianceScenario]:
    out: list[ComplianceScenario] = []
    seen: set[str] = set()
    for raw in items:
        ref = _text(raw, "ref", where, problems)
        here = f"{where}: scenario {ref or '?'}"
        if ref and not ID_PATTERN.match(ref):
            problems.append(f"{here}: malformed scenario id")
        if ref in seen:
            problems.append(f"{here}: duplicate scenario id")
        seen.add(ref)
        steps = raw.get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(s, str) and s.strip() for s in steps):
            problems.append(f"{here}: steps must be a list of non-empty strings")
            steps = []
        proofs: list[ExpectedProof] = []
        proof_ids: set[str] = set()
        for praw in raw.get("proof", []):
            pref = _text(praw, "ref", here, problems, required=False)
            if pref and not ID_PATTERN.match(pref):
                problems.append(f"{here}: malformed proof id {pref!r}")
            if pref and pref in proof_ids:
                problems.append(f"{here}: duplicate proof id {pref!r}")
            proof_ids.add(pref)
            kind_text = _text(praw, "kind", here, problems)
            try:
                kind = ProofKind(kind_text)
            except ValueError:
                problems.append(f"{here}: unknown proof kind {kind_text!r}")
                continue
            proofs.append(ExpectedProof(ref=pref, kind=kind, text=_text(praw, "text", here, problems)))
        out.append(
            ComplianceScenario(
                ref=ref,
                summary=_text(raw, "summary", here, problems),
                steps=tuple(s.strip() for s in steps),
                proofs=tuple(proofs),
            )
        )
    return out
