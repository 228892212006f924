"""FHIR search over the simulated directory: the parameters the Annuaire Santé API documents, strictly.

Parameters are read as FHIR R4 defines them: repeated parameters are AND, comma-separated values
are OR; string parameters match a prefix, ignoring case and accents (``:exact`` and ``:contains``
change that); token parameters take ``system|code``, ``|code``, ``system|`` or ``code``; reference
parameters take ``Type/id`` or ``id``. The simulator is **strict**: a parameter or modifier it does
not know is a 400 (FHIR allows a server to ignore them; a practice relying on a parameter the real
API does not support would then be told, not silently given every resource).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.simulators.annuaire.directory import EMAIL_TYPE_URL, IDNPS_SYSTEM, RPPS_SYSTEM

RESULT_PARAMETERS = frozenset({"_count", "_format", "_pretty", "_total", "_include", "_revinclude"})
"""Parameters shaping the answer rather than selecting resources (``_total`` is accepted and ignored)."""
REVINCLUDES = {"Practitioner": frozenset({"PractitionerRole:practitioner"})}
INCLUDES = {"PractitionerRole": frozenset({"PractitionerRole:practitioner", "PractitionerRole:organization"})}
STRING_MODIFIERS = frozenset({"", "exact", "contains"})
MAX_VALUES = 100
"""Most OR values (and AND repetitions) a search may carry."""


class SearchError(ValueError):
    """A search the simulator refuses: ``status`` is the HTTP answer, ``code`` the OperationOutcome issue code."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def folded(text: str) -> str:
    """``text`` without accents and case, as FHIR string search compares it."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# -- what a resource offers to each parameter ---------------------------------------------------
def _names(resource: dict[str, Any], parts: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for name in resource.get("name", []) if isinstance(resource.get("name"), list) else []:
        for part in parts:
            value = name.get(part)
            found.extend(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    return found


def is_mailbox_mss(telecom: dict[str, Any]) -> bool:
    """True for a ``telecom`` carrying the FR Core e-mail type ``MSSANTE`` (an MSSanté BAL)."""
    return telecom.get("system") == "email" and any(
        ext.get("url") == EMAIL_TYPE_URL and (ext.get("valueCoding") or {}).get("code") == "MSSANTE"
        for ext in telecom.get("extension", [])
    )


def mailboxes(resource: dict[str, Any]) -> list[str]:
    """The MSSanté addresses of a resource's ``telecom``."""
    return [str(t.get("value", "")) for t in resource.get("telecom", []) if is_mailbox_mss(t) and t.get("value")]


def _organization_names(resource: dict[str, Any]) -> list[str]:
    return [str(resource.get("name", ""))] + [str(a) for a in resource.get("alias", [])]


def _identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(i.get("system", "")), str(i.get("value", ""))) for i in resource.get("identifier", [])]


def _reference(resource: dict[str, Any], element: str) -> str:
    return str((resource.get(element) or {}).get("reference", ""))


# -- matchers -----------------------------------------------------------------------------------
def _match_string(candidates: Iterable[str], value: str, modifier: str) -> bool:
    if modifier == "exact":
        return any(c == value for c in candidates)
    wanted = folded(value)
    if modifier == "contains":
        return any(wanted in folded(c) for c in candidates)
    return any(folded(c).startswith(wanted) for c in candidates)


def _match_token(pairs: Iterable[tuple[str, str]], value: str) -> bool:
    if "|" not in value:
        return any(c == value for _, c in pairs)
    system, code = value.split("|", 1)
    if not system:
        return any(not s and c == code for s, c in pairs)
    return any(s == system and (not code or c == code) for s, c in pairs)


def _match_reference(reference: str, value: str, target: str) -> bool:
    if not reference:
        return False
    wanted = value if "/" in value else f"{target}/{value}"
    return reference == wanted or reference.endswith("/" + wanted) or wanted.endswith("/" + reference)


def _active(resource: dict[str, Any], value: str) -> bool:
    if value not in ("true", "false"):
        raise SearchError(f"active: {value!r} is not true or false")
    return bool(resource.get("active", True)) == (value == "true")


Matcher = Callable[[dict[str, Any], str, str], bool]
"""``(resource, one value, modifier) -> matches``; modifiers are checked before calling."""


@dataclass(frozen=True, slots=True)
class Parameter:
    match: Matcher
    modifiers: frozenset[str] = frozenset({""})


def _string(values: Callable[[dict[str, Any]], list[str]]) -> Parameter:
    return Parameter(lambda r, v, m: _match_string(values(r), v, m), STRING_MODIFIERS)


def _token_parameter(pairs: Callable[[dict[str, Any]], list[tuple[str, str]]]) -> Parameter:
    return Parameter(lambda r, v, m: _match_token(pairs(r), v))


