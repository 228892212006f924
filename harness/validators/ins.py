"""INS rules: the matricule and its OID, the strict traits, and the RNIV identity statuses.

The same INS facts are checked in many places (INSi simulator, HL7 v2 feeds, CDA
headers, FHIR resources, scenario verdicts). Keeping them in one module gives one
stable rule id per fact (``ins.matricule.key``...) whatever the carrier, and one
place to correct when an ANS text teaches us better.

Sources: ``shared/docs/protocols.md`` §0 and §1 (OIDs from the fr-core INS profile,
key rule checked numerically on public CNAM test identities, the four RNIV statuses
from the fr-core ``identity-status`` CodeSystem). What is inferred rather than read is
said next to the code that relies on it.

Everything here is pure: no I/O, no clock unless ``today`` is left to default.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from datetime import date

from harness.findings import Finding, error, info, warning
from harness.sut.model import IdentityStatus, PatientTraits

RULESET = "harness-ins 0.1.0"
SOURCE = "ins"


class InsOid(enum.StrEnum):
    """Assigning authorities of the INS (fr-core ``FRCorePatientINSProfile`` slices)."""

    NIR = "1.2.250.1.213.1.4.8"
    """INS-NIR: the NIR used as national health identifier (production)."""
    NIA = "1.2.250.1.213.1.4.9"
    """INS-NIA: numéro identifiant d'attente, for people not (yet) given a NIR."""
    TEST_NIR = "1.2.250.1.213.1.4.10"
    """INS-NIR de test: every ANS example and the CNAM test platform identities."""
    DEMO_NIR = "1.2.250.1.213.1.4.11"
    """INS-NIR de démonstration. It is not a test NIA: no test-NIA OID is published."""

    @property
    def is_nia(self) -> bool:
        return self is InsOid.NIA

    @property
    def is_test(self) -> bool:
        """True for the test and demonstration authorities, which production must never carry."""
        return self in (InsOid.TEST_NIR, InsOid.DEMO_NIR)

    @property
    def namespace(self) -> str:
        """The HL7 v2 namespace id (CX-4.1) that goes with this OID in PID-3.

        ``ASIP-SANTE-INS-NIR`` with ``.8`` and ``.10`` is seen in the ANS examples;
        ``ASIP-SANTE-INS-NIA`` for ``.9`` and NIR for ``.11`` follow the same pattern (inferred).
        """
        return "ASIP-SANTE-INS-NIA" if self is InsOid.NIA else "ASIP-SANTE-INS-NIR"


def ins_oid(value: str) -> InsOid | None:
    """The :class:`InsOid` for ``value``, or None when it is not an INS authority."""
    try:
        return InsOid(value.strip())
    except (ValueError, AttributeError):
        return None


# --------------------------------------------------------------------------------------
# Matricule
# --------------------------------------------------------------------------------------

_NUMBER13 = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$")
_CORSICA = {"2A": "19", "2B": "18"}


def nir_key(number13: str) -> int:
    """The control key of a 13-character NIR or NIA: ``97 - (n mod 97)``.

    For Corsica the department ``2A`` counts as ``19`` and ``2B`` as ``18`` before the
    modulo. The result is in 1..97 (a number divisible by 97 has key 97).

    Raises:
        ValueError: ``number13`` is not 13 digits (2A/2B allowed at positions 6-7).
            This is a computation helper; :func:`check_matricule` is the validator.
    """
    if not isinstance(number13, str) or not _NUMBER13.match(number13):
        raise ValueError(f"not a 13-character NIR/NIA number: {number13!r}")
    department = number13[5:7]
    digits = number13[:5] + _CORSICA.get(department, department) + number13[7:]
    return 97 - int(digits) % 97


