"""Choosing the volet schematron from what the document says it is.

ANS's test platform picks the volet by the templateId a document declares in its
header (the CI-SIS volet root, and since 2021 an ``@extension`` naming the volet
version), not by the file name. This module does the same:

1. the volet roots come from ``data/volets.toml`` (root → file-name families);
2. the versions come from the rules folder (``CI-SIS_<family>_<version>.sch``);
3. the ``@extension`` picks the version. A document that states none (or a version
   the folder does not have) may still say which schematron judges it, with a
   schematron association before its root (``<?oxygen SCHSchema="…"?>`` as in every ANS
   example, or ``<?xml-model href="…"?>``): one naming a volet of the same family picks
   that version; associations naming no volet of that family mean "profiles only".
   A document with neither is judged by the **oldest** version present (a document
   without a versioned templateId predates versioned volets). Each fallback is a warning;
4. a level-1 document (``nonXMLBody``) gets no volet schematron: it is judged by the
   structuration-minimale checks, as a level-1 document is.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

from harness.findings import Finding, info, warning
from harness.validators.cda.report import VoletChoice
from harness.validators.cda.rules import RuleSet

HL7 = "urn:hl7-org:v3"
SOURCE = "cda.volet"
_VOLET_FILE = re.compile(r"^CI-SIS_(?P<family>.+)_(?P<version>\d{4}\.\d{2})\.sch$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class VoletSchematron:
    """One top-level volet schematron of the rules folder."""

    path: Path
    family: str
    version: str


@cache
def volet_roots() -> dict[str, tuple[str, ...]]:
    """templateId root → the file-name families of that volet."""
    text = resources.files("harness.validators.cda").joinpath("data/volets.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return {root: tuple(entry["families"]) for root, entry in data["volet"].items()}


def index_volets(rules: RuleSet) -> list[VoletSchematron]:
    """Every ``CI-SIS_<family>_<version>.sch`` of the folder."""
    found = []
    for path in rules.volet_schematrons():
        match = _VOLET_FILE.match(path.name)
        if match:
            found.append(VoletSchematron(path, match["family"], match["version"]))
    return found


def choose_volet(
    document: etree._Element, rules: RuleSet | None, volets: list[VoletSchematron]
) -> tuple[VoletChoice, list[Finding]]:
    """The volet for ``document`` (a ClinicalDocument element) and any warning about the choice."""
    level1 = document.find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody") is not None
    if level1:
        return VoletChoice("", "", "level-1 document (nonXMLBody): judged by the structuration minimale", True), []
    roots = volet_roots()
    declared = [
        (t.get("root", ""), t.get("extension", ""))
        for t in document.findall(f"{{{HL7}}}templateId")
        if t.get("root") in roots
    ]
    if not declared:
        return VoletChoice("", "", "no known CI-SIS volet templateId in the header: profile schematrons only"), []
    root, extension = max(declared, key=lambda pair: len(pair[0]))
    label = f"{root}@{extension}" if extension else root
    families = {f.casefold() for f in roots[root]}
    candidates = sorted((v for v in volets if v.family.casefold() in families), key=lambda v: v.version)
    if rules is None or not candidates:
        reason = f"volet templateId {label}, but the rules folder has no schematron for {', '.join(roots[root])}"
        return VoletChoice("", label, reason), [warning("cda.volet.no-schematron", reason, source=SOURCE)]
    exact = [v for v in candidates if v.version == extension]
    if exact:
        chosen = exact[-1]
        return VoletChoice(rules.relative(chosen.path), label, f"templateId {label} names version {extension}"), []
    if extension:
        why = f"templateId {label} names version {extension}, which the rules folder does not have"
    else:
        why = f"templateId {root} states no volet version"
    associated = schematron_associations(document)
    if associated:
        named = [v for v in candidates if v.path.name.casefold() in associated]
        if named:
            chosen = named[-1]
            reason = f"{why}; the document's schematron association names {chosen.path.name}"
            return VoletChoice(rules.relative(chosen.path), label, reason), [
                info("cda.volet.by-association", reason, source=SOURCE)
            ]
        reason = f"{why}, and the document's schematron associations name no volet of that family: profiles only"
        return VoletChoice("", label, reason), [warning("cda.volet.none-associated", reason, source=SOURCE)]
    chosen = candidates[0]
    reason = f"{why}; judged by the oldest version present, {chosen.version}"
    return VoletChoice(rules.relative(chosen.path), label, reason), [
        warning("cda.volet.version-assumed", reason, location="/ClinicalDocument/templateId", source=SOURCE)
    ]


_PSEUDO_HREF = re.compile(r"""(?:href|SCHSchema)\s*=\s*(['"])(?P<href>[^'"]+)\1""")


def schematron_associations(document: etree._Element) -> set[str]:
    """File names (case-folded) of the schematrons the document associates itself with, before its root."""
    names: set[str] = set()
    top = document.getroottree().getroot()
    for node in top.itersiblings(preceding=True):
        if isinstance(node, etree._ProcessingInstruction) and node.target in ("oxygen", "xml-model"):
            for match in _PSEUDO_HREF.finditer(node.text or ""):
                names.add(match["href"].replace("\\", "/").rsplit("/", 1)[-1].casefold())
    return names


def forced_volet(rules: RuleSet, name: str) -> VoletChoice:
    """A volet named by the user (file name or path relative to the rules folder)."""
    candidate = Path(name)
    path = candidate if candidate.is_absolute() else rules.root / name
    if not path.is_file():
        path = rules.schematrons / candidate.name
    if not path.is_file():
        raise FileNotFoundError(f"no volet schematron {name!r} in {rules.schematrons}")
    return VoletChoice(rules.relative(path), "", f"volet forced to {path.name}")
