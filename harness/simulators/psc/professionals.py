"""The test health professionals Pro Santé Connect knows: who can log in, and the userinfo claims served for each.

They are data (``fixtures/psc/professionals.json``, synthetic and invented), one entry per
professional holding every userinfo claim the real service returns (protocols.md §4): ``sub``,
``SubjectNameID`` (IdNat_PS: ``8`` + an RPPS-like number), names, roles, organisation, sector,
authentication level, ``otherIds`` and ``SubjectRefPro`` with its ``exercices`` and ``activities``.
Every entry is checked when loaded; an error names the file and the entry.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.simulators.insi.identities import default_fixtures_dir

SUBJECT_NAME_ID = re.compile(r"8\d{11}")
"""IdNat_PS of a professional known by the RPPS: ``8`` followed by 11 digits."""

TEXT_CLAIMS = (
    "sub",
    "SubjectNameID",
    "preferred_username",
    "given_name",
    "family_name",
    "SubjectOrganization",
    "SubjectOrganizationID",
    "Secteur_Activite",
    "Palier_Authentification",
    "Mode_Acces_Raison",
    "Acces_Regulation_Medicale",
    "UITVersion",
    "PSI_Locale",
)
"""The claims each professional must have as strings (possibly empty for ``Mode_Acces_Raison``)."""
_MAY_BE_EMPTY = frozenset({"Mode_Acces_Raison"})
_OTHER_ID_KEYS = ("identifiant", "origine", "qualite")
_EXERCICE_KEYS = ("codeProfession", "codeCategorieProfessionnelle", "nomDexercice", "prenomDexercice")
_ACTIVITY_KEYS = ("codeModeExercice", "codeSecteurDactivite")


class ProfessionalsError(ValueError):
    """The professionals file cannot be read, or an entry lacks a claim or has a wrong one."""


@dataclass(frozen=True, slots=True)
class Professional:
    """One test professional: how the login page names them, and the userinfo claims PSC serves."""

    subject_name_id: str
    sub: str
    given_name: str
    family_name: str
    claims: Mapping[str, Any] = field(repr=False)

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def userinfo(self) -> dict[str, Any]:
        """A deep copy of the userinfo claims (callers may change it)."""
        return copy.deepcopy(dict(self.claims))


def professional_from(entry: Any, where: str) -> Professional:
    """The :class:`Professional` of one entry, checked.

    Raises:
        ProfessionalsError: naming ``where`` and the claim at fault.
    """
    if not isinstance(entry, dict):
        raise ProfessionalsError(f"{where}: an entry must be a JSON object, not {type(entry).__name__}")
    label = f"{where} ({entry.get('SubjectNameID', '?')})"
    for name in TEXT_CLAIMS:
        value = entry.get(name)
        if not isinstance(value, str) or (not value and name not in _MAY_BE_EMPTY):
            raise ProfessionalsError(f"{label}: claim {name!r} must be a non-empty string")
    if not SUBJECT_NAME_ID.fullmatch(entry["SubjectNameID"]):
        raise ProfessionalsError(f"{label}: SubjectNameID must be 8 followed by 11 digits")
    if not isinstance(entry.get("email_verified"), bool):
        raise ProfessionalsError(f"{label}: claim 'email_verified' must be a boolean")
    roles = entry.get("SubjectRole")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and "^" in r for r in roles):
        raise ProfessionalsError(f"{label}: 'SubjectRole' must be a non-empty list of 'code^OID' strings")
    others = entry.get("otherIds")
    if not isinstance(others, list) or not all(isinstance(o, dict) and set(_OTHER_ID_KEYS) <= set(o) for o in others):
        raise ProfessionalsError(f"{label}: 'otherIds' must be a list of objects with {', '.join(_OTHER_ID_KEYS)}")
    _check_ref_pro(entry.get("SubjectRefPro"), label)
    return Professional(
        subject_name_id=entry["SubjectNameID"],
        sub=entry["sub"],
        given_name=entry["given_name"],
        family_name=entry["family_name"],
        claims=copy.deepcopy(entry),
    )


def _check_ref_pro(ref_pro: Any, label: str) -> None:
    if not isinstance(ref_pro, dict) or not isinstance(ref_pro.get("codeCivilite"), str):
        raise ProfessionalsError(f"{label}: 'SubjectRefPro' must be an object with a 'codeCivilite'")
    exercices = ref_pro.get("exercices")
    if not isinstance(exercices, list) or not exercices:
        raise ProfessionalsError(f"{label}: 'SubjectRefPro.exercices' must be a non-empty list")
    for number, exercice in enumerate(exercices, start=1):
        at = f"{label}: SubjectRefPro.exercices[{number}]"
        if not isinstance(exercice, dict) or not all(isinstance(exercice.get(k), str) for k in _EXERCICE_KEYS):
            raise ProfessionalsError(f"{at} needs the strings {', '.join(_EXERCICE_KEYS)}")
        activities = exercice.get("activities")
        if not isinstance(activities, list) or not activities:
            raise ProfessionalsError(f"{at}.activities must be a non-empty list")
        for index, activity in enumerate(activities, start=1):
            if not isinstance(activity, dict) or not all(isinstance(activity.get(k), str) for k in _ACTIVITY_KEYS):
                raise ProfessionalsError(f"{at}.activities[{index}] needs the strings {', '.join(_ACTIVITY_KEYS)}")


def check_unique(professionals: Iterable[Professional], where: str) -> list[Professional]:
    """``professionals`` as a list, refusing two with the same ``SubjectNameID`` or ``sub``."""
    seen: set[str] = set()
    out: list[Professional] = []
    for number, professional in enumerate(professionals, start=1):
        for key in (professional.subject_name_id, professional.sub):
            if key in seen:
                raise ProfessionalsError(f"{where}: professional #{number}: {key} appears twice")
            seen.add(key)
        out.append(professional)
    if not out:
        raise ProfessionalsError(f"{where}: no professional")
    return out


def default_professionals_path() -> Path:
    return default_fixtures_dir() / "psc" / "professionals.json"


def load_professionals(path: Path | None = None) -> list[Professional]:
    """The professionals of ``path`` (default ``fixtures/psc/professionals.json``), each checked.

    The file is an object with a ``professionals`` list (a bare list is accepted too).

    Raises:
        ProfessionalsError: unreadable file, or an entry at fault (named ``file: professional #N (id)``).
    """
    path = path or default_professionals_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfessionalsError(f"{path}: cannot read the professionals: {exc}") from exc
    entries = data.get("professionals") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ProfessionalsError(f"{path}: expected a 'professionals' list")
    found = [professional_from(e, f"{path.name}: professional #{n}") for n, e in enumerate(entries, start=1)]
    return check_unique(found, path.name)
