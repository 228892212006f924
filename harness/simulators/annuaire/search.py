"""FHIR search over the simulated directory: the parameters the Annuaire Santé API documents, strictly.

Parameters are read as FHIR R4 defines them: repeated parameters are AND, comma-separated values
are OR; string parameters match a prefix, ignoring case and accents (``:exact`` and ``:contains``
change that); token parameters take ``system|code``, ``|code``, ``system|`` or ``code``; reference
parameters take ``Type/id`` or ``id``; the date parameter ``_lastUpdated`` takes a prefix (``eq``,
``ge``, ``gt``, ``le``, ``lt``; ``eq`` when none) and a FHIR date or dateTime of any precision, the
value standing for the whole interval its precision spans. The simulator is **strict**: a parameter or modifier it does
not know is a 400 (FHIR allows a server to ignore them; a practice relying on a parameter the real
API does not support would then be told, not silently given every resource).

Which parameter each type has follows the ANS CapabilityStatement (IG-fhir-annuaire
``AsServerDPCapabilityStatement``) and the ``as-sp-*`` SearchParameters. Inferred [I]: a
``_lastUpdated`` value without a time zone is read as UTC (FHIR leaves it to the server), and
``le``/``lt`` are accepted though the CapabilityStatement names only ``gt``, ``ge`` and ``eq``;
``number-smartcard`` is served on Practitioner (as the CapabilityStatement has it, reading the
``as-ext-smartcard`` extension), not on PractitionerRole as the older SearchParameter says.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from harness.simulators.annuaire.directory import (
    EMAIL_TYPE_URL,
    IDNPS_SYSTEM,
    MAILBOX_METADATA_URL,
    RPPS_SYSTEM,
    SMARTCARD_URL,
)

RESULT_PARAMETERS = frozenset({"_count", "_format", "_pretty", "_total", "_include", "_revinclude"})
"""Parameters shaping the answer rather than selecting resources (``_total`` is accepted and ignored)."""
REVINCLUDES = {
    "Practitioner": frozenset({"PractitionerRole:practitioner"}),
    "Organization": frozenset(
        {"PractitionerRole:organization", "HealthcareService:organization", "Device:organization"}
    ),
}
INCLUDES = {
    "PractitionerRole": frozenset({"PractitionerRole:practitioner", "PractitionerRole:organization"}),
    "HealthcareService": frozenset({"HealthcareService:organization"}),
    "Device": frozenset({"Device:organization"}),
}
REFERENCE_ELEMENTS = {
    "PractitionerRole:practitioner": "practitioner",
    "PractitionerRole:organization": "organization",
    "HealthcareService:organization": "providedBy",
    "Device:organization": "owner",
}
"""The element each reference parameter (``Type:parameter``) reads, for searches and ``_include``/``_revinclude``."""
DATE_PREFIXES = frozenset({"eq", "ge", "gt", "le", "lt"})
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


def _codings(concept: Any) -> list[tuple[str, str]]:
    """``(system, code)`` of each coding of a CodeableConcept (nothing when it is not one)."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [(str(c.get("system", "")), str(c.get("code", ""))) for c in codings or [] if isinstance(c, dict)]


