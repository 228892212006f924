"""The ANS rule set: a TestContenuCDA folder, its version, and Windows-style file lookup.

ANS publishes its CDA rules as a folder (``schematrons/``, ``jeuxDeValeurs/``,
``infrastructure/cda/``, and in the full release ``schematrons/moteur/`` with the ISO
skeleton). The harness never ships them: a user points it at a release, and every
report says which release (git commit, or a hash of the rule files) judged it.

The tree was written on Windows, where ``Entrees/`` and ``entrees/`` are the same
folder. :meth:`RuleSet.resolve` finds a file the way Windows would (case-insensitive,
one path segment at a time) and says when it had to, so the caller can report each
repair as a warning instead of crashing or silently dropping a rule.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

RULES_ENV = "SEGUR_HARNESS_CDA_RULES"
"""Environment variable naming the TestContenuCDA folder when no option gives one."""

SKELETON_FILES = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
"""The three compile steps of the official pipeline, in order, under ``schematrons/moteur/``."""

PROFILE_SCHEMATRONS = (
    "schematrons/profils/IHE.sch",
    "schematrons/profils/CI-SIS_ModelesDeContenusCDA.sch",
    "schematrons/profils/CI-SIS_Modeles_ANS.sch",
)
"""The profile schematrons ANS runs on every document, besides the volet one."""

STRUCTURATION_MINIMALE = "schematrons/profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch"
"""The level-1 (structuration minimale) profile, present only in the full ANS release."""

CDA_SCHEMA = "infrastructure/cda/CDA_extended.xsd"


class RulesError(ValueError):
    """The folder is not a TestContenuCDA rule set."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where an href led.

    Attributes:
        path: the file found, or None when nothing matches even ignoring case.
        repaired: True when the file was found only by ignoring case.
        wanted: the path as written (joined to its base), for messages.
    """

    path: Path | None
    repaired: bool
    wanted: Path


@dataclass
class RuleSet:
    """A TestContenuCDA folder.

    Attributes:
        root: the folder holding ``schematrons/``, ``jeuxDeValeurs/``, ``infrastructure/``.
    """

    root: Path
    _listing: dict[Path, dict[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: Path | str) -> RuleSet:
        """The rule set at ``root``; RulesError if it lacks the TestContenuCDA layout."""
        path = Path(root).expanduser().resolve()
        if not (path / "schematrons").is_dir():
            raise RulesError(f"{path} is not a TestContenuCDA folder: it has no schematrons/ folder")
        return cls(path)

    @classmethod
    def from_environment(cls) -> RuleSet | None:
        """The rule set named by ``SEGUR_HARNESS_CDA_RULES``, or None when unset."""
        value = os.environ.get(RULES_ENV, "").strip()
        return cls.open(value) if value else None

    # -- what is in it ----------------------------------------------------------------------------
    @property
    def schematrons(self) -> Path:
        return self.root / "schematrons"

    @property
    def has_skeleton(self) -> bool:
        """True when the folder ships the ISO skeleton, so the official compile route applies."""
        moteur = self.schematrons / "moteur"
        return all((moteur / name).is_file() for name in SKELETON_FILES)

    @property
    def schema_path(self) -> Path | None:
        path = self.root / CDA_SCHEMA
        return path if path.is_file() else None

    def volet_schematrons(self) -> list[Path]:
        """The top-level volet schematrons ``schematrons/CI-SIS_<VOLET>_<version>.sch``."""
        return sorted(p for p in self.schematrons.glob("CI-SIS_*.sch") if p.is_file())

    def profile_schematrons(self) -> list[Path]:
        """The profile schematrons present, in the order ANS lists them."""
        found = [self.root / rel for rel in PROFILE_SCHEMATRONS]
        return [p for p in found if p.is_file()]

    def structuration_minimale(self) -> Path | None:
        path = self.root / STRUCTURATION_MINIMALE
        return path if path.is_file() else None

    def relative(self, path: Path) -> str:
        """``path`` relative to the rules folder, with forward slashes, for reports."""
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    # -- version ----------------------------------------------------------------------------------
    @cached_property
    def version(self) -> str:
        """``git:<commit>`` when the folder is a git work tree at a commit, else ``sha256:<hash>``.

        The hash covers every file under ``schematrons/``, ``jeuxDeValeurs/`` and
        ``infrastructure/`` (relative path and bytes), so any edit changes it.
        """
        commit = _git_commit(self.root)
        if commit:
            return f"git:{commit}"
        return f"sha256:{self.content_hash[:16]}"

    @cached_property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for top in ("schematrons", "jeuxDeValeurs", "infrastructure"):
            base = self.root / top
            if not base.is_dir():
                continue
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                digest.update(path.relative_to(self.root).as_posix().encode("utf-8"))
                digest.update(b"\0")
                digest.update(path.read_bytes())
                digest.update(b"\0")
        return digest.hexdigest()

    # -- Windows-style lookup ---------------------------------------------------------------------
    def resolve(self, base_dir: Path, href: str) -> Resolved:
        """Find ``href`` relative to ``base_dir`` as Windows would: exact first, then ignoring case.

        ``..`` and ``.`` segments are applied literally; a segment that names a file where a
        folder is needed (the ANS tree has empty files standing in for folders) fails.
        """
        wanted = base_dir / href.replace("\\", "/")
        if wanted.is_file():
            return Resolved(wanted, False, wanted)
        current = base_dir
        repaired = False
        for segment in href.replace("\\", "/").split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                current = current.parent
                continue
            if not current.is_dir():
                return Resolved(None, False, wanted)
            exact = current / segment
            if exact.exists():
                current = exact
                continue
            match = self._entries(current).get(segment.casefold())
            if match is None:
                return Resolved(None, False, wanted)
            current = current / match
            repaired = True
        if current.is_file():
            return Resolved(current, repaired, wanted)
        return Resolved(None, False, wanted)

    def _entries(self, folder: Path) -> dict[str, str]:
        key = folder.resolve()
        if key not in self._listing:
            self._listing[key] = {name.casefold(): name for name in os.listdir(key)}
        return self._listing[key]


def _git_commit(root: Path) -> str:
    """The commit of a clean git work tree rooted exactly at ``root``, or ""."""
    if not (root / ".git").exists():
        return ""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}+modified" if dirty else head
