"""What the INSi simulator notices about a request's headers and body, as findings.

The simulator answers a request whose context headers are incomplete (the real
service's tolerance is unknown, and a scenario learns more from an answer plus a
finding than from a refusal), but it records every deviation from the integration
facts of ``shared/docs/protocols.md`` §1.2-1.3 so scenarios can judge the SUT's
requests: WS-Addressing ``Action`` and ``MessageID``, ``ContexteBAM`` version 01_02
with ``Id``/``Temps``/``Emetteur``, ``ContexteLPS`` version 01_00 with the software's
``IDAM``/``Version``/``Instance``/``Nom``, the action matching the body, and the
mandatory fields of each query. Rule ids are stable (``insi.header.*``,
``insi.wsa.*``, ``insi.request.*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from harness.findings import Finding, error, warning
from harness.simulators.insi.soap import CTXBAM, CTXLPS, WSA, Envelope, Operation, child_text

SOURCE = "insi-simulator"
BAM_VERSION = "01_02"
LPS_VERSION = "01_00"
MAX_FIELD = 200
"""Longer query values are refused: no strict trait comes near it."""

_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})$"
)
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_COG = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
_MATRICULE = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?$")


@dataclass(slots=True)
class Addressing:
    """The WS-Addressing facts of a request."""

    action: str = ""
    message_id: str = ""
    to: str = ""
    repeated: list[str] = field(default_factory=list)
    """WS-Addressing headers present more than once."""


def addressing(envelope: Envelope) -> Addressing:
    counts: dict[str, int] = {}
    if envelope.header is not None:
        for block in envelope.header.iterchildren(f"{{{WSA}}}*"):
            name = etree.QName(block).localname
            counts[name] = counts.get(name, 0) + 1
    return Addressing(
        action=_header_text(envelope, WSA, "Action"),
        message_id=_header_text(envelope, WSA, "MessageID"),
        to=_header_text(envelope, WSA, "To"),
        repeated=sorted(name for name, count in counts.items() if count > 1),
    )


def check_addressing(facts: Addressing, operation: Operation, http_action: str) -> list[Finding]:
    """WS-Addressing rules: Action and MessageID present, Action naming the body's operation."""
    findings: list[Finding] = []
    if not facts.action:
        findings.append(_error("insi.wsa.action-missing", "wsa:Action header is missing", "wsa:Action"))
    elif facts.action != operation.action:
        findings.append(
            _error(
                "insi.wsa.action-body-mismatch",
                f"wsa:Action {facts.action!r} does not match the body {operation.value} ({operation.action})",
                "wsa:Action",
            )
        )
    if not facts.message_id:
        findings.append(_error("insi.wsa.message-id-missing", "wsa:MessageID header is missing", "wsa:MessageID"))
    for name in facts.repeated:
        findings.append(_error("insi.wsa.repeated-header", f"wsa:{name} appears more than once", f"wsa:{name}"))
    if http_action and http_action != (facts.action or operation.action):
        findings.append(
            warning(
                "insi.http.action-mismatch",
                f"the action parameter of Content-Type ({http_action!r}) differs from the operation called",
                "Content-Type",
                SOURCE,
            )
        )
    return findings


def check_contexte_bam(envelope: Envelope, operation: Operation, matricule_od: str = "") -> list[Finding]:
    """ContexteBAM: present, Version 01_02, Id, Temps (UTC timestamp), Emetteur; COUVERTURE for a card search."""
    bam = envelope.header_block(CTXBAM, "ContexteBAM")
    if bam is None:
        return [_error("insi.header.contexte-bam.missing", "ctxbam:ContexteBAM header is missing", "ContexteBAM")]
    findings = _check_version(bam, "contexte-bam", "ContexteBAM", BAM_VERSION)
    findings += _check_context_fields(bam, "contexte-bam", "ContexteBAM")
    if operation is Operation.RECVITALE:
        assure = child_text(bam, "COUVERTURE", "ASSURE", "Id", "Num")
        if not assure:
            findings.append(
                warning(
                    "insi.header.contexte-bam.couverture",
                    "a search by Carte Vitale should carry COUVERTURE/ASSURE/Id/Num (the ouvrant droit)",
                    "ContexteBAM/COUVERTURE",
                    SOURCE,
                )
            )
        elif matricule_od and assure[:13] != matricule_od[:13]:
            findings.append(
                _error(
                    "insi.header.contexte-bam.couverture",
                    f"COUVERTURE/ASSURE ({assure}) differs from the body's MatriculeOD ({matricule_od})",
                    "ContexteBAM/COUVERTURE",
                )
            )
    return findings


