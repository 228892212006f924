"""The INSi simulator's identity base: who the simulated national service knows.

Identities are data (``fixtures/insi/identities.toml``), loaded and checked once
(well-formed matricule with its key, unique keys and matricules), then searched the
way INSi searches: by strict traits compared after normalisation, or by what a
Carte Vitale holds. Scenarios change an identity for the time of one scenario
(:meth:`IdentityBase.override`), for example to make a verification come back KO,
and :meth:`IdentityBase.reset` puts the base back as loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness.findings import Severity
from harness.validators.ins import check_matricule, normalise_trait

FIXTURES_ENV = "SEGUR_HARNESS_FIXTURES"
"""Environment variable naming another fixtures folder (it holds ``insi/identities.toml``)."""

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_COG = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")


class IdentityBaseError(ValueError):
    """The identity file is not usable; the message names the file and the identity."""


@dataclass(frozen=True, slots=True)
class FormerIns:
    """A former matricule of an identity (returned as ``INSHISTO``)."""

    matricule: str
    oid: str
    start: str = ""
    end: str = ""


@dataclass(frozen=True, slots=True)
class InsiIdentity:
    """One person INSi knows, with the traits it returns (TIQ) and their Carte Vitale facts.

    Attributes:
        key: short stable name scenarios use (``plain``, ``homonym-a``...).
        matricule: the active matricule INS, 15 characters (13 + key).
        oid: its assigning authority (``.8`` NIR, ``.9`` NIA, ``.10`` test NIR).
        birth_name: nom de naissance.
        first_names: the birth first names, in civil-status order.
        sex: ``M`` or ``F``.
        birth_date: ``YYYY-MM-DD``.
        birthplace: COG code of the birthplace (``99xxx`` abroad), or empty.
        history: former matricules.
        matricule_od: matricule of the ouvrant droit whose Carte Vitale carries this
            person; empty when the person holds their own card.
        rang: rang de naissance (twins on the same card), None when not relevant.
        description: why this identity is in the base.
    """

    key: str
    matricule: str
    oid: str
    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birthplace: str = ""
    history: tuple[FormerIns, ...] = ()
    matricule_od: str = ""
    rang: int | None = None
    description: str = ""

    @property
    def number(self) -> str:
        """The 13 characters of the matricule without its key (``NumIdentifiant``)."""
        return self.matricule[:13]

    @property
    def cle(self) -> str:
        """The two-digit key of the matricule (``Cle``)."""
        return self.matricule[13:]

    @property
    def card_holder(self) -> str:
        """The matricule of the Carte Vitale holder (the person's own when no ``matricule_od``)."""
        return self.matricule_od or self.matricule

    def matches_traits(self, birth_name: str, first_name: str, sex: str, birth_date: str, birthplace: str) -> bool:
        """Whether a RECSANSVITALE query designates this identity.

        Birth name and first name are compared after :func:`normalise_trait`; the first
        name must be one of the birth first names (or the whole list, space separated);
        the birthplace counts only when given.
        """
        if normalise_trait(birth_name) != normalise_trait(self.birth_name):
            return False
        if sex.strip().upper() != self.sex or birth_date.strip() != self.birth_date:
            return False
        wanted = normalise_trait(first_name)
        names = [normalise_trait(n) for n in self.first_names]
        if wanted not in names and wanted != " ".join(names):
            return False
        return not birthplace.strip() or birthplace.strip().upper() == self.birthplace.upper()

    def matches_card(self, matricule_od: str, matricule_individu: str, birth_date: str, rang: str) -> bool:
        """Whether a RECVITALE query designates this identity (empty criteria are ignored).

        Matricules are compared on their first 13 characters: cards and clients send
        them with or without the key.
        """
        if not matricule_od.strip() or matricule_od.strip()[:13] != self.card_holder[:13]:
            return False
        if matricule_individu.strip() and matricule_individu.strip()[:13] != self.number:
            return False
        if birth_date.strip() and birth_date.strip() != self.birth_date:
            return False
        return not rang.strip() or rang.strip().lstrip("0") == str(self.rang or 1)


class IdentityBase:
    """The identities the simulator answers from, with per-scenario overrides.

    Thread-safe: the server's threads search while a scenario overrides.
    """

    def __init__(self, identities: list[InsiIdentity], source: str = "<memory>") -> None:
        _check_unique(identities, source)
        self.source = source
        self._loaded: tuple[InsiIdentity, ...] = tuple(identities)
        self._current: dict[str, InsiIdentity] = {i.key: i for i in identities}
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> IdentityBase:
        """Read and check a TOML identity file (``[[identity]]`` tables).

        Raises:
            IdentityBaseError: unreadable file, missing field, bad matricule, duplicate key...
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise IdentityBaseError(f"{path}: cannot read the identity base: {exc}") from exc
        tables = data.get("identity", [])
        if not isinstance(tables, list):
            raise IdentityBaseError(f"{path}: 'identity' must be an array of tables ([[identity]])")
        identities = [_identity(table, f"{path}: identity #{n}") for n, table in enumerate(tables, start=1)]
        return cls(identities, source=str(path))

    @classmethod
    def default(cls) -> IdentityBase:
        """The synthetic base shipped with the harness (``fixtures/insi/identities.toml``).

        The fixtures folder is ``$SEGUR_HARNESS_FIXTURES`` when set, else ``fixtures/``
        beside the ``harness`` package.
        """
        return cls.load(default_fixtures_dir() / "insi" / "identities.toml")

    # -- reading -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[InsiIdentity]:
        with self._lock:
            return iter(list(self._current.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._current)

    def get(self, matricule: str) -> InsiIdentity | None:
        """The identity whose active matricule is ``matricule`` (13 or 15 characters), or None."""
        wanted = matricule.strip()[:13]
        with self._lock:
            return next((i for i in self._current.values() if i.number == wanted), None)

    def named(self, key: str) -> InsiIdentity:
        """The identity with this ``key``.

        Raises:
            KeyError: no identity has that key.
        """
        with self._lock:
            return self._current[key]

    def search_by_traits(
        self, birth_name: str, first_name: str, sex: str, birth_date: str, birthplace: str = ""
    ) -> list[InsiIdentity]:
        """Every identity a RECSANSVITALE query designates."""
        return [i for i in self if i.matches_traits(birth_name, first_name, sex, birth_date, birthplace)]

    def search_by_card(
        self, matricule_od: str, matricule_individu: str = "", birth_date: str = "", rang: str = ""
    ) -> list[InsiIdentity]:
        """Every identity a RECVITALE query designates."""
        return [i for i in self if i.matches_card(matricule_od, matricule_individu, birth_date, rang)]

    # -- changing ----------------------------------------------------------------------------
    def override(self, matricule: str, **changes: Any) -> InsiIdentity:
        """Change fields of one identity until :meth:`reset`; returns the changed identity.

        ``matricule`` may also be the identity's ``key``. Example:
        ``base.override(identity.matricule, birth_name=identity.birth_name + "-MODIFIE")``.

        Raises:
            KeyError: no such identity.
            TypeError: a field name that :class:`InsiIdentity` does not have.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(InsiIdentity)}
        if unknown:
            raise TypeError(f"InsiIdentity has no field(s) {sorted(unknown)}")
        if "first_names" in changes:
            changes["first_names"] = tuple(changes["first_names"])
        if "history" in changes:
            changes["history"] = tuple(changes["history"])
        with self._lock:
            key = self._key_of(matricule)
            changed = dataclasses.replace(self._current[key], **changes)
            self._current[key] = changed
        return changed

    def add(self, identity: InsiIdentity) -> None:
        """Make INSi know one more identity until :meth:`reset`.

        Raises:
            ValueError: its key or matricule is already known.
        """
        _check_identity(identity, f"added identity {identity.key!r}")
        with self._lock:
            _check_unique([*self._current.values(), identity], "added identity")
            self._current[identity.key] = identity

    def remove(self, matricule: str) -> InsiIdentity:
        """Make INSi forget one identity until :meth:`reset` (``matricule`` may be the key)."""
        with self._lock:
            return self._current.pop(self._key_of(matricule))

    def reset(self) -> None:
        """Forget every override, addition and removal."""
        with self._lock:
            self._current = {i.key: i for i in self._loaded}

    def _key_of(self, reference: str) -> str:
        if reference in self._current:
            return reference
        wanted = reference.strip()[:13]
        for key, identity in self._current.items():
            if identity.number == wanted:
                return key
        raise KeyError(f"no identity {reference!r} in the INSi base")


