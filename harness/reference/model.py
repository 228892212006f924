"""The practice's identity records and how they read from and write to JSON.

One place for the shape of an identity (strict traits, status, INS) so the store, the
INS rules and the control API agree on it. Validation of what a user types lives here
too: a refused trait is a :class:`InvalidInput`, which the API turns into a 422.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

STRICT_TRAITS: tuple[str, ...] = ("birth_name", "first_names", "sex", "birth_date", "birthplace_cog")
"""The traits INSi certifies; changing one invalidates a retrieved INS (rule 27)."""
ALL_TRAITS: tuple[str, ...] = (*STRICT_TRAITS, "used_name", "used_first_name")

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_COG = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


class InvalidInput(ValueError):
    """Data the practice refuses (the API answers 422)."""


class Status(enum.StrEnum):
    """The four RNIV identity statuses."""

    PROV = "PROV"
    RECUP = "RECUP"
    VALI = "VALI"
    QUAL = "QUAL"

    def with_ins(self) -> Status:
        """The status once an INS is obtained from INSi (PROV→RECUP, VALI→QUAL)."""
        return {Status.PROV: Status.RECUP, Status.VALI: Status.QUAL}.get(self, self)

    def without_ins(self) -> Status:
        """The status once the INS is invalidated (RECUP→PROV, QUAL→VALI)."""
        return {Status.RECUP: Status.PROV, Status.QUAL: Status.VALI}.get(self, self)

    def with_document_check(self) -> Status:
        """The status once an identity document was checked (PROV→VALI, RECUP→QUAL)."""
        return {Status.PROV: Status.VALI, Status.RECUP: Status.QUAL}.get(self, self)

    @property
    def has_insi(self) -> bool:
        """True for the statuses that come from INSi (RECUP, QUAL)."""
        return self in (Status.RECUP, Status.QUAL)


@dataclass(frozen=True, slots=True)
class Traits:
    """Strict traits plus the used names, as the practice stores them."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birthplace_cog: str = ""
    used_name: str = ""
    used_first_name: str = ""

    @property
    def first_first_name(self) -> str:
        return self.first_names[0] if self.first_names else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "birth_name": self.birth_name,
            "first_names": list(self.first_names),
            "sex": self.sex,
            "birth_date": self.birth_date,
            "birthplace_cog": self.birthplace_cog,
            "used_name": self.used_name,
            "used_first_name": self.used_first_name,
        }

    def strict_equal(self, other: Traits) -> bool:
        return all(getattr(self, name) == getattr(other, name) for name in STRICT_TRAITS)

    def match_key(self) -> str:
        """Normalised birth name, first first name, sex and birth date: how a feed finds a known patient."""
        parts = (normalise_name(self.birth_name), normalise_name(self.first_first_name), self.sex, self.birth_date)
        return "|".join(parts)


@dataclass(frozen=True, slots=True)
class Ins:
    """An INS: matricule (13 characters + 2-digit key) and its assigning-authority OID."""

    matricule: str
    oid: str

    def to_json(self) -> dict[str, str]:
        return {"matricule": self.matricule, "oid": self.oid}


@dataclass(frozen=True, slots=True)
class InsHistoryEntry:
    """A former matricule INSi returned in INSHISTO."""

    matricule: str
    oid: str
    start: str = ""
    end: str = ""

    def to_json(self) -> dict[str, str]:
        return {"matricule": self.matricule, "oid": self.oid, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class ExternalId:
    """An identifier another domain gave the patient (PID-3 of a feed, e.g. an IPP)."""

    value: str
    authority: str
    oid: str
    type_code: str

    def to_json(self) -> dict[str, str]:
        return {"value": self.value, "authority": self.authority, "oid": self.oid, "type": self.type_code}


@dataclass(frozen=True, slots=True)
class Patient:
    """One identity of the practice."""

    id: str
    traits: Traits
    status: Status
    ins: Ins | None = None
    identity_document: str = ""
    origin: str = "local"
    ins_history: tuple[InsHistoryEntry, ...] = ()
    external_ids: tuple[ExternalId, ...] = ()
    created: str = ""
    updated: str = ""

    def without_ins(self) -> Patient:
        """This identity with its INS invalidated and its status downgraded."""
        return replace(self, ins=None, ins_history=(), status=self.status.without_ins())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "traits": self.traits.to_json(),
            "status": self.status.value,
            "ins": self.ins.to_json() if self.ins else None,
            "identity_document": self.identity_document,
            "origin": self.origin,
            "ins_history": [h.to_json() for h in self.ins_history],
            "external_ids": [e.to_json() for e in self.external_ids],
            "created": self.created,
            "updated": self.updated,
        }