def check_contexte_lps(envelope: Envelope) -> list[Finding]:
    """ContexteLPS: present, Version 01_00, Id, Temps, Emetteur, and LPS with IDAM, Version, Instance, Nom."""
    lps = envelope.header_block(CTXLPS, "ContexteLPS")
    if lps is None:
        return [_error("insi.header.contexte-lps.missing", "ctxlps:ContexteLPS header is missing", "ContexteLPS")]
    findings = _check_version(lps, "contexte-lps", "ContexteLPS", LPS_VERSION)
    findings += _check_context_fields(lps, "contexte-lps", "ContexteLPS")
    software = lps.find("{*}LPS")
    if software is None:
        findings.append(_error("insi.header.contexte-lps.lps", "ContexteLPS has no LPS block", "ContexteLPS/LPS"))
        return findings
    for name in ("IDAM", "Version", "Nom"):
        if not child_text(software, name):
            findings.append(
                _error(
                    f"insi.header.contexte-lps.{name.lower()}",
                    f"ContexteLPS/LPS/{name} is missing or empty",
                    f"ContexteLPS/LPS/{name}",
                )
            )
    if not child_text(software, "Instance"):
        findings.append(
            warning(
                "insi.header.contexte-lps.instance",
                "ContexteLPS/LPS/Instance (the installation's uuid) is missing",
                "ContexteLPS/LPS/Instance",
                SOURCE,
            )
        )
    idam = software.find("{*}IDAM")
    if idam is not None and idam.get("R") not in (None, "4"):
        findings.append(
            warning(
                "insi.header.contexte-lps.idam-r",
                f"IDAM attribute R is {idam.get('R')!r}, 4 expected",
                "ContexteLPS/LPS/IDAM",
                SOURCE,
            )
        )
    return findings


def _check_version(block: etree._Element, rule: str, label: str, expected: str) -> list[Finding]:
    version = block.get("Version")
    if version == expected:
        return []
    seen = "missing" if version is None else repr(version)
    return [_error(f"insi.header.{rule}.version", f"{label} Version is {seen}, {expected} expected", label)]


def _check_context_fields(block: etree._Element, rule: str, label: str) -> list[Finding]:
    findings: list[Finding] = []
    for name in ("Id", "Temps", "Emetteur"):
        if not child_text(block, name):
            findings.append(
                _error(f"insi.header.{rule}.{name.lower()}", f"{label}/{name} is missing or empty", f"{label}/{name}")
            )
    temps = child_text(block, "Temps")
    if temps and not _TIMESTAMP.match(temps):
        findings.append(
            warning(
                f"insi.header.{rule}.temps-format",
                f"{label}/Temps {temps!r} is not an ISO 8601 timestamp with a time zone",
                f"{label}/Temps",
                SOURCE,
            )
        )
    return findings