def check_matricule(
    matricule: str,
    oid: str,
    *,
    allow_test: bool = True,
    location: str = "",
) -> list[Finding]:
    """Check a 15-character matricule INS (13 + key) and its OID.

    Rules (ids are stable):
        ``ins.oid.unknown`` the OID is none of :class:`InsOid`;
        ``ins.oid.test`` a test or demonstration OID while ``allow_test`` is False;
        ``ins.matricule.length`` not 15 characters;
        ``ins.matricule.format`` not digits (2A/2B allowed at positions 6-7 only);
        ``ins.matricule.sex`` first digit not 1 or 2 for an INS-NIR;
        ``ins.matricule.month`` month 00 or 13-19; 20-99 is accepted as a pseudo-month
        (``ins.matricule.month-pseudo``, info: INSEE gives such months to people whose
        birth month is unknown; the exact ranges are inferred, hence info only);
        ``ins.matricule.key`` the last two digits are not :func:`nir_key` of the first 13.

    For an INS-NIA only length, format and key are checked: its other structure rules
    were not confirmed in a public source.
    """
    findings: list[Finding] = []
    loc = location or "matricule"
    known = ins_oid(oid) if isinstance(oid, str) else None
    if known is None:
        findings.append(error("ins.oid.unknown", f"OID {oid!r} is not an INS assigning authority", location, SOURCE))
    elif known.is_test and not allow_test:
        findings.append(
            error(
                "ins.oid.test",
                f"test/demonstration INS authority {known.value} where production is expected",
                location,
                SOURCE,
            )
        )

    if not isinstance(matricule, str):
        findings.append(error("ins.matricule.format", "the matricule INS is not text", loc, SOURCE))
        return findings
    if len(matricule) != 15:
        hint = " (13 characters: the key is missing)" if len(matricule) == 13 else ""
        findings.append(
            error(
                "ins.matricule.length",
                f"matricule INS {matricule!r} has {len(matricule)} characters, 15 expected{hint}",
                loc,
                SOURCE,
            )
        )
        return findings
    number, key = matricule[:13], matricule[13:]
    if not _NUMBER13.match(number) or not key.isdigit() or not key.isascii():
        findings.append(
            error(
                "ins.matricule.format",
                f"matricule INS {matricule!r} must be digits, with 2A/2B only at positions 6-7",
                loc,
                SOURCE,
            )
        )
        return findings

    is_nir = known is not None and not known.is_nia
    if is_nir and number[0] not in "12":
        findings.append(
            error("ins.matricule.sex", f"an INS-NIR starts with 1 or 2 (sex), not {number[0]!r}", loc, SOURCE)
        )
    if known is None or is_nir:
        month = int(number[3:5])
        if month == 0 or 13 <= month <= 19:
            findings.append(
                error("ins.matricule.month", f"birth month {number[3:5]} is not plausible in a NIR", loc, SOURCE)
            )
        elif month >= 20:
            findings.append(
                info(
                    "ins.matricule.month-pseudo",
                    f"birth month {number[3:5]} is a pseudo-month (birth month "
                    "unknown or incomplete civil-status record)",
                    loc,
                    SOURCE,
                )
            )
    expected = nir_key(number)
    if int(key) != expected:
        findings.append(
            error(
                "ins.matricule.key",
                f"key {key} of matricule INS {matricule} is wrong: {expected:02d} expected",
                loc,
                SOURCE,
            )
        )
    return findings


def check_matricule_against_traits(matricule: str, oid: str, traits: PatientTraits) -> list[Finding]:
    """Warnings when an INS-NIR contradicts the traits it travels with (sex, birth year, month).

    Only warnings: a NIR is assigned once and the civil status may change later (sex
    change, rectified birth date). Skipped for an INS-NIA or a malformed matricule.
    """
    known = ins_oid(oid) if isinstance(oid, str) else None
    if known is None or known.is_nia or not isinstance(matricule, str) or len(matricule) != 15:
        return []
    if not _NUMBER13.match(matricule[:13]):
        return []
    findings: list[Finding] = []
    sex = {"1": "M", "2": "F"}.get(matricule[0])
    if sex and traits.sex.strip().upper() in ("M", "F") and traits.sex.strip().upper() != sex:
        findings.append(
            warning(
                "ins.matricule.traits-sex", f"the NIR says sex {sex}, the traits say {traits.sex}", "matricule", SOURCE
            )
        )
    birth = _ISO_DATE.match(traits.birth_date.strip())
    if birth:
        if birth.group(1)[2:] != matricule[1:3]:
            findings.append(
                warning(
                    "ins.matricule.traits-year",
                    f"the NIR says birth year ..{matricule[1:3]}, the traits say {birth.group(1)}",
                    "matricule",
                    SOURCE,
                )
            )
        month = matricule[3:5]
        if int(month) <= 12 and birth.group(2) not in ("00", month):
            findings.append(
                warning(
                    "ins.matricule.traits-month",
                    f"the NIR says birth month {month}, the traits say {birth.group(2)}",
                    "matricule",
                    SOURCE,
                )
            )
    return findings