def _identifier_types(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """The codings of each identifier's ``type`` (RPPS, IDNPS, FINEG…): what ``identifier-type`` matches."""
    return [pair for i in resource.get("identifier", []) for pair in _codings(i.get("type"))]


def _sub_extensions(extensions: Any, url: str, sub: str) -> list[dict[str, Any]]:
    """The ``sub`` sub-extensions of each extension ``url`` in ``extensions``."""
    return [
        inner
        for outer in extensions or []
        if isinstance(outer, dict) and outer.get("url") == url
        for inner in outer.get("extension", [])
        if isinstance(inner, dict) and inner.get("url") == sub
    ]


def mailbox_types(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """The BAL types (PER, ORG, APP, CAB) of a resource's MSSanté addresses, as ``(system, code)``."""
    return [
        pair
        for telecom in resource.get("telecom", [])
        if is_mailbox_mss(telecom)
        for kind in _sub_extensions(telecom.get("extension"), MAILBOX_METADATA_URL, "type")
        for pair in _codings(kind.get("valueCodeableConcept"))
    ]


def _smartcard_numbers(resource: dict[str, Any]) -> list[str]:
    return [
        str(number["valueString"])
        for number in _sub_extensions(resource.get("extension"), SMARTCARD_URL, "number")
        if isinstance(number.get("valueString"), str)
    ]


def _instant(text: str) -> datetime | None:
    """A stored ``instant``/``dateTime`` as an aware datetime (UTC when it has no offset), or None."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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


_DATE = re.compile(
    r"^(?P<prefix>[a-z]{2})?(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(value: str) -> tuple[str, datetime, datetime]:
    """``(prefix, start, end)``: a date search value and the half-open interval its precision spans.

    Raises:
        SearchError: a prefix other than eq/ge/gt/le/lt, or not a FHIR date or dateTime.
    """
    match = _DATE.match(value)
    if match is None:
        raise SearchError(f"_lastUpdated: {value[:64]!r} is not [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.s]][zone]]]]")
    prefix = match["prefix"] or "eq"
    if prefix not in DATE_PREFIXES:
        raise SearchError(
            f"_lastUpdated: prefix {prefix!r} is not supported (supported: {', '.join(sorted(DATE_PREFIXES))})"
        )
    try:
        start, end = _interval(match)
    except (ValueError, OverflowError):
        raise SearchError(f"_lastUpdated: {value[:64]!r} is not a valid date") from None
    return prefix, start, end


def _interval(match: re.Match[str]) -> tuple[datetime, datetime]:
    """The interval a matched date value spans: a year, a month, a day, a minute, a second or a fraction."""
    year, month, day = int(match["year"]), int(match["month"] or 1), int(match["day"] or 1)
    zone = _zone(match["zone"])
    if match["hour"] is None:
        start = datetime(year, month, day, tzinfo=zone)
        if match["day"]:
            return start, start + timedelta(days=1)
        if match["month"]:
            return start, (start + timedelta(days=32)).replace(day=1)
        return start, start.replace(year=year + 1)
    fraction = match["fraction"] or ""
    microseconds = int((fraction + "000000")[:6])
    start = datetime(
        year, month, day, int(match["hour"]), int(match["minute"]), int(match["second"] or 0), microseconds, zone
    )
    if match["second"] is None:
        return start, start + timedelta(minutes=1)
    return start, start + timedelta(microseconds=10 ** (6 - min(len(fraction), 6)) if fraction else 1_000_000)


def _zone(text: str | None) -> tzinfo:
    """The tzinfo of a ``Z``/``±hh:mm`` suffix; UTC when there is none [I]."""
    if not text or text == "Z":
        return UTC
    offset = timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
    return timezone(-offset if text[0] == "-" else offset)


def _match_date(text: str, value: str) -> bool:
    """FHIR date search against a point in time: eq inside, ge/gt from the start/end on, le/lt before the end/start."""
    instant = _instant(text) if text else None
    if instant is None:
        return False
    prefix, start, end = date_range(value)
    return {
        "eq": start <= instant < end,
        "ge": instant >= start,
        "gt": instant >= end,
        "le": instant < end,
        "lt": instant < start,
    }[prefix]


def _last_updated(resource: dict[str, Any]) -> str:
    return str((resource.get("meta") or {}).get("lastUpdated", ""))


Matcher = Callable[[dict[str, Any], str, str], bool]
"""``(resource, one value, modifier) -> matches``; modifiers are checked before calling."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """How one search parameter matches, which modifiers it takes, and how a value is checked before searching."""

    match: Matcher
    modifiers: frozenset[str] = frozenset({""})
    check: Callable[[str], object] | None = None


def _string(values: Callable[[dict[str, Any]], list[str]]) -> Parameter:
    return Parameter(lambda r, v, m: _match_string(values(r), v, m), STRING_MODIFIERS)


def _token_parameter(pairs: Callable[[dict[str, Any]], list[tuple[str, str]]]) -> Parameter:
    return Parameter(lambda r, v, m: _match_token(pairs(r), v))


def _reference_parameter(element: str, target: str) -> Parameter:
    return Parameter(lambda r, v, m: _match_reference(_reference(r, element), v, target))


_ID = Parameter(lambda r, v, m: r.get("id") == v)
_LAST_UPDATED = Parameter(lambda r, v, m: _match_date(_last_updated(r), v), check=date_range)
_ACTIVE = Parameter(lambda r, v, m: _active(r, v))
_IDENTIFIER = _token_parameter(_identifiers)
_IDENTIFIER_TYPE = _token_parameter(_identifier_types)
_MAILBOX = _string(mailboxes)
_MAILBOX_TYPE = _token_parameter(mailbox_types)
_ORGANIZATION_OF = {
    kind: _reference_parameter(REFERENCE_ELEMENTS[f"{kind}:organization"], "Organization")
    for kind in ("PractitionerRole", "HealthcareService", "Device")
}

PARAMETERS: dict[str, dict[str, Parameter]] = {
    "Practitioner": {
        "_id": _ID,
        "_lastUpdated": _LAST_UPDATED,
        "identifier": _IDENTIFIER,
        "identifier-type": _IDENTIFIER_TYPE,
        "family": _string(lambda r: _names(r, ("family",))),
        "given": _string(lambda r: _names(r, ("given",))),
        "name": _string(lambda r: _names(r, ("family", "given", "text", "prefix", "suffix"))),
        "mailbox-mss": _MAILBOX,
        "mailbox-mss-type": _MAILBOX_TYPE,
        "number-smartcard": _string(_smartcard_numbers),
        "active": _ACTIVE,
    },
    "PractitionerRole": {
        "_id": _ID,
        "_lastUpdated": _LAST_UPDATED,
        "identifier": _IDENTIFIER,
        "practitioner": _reference_parameter(REFERENCE_ELEMENTS["PractitionerRole:practitioner"], "Practitioner"),
        "organization": _ORGANIZATION_OF["PractitionerRole"],
        "mailbox-mss": _MAILBOX,
        "mailbox-mss-type": _MAILBOX_TYPE,
        "active": _ACTIVE,
    },
    "Organization": {
        "_id": _ID,
        "_lastUpdated": _LAST_UPDATED,
        "identifier": _IDENTIFIER,
        "identifier-type": _IDENTIFIER_TYPE,
        "name": _string(_organization_names),
        "mailbox-mss": _MAILBOX,
        "mailbox-mss-type": _MAILBOX_TYPE,
        "active": _ACTIVE,
    },
    "HealthcareService": {
        "_id": _ID,
        "_lastUpdated": _LAST_UPDATED,
        "identifier": _IDENTIFIER,
        "organization": _ORGANIZATION_OF["HealthcareService"],
        "active": _ACTIVE,
    },
    "Device": {
        "_id": _ID,
        "_lastUpdated": _LAST_UPDATED,
        "identifier": _IDENTIFIER,
        "organization": _ORGANIZATION_OF["Device"],
        "status": Parameter(lambda r, v, m: r.get("status") == v),
    },
}
"""Search parameters per resource type (``identifier`` takes the RPPS, IDNPS or any other system).

A subset of the real API's: the ones a practice uses to find a correspondent and its BAL, and to
synchronise (``_lastUpdated``); the others (``address-*``, ``qualification-code``, ``role``,
``type``, ``data-*``…) are refused like any unknown parameter.
"""


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
        kept = tuple(v for v in values if v)
        check = table[name].check
        if check is not None:
            for value in kept:
                check(value)
        search.criteria.append(Criterion(name, modifier, kept))
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
    "DATE_PREFIXES",
    "IDNPS_SYSTEM",
    "PARAMETERS",
    "REFERENCE_ELEMENTS",
    "RPPS_SYSTEM",
    "Criterion",
    "Search",
    "SearchError",
    "date_range",
    "folded",
    "is_mailbox_mss",
    "mailbox_types",
    "mailboxes",
    "parse_search",
]