# -- queries ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Query:
    """The search criteria of a request, as recorded in ``meta["query"]``, and what is wrong with them."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)

    @property
    def blocking(self) -> list[Finding]:
        """The problems that stop the search (missing or malformed fields; namespace slips do not)."""
        return [f for f in self.problems if f.rule == "insi.request.field"]


def read_traits_query(payload: etree._Element) -> Query:
    """RECSANSVITALE: NomNaissance, Prenom, Sexe, DateNaissance required; LieuNaissance optional."""
    query = Query(
        {
            "birth_name": child_text(payload, "NomNaissance"),
            "first_name": child_text(payload, "Prenom"),
            "sex": child_text(payload, "Sexe"),
            "birth_date": child_text(payload, "DateNaissance"),
            "birthplace": child_text(payload, "LieuNaissance"),
        }
    )
    for key, element in (
        ("birth_name", "NomNaissance"),
        ("first_name", "Prenom"),
        ("sex", "Sexe"),
        ("birth_date", "DateNaissance"),
    ):
        if not query.values[key]:
            query.problems.append(_field_problem(element, "is missing or empty"))
    if query.values["sex"] and query.values["sex"] not in ("M", "F"):
        query.problems.append(_field_problem("Sexe", f"is {query.values['sex']!r}, M or F expected"))
    if query.values["birth_date"] and not _ISO_DATE.match(query.values["birth_date"]):
        query.problems.append(_field_problem("DateNaissance", "is not YYYY-MM-DD"))
    if query.values["birthplace"] and not _COG.match(query.values["birthplace"]):
        query.problems.append(_field_problem("LieuNaissance", "is not a COG code"))
    _check_lengths(query)
    _check_namespaces(payload, query)
    return query


def read_card_query(payload: etree._Element) -> Query:
    """RECVITALE: MatriculeOD required; MatriculeIndividu, NomNaissance, DateNaissance, RangNaissance optional."""
    query = Query(
        {
            "matricule_od": child_text(payload, "MatriculeOD", "NumIdentifiant"),
            "matricule_individu": child_text(payload, "MatriculeIndividu", "NumIdentifiant"),
            "birth_name": child_text(payload, "NomNaissance"),
            "birth_date": child_text(payload, "DateNaissance"),
            "rang": child_text(payload, "RangNaissance"),
        }
    )
    if not query.values["matricule_od"]:
        query.problems.append(_field_problem("MatriculeOD/NumIdentifiant", "is missing or empty"))
    for key, element in (("matricule_od", "MatriculeOD"), ("matricule_individu", "MatriculeIndividu")):
        value = query.values[key]
        if value and not _MATRICULE.match(value):
            query.problems.append(_field_problem(f"{element}/NumIdentifiant", "is not a 13- or 15-character matricule"))
    if query.values["birth_date"] and not _ISO_DATE.match(query.values["birth_date"]):
        query.problems.append(_field_problem("DateNaissance", "is not YYYY-MM-DD"))
    if query.values["rang"] and not query.values["rang"].isdigit():
        query.problems.append(_field_problem("RangNaissance", "is not a number"))
    _check_lengths(query)
    _check_namespaces(payload, query)
    return query


def _check_lengths(query: Query) -> None:
    for key, value in query.values.items():
        if len(value) > MAX_FIELD:
            query.values[key] = value[:MAX_FIELD]
            query.problems.append(_field_problem(key, f"is longer than {MAX_FIELD} characters"))


def _check_namespaces(payload: etree._Element, query: Query) -> None:
    namespace = etree.QName(payload).namespace
    strays = sorted(
        {
            etree.QName(e).localname
            for e in payload.iterdescendants()
            if isinstance(e.tag, str) and etree.QName(e).namespace != namespace
        }
    )
    if strays:
        query.problems.append(
            warning(
                "insi.request.namespace",
                f"element(s) {', '.join(strays)} are not in the namespace of {etree.QName(payload).localname}",
                etree.QName(payload).localname,
                SOURCE,
            )
        )


def _field_problem(element: str, what: str) -> Finding:
    return _error("insi.request.field", f"{element} {what}", element)


def _header_text(envelope: Envelope, namespace: str, name: str) -> str:
    block = envelope.header_block(namespace, name)
    return (block.text or "").strip() if block is not None else ""


def _error(rule: str, message: str, location: str) -> Finding:
    return error(rule, message, location, SOURCE)
