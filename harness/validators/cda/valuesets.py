"""CI-SIS value sets (jeux de valeurs, JDV) loaded from an ANS folder and indexed.

Header rules, XDS metadata checks and the schematrons all ask the same question:
"is this code, in this code system, part of JDV X?". ANS publishes each JDV as one
IHE SVS file (namespace ``urn:ihe:iti:svs:2008``:
``RetrieveValueSetResponse/ValueSet/ConceptList/Concept@code,@codeSystem,@displayName``,
``ValueSet@id`` the OID, ``ValueSet@displayName`` the name), e.g. the
``jeuxDeValeurs/`` folder of TestContenuCDA-3-0 (``shared/docs/protocols.md`` §6.4).
This module reads such a folder once and answers those questions from memory.

A JDV is found by its file stem (``JDV_J07_XdsTypeCode_CISIS``; case-insensitive,
and ``-`` equals ``_`` so the ``JDV_J07-XdsTypeCode-CISIS`` spelling of the ANS URLs
works too) or by its OID (``1.2.250.1.213.1.1.5.471``).

Files are data from outside: they are parsed without entities, DTD or network, and a
file that cannot be read (the TestContenuCDA folder ships three empty ones) becomes a
warning in :attr:`ValueSets.problems`, never an exception.

Measured: loading the 523 SVS files of TestContenuCDA-3-0 (4.7 MB, about 14 300
concepts) takes about 0.1 s on the development machine (see the test module).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from harness.findings import Finding, warning

SVS_NS = "urn:ihe:iti:svs:2008"
SOURCE = "cda.valuesets"

_VALUE_SET = f"{{{SVS_NS}}}ValueSet"
_CONCEPT = f"{{{SVS_NS}}}Concept"
_ROOT = f"{{{SVS_NS}}}RetrieveValueSetResponse"


@dataclass(frozen=True, slots=True)
class Concept:
    """One code of a JDV, with the code system it belongs to."""

    code: str
    code_system: str
    display_name: str = ""


@dataclass(slots=True)
class ValueSet:
    """One JDV: its OID, its name, the file it came from and its concepts.

    Attributes:
        oid: ``ValueSet@id``.
        name: ``ValueSet@displayName`` (ANS sometimes keeps a ``.tabs`` suffix there).
        key: the file stem it was loaded from ("" when built in memory).
        concepts: in file order.
    """

    oid: str
    name: str
    key: str = ""
    concepts: tuple[Concept, ...] = ()
    _index: dict[tuple[str, str], Concept] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for concept in self.concepts:
            self._index.setdefault((concept.code, concept.code_system), concept)

    def contains(self, code: str, code_system: str) -> bool:
        """True when ``code`` in ``code_system`` is one of the concepts (exact match)."""
        return (code, code_system) in self._index

    def display(self, code: str, code_system: str) -> str | None:
        """The ANS display name of the concept, or None when it is not in the JDV."""
        concept = self._index.get((code, code_system))
        return concept.display_name if concept is not None else None

    def code_systems(self) -> set[str]:
        """The code systems the concepts come from."""
        return {system for _, system in self._index}

    def __len__(self) -> int:
        return len(self.concepts)

    def __iter__(self) -> Iterator[Concept]:
        return iter(self.concepts)


def _normalise_key(key: str) -> str:
    text = key.strip()
    if text.lower().endswith(".xml"):
        text = text[:-4]
    return text.casefold().replace("-", "_")


class ValueSets:
    """Every JDV of a folder, indexed by file stem and by OID.

    Build it with :meth:`load`; the constructor is for value sets made in memory (tests).
    """

    def __init__(self, value_sets: Iterable[ValueSet] = (), problems: Iterable[Finding] = ()) -> None:
        self.problems: list[Finding] = list(problems)
        """Files that could not be used, as warnings (rule ``cda.valuesets.unreadable`` ...)."""
        self._all: list[ValueSet] = []
        self._by_key: dict[str, ValueSet] = {}
        self._by_oid: dict[str, ValueSet] = {}
        self._by_concept: dict[tuple[str, str], list[ValueSet]] = {}
        for value_set in value_sets:
            self._add(value_set)

    def _add(self, value_set: ValueSet) -> None:
        self._all.append(value_set)
        if value_set.key:
            self._by_key[_normalise_key(value_set.key)] = value_set
        if value_set.oid in self._by_oid:
            self.problems.append(
                warning(
                    "cda.valuesets.duplicate-oid",
                    f"value set OID {value_set.oid} appears in {self._by_oid[value_set.oid].key or '?'} "
                    f"and {value_set.key or '?'}; the first one is used",
                    value_set.key,
                    SOURCE,
                )
            )
        else:
            self._by_oid[value_set.oid] = value_set
        for pair in value_set._index:
            self._by_concept.setdefault(pair, []).append(value_set)

    @classmethod
    def load(cls, folder: Path) -> ValueSets:
        """Load every ``*.xml`` SVS file of ``folder`` (not recursive), in name order.

        A missing folder, an unreadable or malformed file, or a file that is not an SVS
        value set becomes a warning in :attr:`problems`.
        """
        loaded = cls()
        if not folder.is_dir():
            loaded.problems.append(
                warning("cda.valuesets.folder", f"value set folder {folder} does not exist", str(folder), SOURCE)
            )
            return loaded
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml" and p.is_file()):
            try:
                root = etree.parse(str(path), parser).getroot()
            except (OSError, etree.XMLSyntaxError) as exc:
                loaded.problems.append(
                    warning("cda.valuesets.unreadable", f"{path.name} is not readable XML: {exc}", path.name, SOURCE)
                )
                continue
            value_set = _read_value_set(root, path.stem)
            if value_set is None:
                loaded.problems.append(
                    warning(
                        "cda.valuesets.not-svs",
                        f"{path.name} is not an IHE SVS RetrieveValueSetResponse with a ValueSet@id",
                        path.name,
                        SOURCE,
                    )
                )
                continue
            loaded._add(value_set)
        return loaded

    def get(self, key: str) -> ValueSet | None:
        """The JDV whose file stem (case-insensitive, ``-`` = ``_``) or OID is ``key``."""
        return self._by_oid.get(key.strip()) or self._by_key.get(_normalise_key(key))

    def find_by_concept(self, code: str, code_system: str) -> list[ValueSet]:
        """Every JDV holding ``code`` in ``code_system``, in load order."""
        return list(self._by_concept.get((code, code_system), ()))

    def __len__(self) -> int:
        """How many value sets were loaded (files; two files may share an OID)."""
        return len(self._all)

    def __iter__(self) -> Iterator[ValueSet]:
        return iter(self._all)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


def _read_value_set(root: etree._Element, key: str) -> ValueSet | None:
    if root.tag != _ROOT:
        return None
    node = root.find(_VALUE_SET)
    oid = (node.get("id") or "").strip() if node is not None else ""
    if node is None or not oid:
        return None
    concepts = tuple(
        Concept(
            code=(concept.get("code") or "").strip(),
            code_system=(concept.get("codeSystem") or "").strip(),
            display_name=concept.get("displayName") or "",
        )
        for concept in node.iter(_CONCEPT)
        if concept.get("code")
    )
    return ValueSet(oid=oid, name=node.get("displayName") or "", key=key, concepts=concepts)