def normalise_name(name: str) -> str:
    """Upper case, no diacritics, single spaces: the form used to compare names."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.upper().split())


def traits_from_json(data: Any) -> Traits:
    """Full traits from a request body; raises InvalidInput naming the first bad field."""
    if not isinstance(data, dict):
        raise InvalidInput("'traits' must be an object")
    missing = [name for name in ("birth_name", "first_names", "sex", "birth_date") if name not in data]
    if missing:
        raise InvalidInput(f"missing trait(s): {', '.join(missing)}")
    values = {name: _checked_trait(name, data[name]) for name in ALL_TRAITS if name in data}
    return Traits(**values)


def apply_trait_changes(traits: Traits, changes: Any) -> Traits:
    """``traits`` with the fields of ``changes`` replaced; raises InvalidInput on an unknown or bad field."""
    if not isinstance(changes, dict):
        raise InvalidInput("'traits' must be an object")
    unknown = sorted(set(changes) - set(ALL_TRAITS))
    if unknown:
        raise InvalidInput(f"unknown trait(s): {', '.join(unknown)}")
    values = {name: _checked_trait(name, value) for name, value in changes.items()}
    for required in ("birth_name", "first_names", "sex", "birth_date"):
        if required in values and not values[required]:
            raise InvalidInput(f"'{required}' cannot be emptied")
    return replace(traits, **values)


def _checked_trait(name: str, value: Any) -> Any:
    if name == "first_names":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise InvalidInput("'first_names' must be a non-empty list of non-empty strings")
        return tuple(v.strip() for v in value)
    if value is None and name in ("birthplace_cog", "used_name", "used_first_name"):
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a string")
    value = value.strip()
    if len(value) > 200:
        raise InvalidInput(f"'{name}' is too long")
    if name == "birth_name" and not value:
        raise InvalidInput("'birth_name' must not be empty")
    if name == "sex" and value not in ("M", "F"):
        raise InvalidInput("'sex' must be 'M' or 'F'")
    if name == "birth_date":
        check_birth_date(value)
    if name == "birthplace_cog" and value and not _COG.match(value.upper()):
        raise InvalidInput("'birthplace_cog' must be a 5-character INSEE COG code")
    return value.upper() if name == "birthplace_cog" else value


def check_birth_date(value: str) -> None:
    """Accept ``YYYY-MM-DD``, with ``00`` for an unknown month or day (as INSi allows); else InvalidInput."""
    match = _DATE.match(value)
    if not match:
        raise InvalidInput("'birth_date' must be YYYY-MM-DD")
    year, month, day = (int(g) for g in match.groups())
    if month == 0 or day == 0:
        if month > 12 or day > 31:
            raise InvalidInput("'birth_date' is not a date")
        return
    try:
        date(year, month, day)
    except ValueError:
        raise InvalidInput("'birth_date' is not a date") from None


def decoded_base64(value: Any, name: str, max_bytes: int) -> bytes:
    """The bytes of the strict base64 string ``value`` (the request field ``name``), 1 to ``max_bytes``.

    The encoded length is checked before decoding, so an oversized field costs nothing;
    raises InvalidInput naming the field.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a base64 string")
    if len(value) > max_bytes * 4 // 3 + 4:
        raise InvalidInput(f"'{name}' is larger than {max_bytes} bytes")
    try:
        content = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"'{name}' is not valid base64") from None
    if not content or len(content) > max_bytes:
        raise InvalidInput(f"'{name}' must hold 1 byte to {max_bytes} bytes")
    return content