# --------------------------------------------------------------------------------------
# Traits
# --------------------------------------------------------------------------------------

_APOSTROPHES = frozenset("'’‘ʼʹ`´′")
_HYPHENS = frozenset("-‐‑‒–—―−﹣－")
_LIGATURES = {"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "ß": "SS"}
_AROUND_MARKS = re.compile(r" ?([-']) ?")
_INS_CHARSET = re.compile(r"^[A-Z' -]*$")
_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
_COG = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")


def normalise_trait(value: str) -> str:
    """The form under which two name traits are compared.

    The exact rule, applied in this order:

    1. ligatures are spelt out: Œ→OE, Æ→AE, ß→SS (Unicode does not decompose them);
    2. Unicode NFKD, then every combining mark is dropped (É→E, Ç→C, Ñ→N);
    3. every apostrophe look-alike (’ ‘ ʼ ´ ` ′) becomes ``'`` and every dash look-alike
       (‐ ‑ – — − －) becomes ``-``; any whitespace (tabs, no-break spaces) becomes a space;
    4. upper case;
    5. runs of spaces become one space, a space next to a hyphen or an apostrophe is
       dropped (``JEAN - PIERRE`` → ``JEAN-PIERRE``, ``D' ARC`` → ``D'ARC``), and leading
       and trailing spaces are removed.

    Hyphens and apostrophes themselves are kept: the RNIV makes them part of the trait,
    so ``JEAN-PIERRE`` and ``JEAN PIERRE`` stay different. Double hyphens (``--``, the
    old separator of double family names) are kept as they are. Other characters (digits,
    dots) are kept too; :func:`check_traits` reports them.
    """
    if not isinstance(value, str):
        return ""
    text = "".join(_LIGATURES.get(c, c) for c in value)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    chars: list[str] = []
    for c in text:
        if c in _APOSTROPHES:
            chars.append("'")
        elif c in _HYPHENS:
            chars.append("-")
        elif c.isspace():
            chars.append(" ")
        else:
            chars.append(c)
    text = " ".join("".join(chars).upper().split())
    return _AROUND_MARKS.sub(r"\1", text)


def _first_names(traits: PatientTraits) -> str:
    return normalise_trait(" ".join(traits.first_names))


def same_strict_traits(a: PatientTraits, b: PatientTraits) -> bool:
    """True when both identities have the same strict traits once normalised.

    Compared: birth name and the whole list of birth first names (through
    :func:`normalise_trait`; ``("JEAN", "PIERRE")`` equals ``("JEAN PIERRE",)``), sex,
    birth date and birthplace COG (case-insensitive, blanks stripped; an empty COG only
    equals an empty COG). Used name and used first name are not strict traits.
    """
    return (
        normalise_trait(a.birth_name) == normalise_trait(b.birth_name)
        and _first_names(a) == _first_names(b)
        and a.sex.strip().upper() == b.sex.strip().upper()
        and a.birth_date.strip() == b.birth_date.strip()
        and a.birthplace_cog.strip().upper() == b.birthplace_cog.strip().upper()
    )


def check_traits(traits: PatientTraits, *, today: date | None = None) -> list[Finding]:
    """Check the strict traits an INS identity must carry.

    Rules: ``ins.traits.birth-name`` / ``ins.traits.first-names`` (missing: error),
    ``ins.traits.charset`` (warning: after normalisation INSi traits only use A-Z,
    space, hyphen and apostrophe), ``ins.traits.sex`` (M or F), ``ins.traits.birth-date``
    (ISO ``YYYY-MM-DD``, a real date, not in the future), ``ins.traits.birth-date-partial``
    (warning: day or month ``00``), ``ins.traits.birthplace`` (COG: 5 digits, ``2A``/``2B``
    + 3 digits, ``99xxx`` abroad), ``ins.traits.birthplace-missing`` (warning),
    ``ins.traits.birthplace-corsica`` (warning: ``20xxx`` is the pre-1976 Corsica code).
    Locations are the :class:`PatientTraits` attribute names.
    """
    findings: list[Finding] = []
    if not normalise_trait(traits.birth_name):
        findings.append(error("ins.traits.birth-name", "the birth name is missing", "birth_name", SOURCE))
    elif not _INS_CHARSET.match(normalise_trait(traits.birth_name)):
        findings.append(
            warning(
                "ins.traits.charset",
                f"birth name {traits.birth_name!r} has characters INS traits do not use",
                "birth_name",
                SOURCE,
            )
        )
    names = [n for n in traits.first_names if normalise_trait(n)]
    if not names:
        findings.append(error("ins.traits.first-names", "no birth first name", "first_names", SOURCE))
    elif not _INS_CHARSET.match(_first_names(traits)):
        findings.append(
            warning(
                "ins.traits.charset",
                f"first names {' '.join(names)!r} have characters INS traits do not use",
                "first_names",
                SOURCE,
            )
        )
    if traits.sex not in ("M", "F"):
        findings.append(error("ins.traits.sex", f"sex {traits.sex!r} is not M or F", "sex", SOURCE))
    findings.extend(_check_birth_date(traits.birth_date, today or date.today()))
    findings.extend(_check_cog(traits.birthplace_cog))
    return findings


def _check_birth_date(value: str, today: date) -> list[Finding]:
    match = _ISO_DATE.match(value) if isinstance(value, str) else None
    if not match:
        return [error("ins.traits.birth-date", f"birth date {value!r} is not YYYY-MM-DD", "birth_date", SOURCE)]
    year, month, day = (int(g) for g in match.groups())
    if month == 0 or day == 0:
        if month > 12 or day > 31 or (month == 0 and day != 0):
            return [error("ins.traits.birth-date", f"birth date {value!r} is not a date", "birth_date", SOURCE)]
        return [
            warning(
                "ins.traits.birth-date-partial",
                f"birth date {value!r} is partial (unknown day or month)",
                "birth_date",
                SOURCE,
            )
        ]
    try:
        born = date(year, month, day)
    except ValueError:
        return [error("ins.traits.birth-date", f"birth date {value!r} is not a date", "birth_date", SOURCE)]
    if born > today:
        return [error("ins.traits.birth-date", f"birth date {value} is in the future", "birth_date", SOURCE)]
    return []


def _check_cog(value: str) -> list[Finding]:
    cog = value.strip() if isinstance(value, str) else ""
    if not cog:
        return [
            warning(
                "ins.traits.birthplace-missing",
                "no birthplace COG: it is a strict trait of the INS",
                "birthplace_cog",
                SOURCE,
            )
        ]
    if not _COG.match(cog) or cog == "00000":
        return [
            error(
                "ins.traits.birthplace",
                f"birthplace {value!r} is not a COG code (5 digits, 2A/2B + 3 digits, 99xxx abroad)",
                "birthplace_cog",
                SOURCE,
            )
        ]
    if cog.startswith("20"):
        return [
            warning(
                "ins.traits.birthplace-corsica",
                f"birthplace {cog}: Corsican communes are coded 2A/2B in the COG",
                "birthplace_cog",
                SOURCE,
            )
        ]
    return []


# --------------------------------------------------------------------------------------
# RNIV statuses
# --------------------------------------------------------------------------------------


class IdentityEvent(enum.StrEnum):
    """What happens to a local identity that can change its RNIV status."""

    INSI_RETRIEVAL_OK = "insi-retrieval-ok"
    """INS and traits retrieved from INSi and successfully compared with the person's traits."""
    IDENTITY_DOCUMENT_CHECK = "identity-document-check"
    """Traits checked against a high-trust identity document (CNI, passport, titre de séjour...)."""
    VERIFICATION_KO = "verification-ko"
    """An INSi verification no longer confirms the stored INS and traits."""
    STRICT_TRAIT_CHANGE = "strict-trait-change"
    """A strict trait was modified locally."""
    RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK = "received-from-other-domain-verified-ok"
    """An identity with an INS came from another identification domain and INSi verified it locally."""


_S = IdentityStatus
_E = IdentityEvent

TRANSITIONS: Mapping[tuple[IdentityStatus, IdentityEvent], IdentityStatus] = {
    # INSi retrieval adds the "INSi" criterion.
    (_S.PROV, _E.INSI_RETRIEVAL_OK): _S.RECUP,
    (_S.VALI, _E.INSI_RETRIEVAL_OK): _S.QUAL,
    (_S.RECUP, _E.INSI_RETRIEVAL_OK): _S.RECUP,
    (_S.QUAL, _E.INSI_RETRIEVAL_OK): _S.QUAL,
    # A document check adds the "document" criterion.
    (_S.PROV, _E.IDENTITY_DOCUMENT_CHECK): _S.VALI,
    (_S.RECUP, _E.IDENTITY_DOCUMENT_CHECK): _S.QUAL,
    (_S.VALI, _E.IDENTITY_DOCUMENT_CHECK): _S.VALI,
    (_S.QUAL, _E.IDENTITY_DOCUMENT_CHECK): _S.QUAL,
    # A failed verification removes the "INSi" criterion.
    (_S.RECUP, _E.VERIFICATION_KO): _S.PROV,
    (_S.QUAL, _E.VERIFICATION_KO): _S.VALI,
    (_S.PROV, _E.VERIFICATION_KO): _S.PROV,
    (_S.VALI, _E.VERIFICATION_KO): _S.VALI,
    # Changing a strict trait invalidates what INSi vouched for; the document check stays
    # (a correction is made from the document), so VALI stays VALI.
    (_S.RECUP, _E.STRICT_TRAIT_CHANGE): _S.PROV,
    (_S.QUAL, _E.STRICT_TRAIT_CHANGE): _S.VALI,
    (_S.PROV, _E.STRICT_TRAIT_CHANGE): _S.PROV,
    (_S.VALI, _E.STRICT_TRAIT_CHANGE): _S.VALI,
    # The sender's status never travels: a received identity verified through INSi gets
    # the INSi criterion only. QUAL is reached only when the local identity already had
    # its own document check (VALI), i.e. both criteria were met locally.
    (_S.PROV, _E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK): _S.RECUP,
    (_S.RECUP, _E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK): _S.RECUP,
    (_S.VALI, _E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK): _S.QUAL,
    (_S.QUAL, _E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK): _S.QUAL,
}
"""Every (status, event) pair and the status the RNIV expects after it."""


def expected_status(current: IdentityStatus, event: IdentityEvent) -> IdentityStatus:
    """The RNIV status an identity must have after ``event`` (see :data:`TRANSITIONS`).

    A received identity is at most RECUP on its own: the sender's QUAL is not transitive.
    """
    return TRANSITIONS[(IdentityStatus(current), IdentityEvent(event))]


def may_carry_ins(status: IdentityStatus) -> bool:
    """Whether an identity with this status may carry the matricule INS in an exchange.

    The fr-core INS profile says the matricule INS may only travel with a qualified
    identity (QUAL). Nuance: a RECUP identity does store the INS returned by INSi (it
    is what makes it RECUP) but must not transmit it until the identity is qualified.
    """
    return IdentityStatus(status) is IdentityStatus.QUAL


def check_ins_record(
    status: IdentityStatus | str,
    ins: str | None,
    oid: str | None,
    *,
    allow_test: bool = True,
) -> list[Finding]:
    """Consistency of a stored identity: its RNIV status against the INS it holds.

    Rules: ``ins.record.status`` (unknown status), ``ins.record.ins-without-insi``
    (a PROV or VALI identity never got its INS from INSi, so it cannot hold one),
    ``ins.record.ins-missing`` (RECUP/QUAL without an INS), ``ins.record.oid-missing``,
    ``ins.record.not-transmittable`` (info: RECUP stores the INS but must not send it),
    and every :func:`check_matricule` rule on the INS itself.
    """
    try:
        known = IdentityStatus(status)
    except ValueError:
        return [error("ins.record.status", f"{status!r} is not an RNIV identity status", "status", SOURCE)]
    matricule = ins.strip() if isinstance(ins, str) else ""
    findings: list[Finding] = []
    if known in (IdentityStatus.PROV, IdentityStatus.VALI):
        if matricule:
            findings.append(
                error(
                    "ins.record.ins-without-insi",
                    f"a {known.value} identity holds an INS: only an identity "
                    "retrieved through INSi (RECUP or QUAL) can",
                    "ins",
                    SOURCE,
                )
            )
    elif not matricule:
        findings.append(error("ins.record.ins-missing", f"a {known.value} identity has no INS", "ins", SOURCE))
    if not matricule:
        return findings
    if not oid:
        findings.append(error("ins.record.oid-missing", "the INS has no OID", "oid", SOURCE))
    else:
        findings.extend(check_matricule(matricule, oid, allow_test=allow_test, location="ins"))
    if known is IdentityStatus.RECUP:
        findings.append(
            info(
                "ins.record.not-transmittable",
                "a RECUP identity stores its INS but must not transmit it until qualified",
                "ins",
                SOURCE,
            )
        )
    return findings
