"""The document types Cabinet Témoin produces, and the practice facts its documents carry.

Both live in ``data/documents.toml`` (data, not code): the practice's identifiers and
address, the author, one entry per type code with its displayName, title, the
structure (``N1`` or ``N3``) the practice produces it in and the XDS class and format
codes it is shared with, and the codes the practice's DMP feed adds (``[dmp]``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "documents.toml"

LOINC = "2.16.840.1.113883.6.1"


@dataclass(frozen=True, slots=True)
class Practice:
    """The organisation that produces, keeps and signs the documents (author, custodian)."""

    name: str
    id_nat_struct: str
    oid: str
    house_number: str
    street_name: str
    postal_code: str
    city: str
    telephone: str
    healthcare_facility_code: str
    healthcare_facility_display: str
    practice_setting_code: str
    practice_setting_display: str

    @property
    def ipp_oid(self) -> str:
        """The assigning authority of the practice's local patient identifiers (IPP)."""
        return f"{self.oid}.1"


@dataclass(frozen=True, slots=True)
class Author:
    """The physician who writes and legally authenticates the documents."""

    id_nat_ps: str
    prefix: str
    given: str
    family: str
    suffix: str
    specialty_code: str
    specialty_display: str
    profession_code: str = ""
    """TRE_G15 profession (``10`` médecin): the VIHF role and the XDS authorRole."""
    profession_display: str = ""


@dataclass(frozen=True, slots=True)
class DocumentType:
    """One type code the practice produces, in one structure."""

    code: str
    code_system: str
    display_name: str
    title: str
    structure: str
    body: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    profile: str = ""
    """The ANS profile the practice must claim to produce it ("" for any)."""
    class_code: str = ""
    """XDS classCode (JDV_J57 ClassCode-DMP, TRE_A03) of the type."""
    class_display: str = ""
    format_code: str = ""
    """XDS formatCode of a structured type ("" for N1: the DMP profile's XDS-SD PDF code)."""
    format_code_system: str = ""

    def answers(self, type_code: str, structure: str) -> bool:
        return structure == self.structure and type_code in (self.code, *self.aliases)


@dataclass(frozen=True, slots=True)
class DmpCodes:
    """The codes the practice's DMP feed uses beyond those of the CDA (``[dmp]``)."""

    n1_format_code: str
    n1_format_code_system: str
    class_code_system: str
    content_type_code: str
    content_type_code_system: str
    content_type_display: str


@dataclass(frozen=True, slots=True)
class DocumentCatalog:
    """Everything ``data/documents.toml`` says."""

    practice: Practice
    author: Author
    types: tuple[DocumentType, ...]
    dmp: DmpCodes

    def find(self, type_code: str, structure: str) -> DocumentType | None:
        """The entry producing ``type_code`` in ``structure``, if the practice has one."""
        return next((t for t in self.types if t.answers(type_code, structure)), None)


@cache
def load_catalog(path: Path = DATA) -> DocumentCatalog:
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    types = tuple(
        DocumentType(
            code=t["code"],
            code_system=t["code_system"],
            display_name=t["display_name"],
            title=t["title"],
            structure=t["structure"],
            body=tuple(t.get("body", ())),
            aliases=tuple(t.get("aliases", ())),
            profile=t.get("profile", ""),
            class_code=t.get("class_code", ""),
            class_display=t.get("class_display", ""),
            format_code=t.get("format_code", ""),
            format_code_system=t.get("format_code_system", ""),
        )
        for t in data["type"]
    )
    return DocumentCatalog(Practice(**data["practice"]), Author(**data["author"]), types, DmpCodes(**data["dmp"]))