def default_fixtures_dir() -> Path:
    """The fixtures folder: ``$SEGUR_HARNESS_FIXTURES`` or ``fixtures/`` beside the ``harness`` package."""
    configured = os.environ.get(FIXTURES_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(harness.__file__).resolve().parents[1] / "fixtures"


# -- parsing and checks -------------------------------------------------------------------------


def _identity(table: Any, where: str) -> InsiIdentity:
    if not isinstance(table, Mapping):
        raise IdentityBaseError(f"{where}: not a table")
    key = _text(table, "key", where)
    where = f"{where} ({key})"
    first_names = table.get("first_names")
    if not isinstance(first_names, list) or not first_names or not all(isinstance(n, str) for n in first_names):
        raise IdentityBaseError(f"{where}: 'first_names' must be a non-empty list of strings")
    rang = table.get("rang")
    if rang is not None and (isinstance(rang, bool) or not isinstance(rang, int) or not 1 <= rang <= 9):
        raise IdentityBaseError(f"{where}: 'rang' must be an integer from 1 to 9")
    history_tables = table.get("history", [])
    if not isinstance(history_tables, list):
        raise IdentityBaseError(f"{where}: 'history' must be an array of tables")
    identity = InsiIdentity(
        key=key,
        matricule=_text(table, "matricule", where),
        oid=_text(table, "oid", where),
        birth_name=_text(table, "birth_name", where),
        first_names=tuple(first_names),
        sex=_text(table, "sex", where),
        birth_date=_text(table, "birth_date", where),
        birthplace=_text(table, "birthplace", where, required=False),
        history=tuple(_former(h, f"{where} history #{n}") for n, h in enumerate(history_tables, start=1)),
        matricule_od=_text(table, "matricule_od", where, required=False),
        rang=rang,
        description=_text(table, "description", where, required=False),
    )
    _check_identity(identity, where)
    return identity


def _former(table: Any, where: str) -> FormerIns:
    if not isinstance(table, Mapping):
        raise IdentityBaseError(f"{where}: not a table")
    former = FormerIns(
        matricule=_text(table, "matricule", where),
        oid=_text(table, "oid", where),
        start=_text(table, "start", where, required=False),
        end=_text(table, "end", where, required=False),
    )
    _check_matricule(former.matricule, former.oid, where)
    for label, value in (("start", former.start), ("end", former.end)):
        if value and not _ISO_DATE.match(value):
            raise IdentityBaseError(f"{where}: '{label}' must be YYYY-MM-DD")
    return former


def _text(table: Mapping[str, Any], name: str, where: str, required: bool = True) -> str:
    value = table.get(name, "")
    if not isinstance(value, str):
        raise IdentityBaseError(f"{where}: '{name}' must be a string")
    if required and not value.strip():
        raise IdentityBaseError(f"{where}: '{name}' is required")
    return value.strip()


def _check_identity(identity: InsiIdentity, where: str) -> None:
    _check_matricule(identity.matricule, identity.oid, where)
    if identity.sex not in ("M", "F"):
        raise IdentityBaseError(f"{where}: 'sex' must be M or F")
    if not _ISO_DATE.match(identity.birth_date):
        raise IdentityBaseError(f"{where}: 'birth_date' must be YYYY-MM-DD")
    if identity.birthplace and not _COG.match(identity.birthplace):
        raise IdentityBaseError(f"{where}: 'birthplace' must be a COG code (5 digits or 2A/2B + 3 digits)")
    if identity.matricule_od and len(identity.matricule_od) not in (13, 15):
        raise IdentityBaseError(f"{where}: 'matricule_od' must have 13 or 15 characters")


def _check_matricule(matricule: str, oid: str, where: str) -> None:
    problems = [f.message for f in check_matricule(matricule, oid) if f.severity is Severity.ERROR]
    if problems:
        raise IdentityBaseError(f"{where}: " + "; ".join(problems))


def _check_unique(identities: list[InsiIdentity], source: str) -> None:
    keys: set[str] = set()
    numbers: set[str] = set()
    for identity in identities:
        if identity.key in keys:
            raise IdentityBaseError(f"{source}: duplicate identity key {identity.key!r}")
        if identity.number in numbers:
            raise IdentityBaseError(f"{source}: duplicate matricule {identity.matricule} ({identity.key})")
        keys.add(identity.key)
        numbers.add(identity.number)


__all__ = [
    "FIXTURES_ENV",
    "FormerIns",
    "IdentityBase",
    "IdentityBaseError",
    "InsiIdentity",
    "default_fixtures_dir",
]