def _reference_parameter(element: str, target: str) -> Parameter:
    return Parameter(lambda r, v, m: _match_reference(_reference(r, element), v, target))


_ID = Parameter(lambda r, v, m: r.get("id") == v)
_ACTIVE = Parameter(lambda r, v, m: _active(r, v))
_IDENTIFIER = _token_parameter(_identifiers)
_MAILBOX = _string(mailboxes)

PARAMETERS: dict[str, dict[str, Parameter]] = {
    "Practitioner": {
        "_id": _ID,
        "identifier": _IDENTIFIER,
        "family": _string(lambda r: _names(r, ("family",))),
        "given": _string(lambda r: _names(r, ("given",))),
        "name": _string(lambda r: _names(r, ("family", "given", "text", "prefix", "suffix"))),
        "mailbox-mss": _MAILBOX,
        "active": _ACTIVE,
    },
    "PractitionerRole": {
        "_id": _ID,
        "identifier": _IDENTIFIER,
        "practitioner": _reference_parameter("practitioner", "Practitioner"),
        "organization": _reference_parameter("organization", "Organization"),
        "mailbox-mss": _MAILBOX,
        "active": _ACTIVE,
    },
    "Organization": {
        "_id": _ID,
        "identifier": _IDENTIFIER,
        "name": _string(_organization_names),
        "mailbox-mss": _MAILBOX,
        "active": _ACTIVE,
    },
}
"""Search parameters per resource type (``identifier`` takes the RPPS, IDNPS or any other system)."""


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: ``name[:modifier]=v1,v2`` (any value matching)."""

    name: str
    modifier: str
    values: tuple[str, ...]


@dataclass(slots=True)
class Search:
    """A parsed search on one resource type."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int | None = None
    revinclude: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    format: str | None = None

    def matches(self, resource: dict[str, Any]) -> bool:
        table = PARAMETERS[self.resource_type]
        return all(any(table[c.name].match(resource, value, c.modifier) for value in c.values) for c in self.criteria)

    def described(self) -> list[list[str]]:
        """The criteria as ``[name[:modifier], value]`` pairs (for records and the self link)."""
        return [[c.name + (":" + c.modifier if c.modifier else ""), ",".join(c.values)] for c in self.criteria]


def _split_values(raw: str) -> tuple[str, ...]:
    values: list[str] = []
    current = ""
    escaped = False
    for char in raw:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return tuple(values)


def parse_search(resource_type: str, pairs: list[tuple[str, str]], page_size: int) -> Search:
    """The :class:`Search` that ``pairs`` (query or form parameters) ask for.

    Raises:
        SearchError: an unknown parameter or modifier, an empty value, a bad ``_count`` or include.
    """
    table = PARAMETERS[resource_type]
    search = Search(resource_type)
    if len(pairs) > MAX_VALUES:
        raise SearchError(f"too many search parameters ({len(pairs)}, limit {MAX_VALUES})")
    for raw_name, raw_value in pairs:
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMETERS:
            _result_parameter(search, name, modifier, raw_value, page_size)
            continue
        if name not in table:
            known = ", ".join(sorted([*table, *RESULT_PARAMETERS]))
            raise SearchError(f"unknown search parameter {raw_name!r} for {resource_type} (known: {known})")
        if modifier not in table[name].modifiers:
            raise SearchError(f"modifier {modifier!r} is not supported on {resource_type}.{name}")
        values = _split_values(raw_value)
        if len(values) > MAX_VALUES:
            raise SearchError(f"{raw_name}: too many values ({len(values)}, limit {MAX_VALUES})")
        if not any(values):
            raise SearchError(f"{raw_name}: empty value")
        search.criteria.append(Criterion(name, modifier, tuple(v for v in values if v)))
    return search


def _result_parameter(search: Search, name: str, modifier: str, value: str, page_size: int) -> None:
    if modifier and not (name in ("_include", "_revinclude") and modifier == "iterate"):
        raise SearchError(f"modifier {modifier!r} is not supported on {name}")
    if name == "_count":
        if not value.isdigit() or len(value) > 9:
            raise SearchError(f"_count: {value!r} is not a non-negative integer")
        search.count = min(int(value), page_size)
    elif name == "_format":
        search.format = value
    elif name in ("_include", "_revinclude"):
        allowed = (REVINCLUDES if name == "_revinclude" else INCLUDES).get(search.resource_type, frozenset())
        if value not in allowed:
            supported = ", ".join(sorted(allowed)) or "none"
            raise SearchError(f"{name}={value!r} is not supported on {search.resource_type} (supported: {supported})")
        (search.revinclude if name == "_revinclude" else search.include).append(value)


__all__ = [
    "IDNPS_SYSTEM",
    "PARAMETERS",
    "RPPS_SYSTEM",
    "Criterion",
    "Search",
    "SearchError",
    "folded",
    "is_mailbox_mss",
    "mailboxes",
    "parse_search",
]
