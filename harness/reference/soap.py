"""INSi SOAP 1.2 messages: the requests the practice sends and how it reads the answers.

Pure functions from call parameters to envelope bytes, and from answer bytes to an
:class:`InsiAnswer`; no sockets here (see :mod:`harness.reference.insi`). The practice
writes its own envelopes with lxml rather than sharing the simulator's code, so a
misunderstanding of the wire format on one side shows up as a failure.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
CTXBAM = "urn:siram:bam:ctxbam"
CTXLPS = "urn:siram:lps:ctxlps"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
RECVIT = "http://www.cnamts.fr/INSiRecVit"
RESULTAT = "http://www.cnamts.fr/INSiResultat"

TRAITS_OPERATION = "rechercherInsAvecTraitsIdentite"
CARD_OPERATION = "rechercherInsAvecCarteVitale"
ACTION_PREFIX = "urn:ServiceIdentiteCertifiee:1.0.0:"

MAX_ANSWER_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LpsIdentity:
    """How the practice software names itself in ContexteLPS."""

    name: str
    version: str
    instance: str
    idam: str


@dataclass(frozen=True, slots=True)
class CallContext:
    """Everything of a call that is not the query: where, who, when."""

    operation: str
    to: str
    emitter: str
    now: datetime
    lps: LpsIdentity
    with_idam: bool = True
    message_id: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")

    @property
    def action(self) -> str:
        return ACTION_PREFIX + self.operation


@dataclass(frozen=True, slots=True)
class TraitsQuery:
    """RECSANSVITALE: one first name per call."""

    birth_name: str
    first_name: str
    sex: str
    birth_date: str
    birthplace_cog: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "birth_name": self.birth_name,
            "first_name": self.first_name,
            "sex": self.sex,
            "birth_date": self.birth_date,
            "birthplace_cog": self.birthplace_cog,
        }


@dataclass(frozen=True, slots=True)
class CardQuery:
    """RECVITALE: what the Carte Vitale gives for one beneficiary."""

    matricule_od: str
    birth_date: str
    rang: int = 1
    matricule_individu: str = ""

    def to_json(self) -> dict[str, str | int]:
        return {
            "matricule_od": self.matricule_od,
            "matricule_individu": self.matricule_individu,
            "birth_date": self.birth_date,
            "rang": self.rang,
        }


@dataclass(frozen=True, slots=True)
class InsiTraits:
    """TIQ: the reference strict traits INSi returned."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birthplace_cog: str

    def to_json(self) -> dict[str, object]:
        return {
            "birth_name": self.birth_name,
            "first_names": list(self.first_names),
            "sex": self.sex,
            "birth_date": self.birth_date,
            "birthplace_cog": self.birthplace_cog,
        }


@dataclass(frozen=True, slots=True)
class InsiMatricule:
    """One matricule of an answer (the active one or a former one)."""

    matricule: str
    oid: str
    start: str = ""
    end: str = ""

    def to_json(self) -> dict[str, str]:
        return {"matricule": self.matricule, "oid": self.oid, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class InsiIndividu:
    """What INSi returns with CR 00."""

    active: InsiMatricule
    history: tuple[InsiMatricule, ...]
    traits: InsiTraits

    def to_json(self) -> dict[str, object]:
        return {
            "matricule": self.active.matricule,
            "oid": self.active.oid,
            "history": [h.to_json() for h in self.history],
            "traits": self.traits.to_json(),
        }


@dataclass(frozen=True, slots=True)
class InsiAnswer:
    """The outcome of one call: a CR (``00``/``01``/``02``), or ``fault`` / ``error``."""

    code: str
    label: str = ""
    individu: InsiIndividu | None = None
    detail: str = ""
    message_id: str = ""
    """The WS-Addressing MessageID of the request, to find the exchange in the simulator's records."""


# -- requests ---------------------------------------------------------------------------------


def traits_search_envelope(ctx: CallContext, query: TraitsQuery, security: etree._Element | None) -> bytes:
    """A RECSANSVITALE request (search or verification by traits)."""
    body = etree.Element(f"{{{RECSANS}}}RECSANSVITALE", nsmap={"rs": RECSANS})
    _text(body, RECSANS, "NomNaissance", query.birth_name)
    _text(body, RECSANS, "Prenom", query.first_name)
    _text(body, RECSANS, "Sexe", query.sex)
    _text(body, RECSANS, "DateNaissance", query.birth_date)
    if query.birthplace_cog:
        _text(body, RECSANS, "LieuNaissance", query.birthplace_cog)
    return _envelope(ctx, body, security, couverture=None)


def card_search_envelope(ctx: CallContext, query: CardQuery, security: etree._Element | None) -> bytes:
    """A RECVITALE request (search with what the Carte Vitale holds)."""
    body = etree.Element(f"{{{RECVIT}}}RECVITALE", nsmap={"rv": RECVIT})
    if query.matricule_individu:
        individual = etree.SubElement(body, f"{{{RECVIT}}}MatriculeIndividu")
        _text(individual, RECVIT, "NumIdentifiant", query.matricule_individu)
    _text(etree.SubElement(body, f"{{{RECVIT}}}MatriculeOD"), RECVIT, "NumIdentifiant", query.matricule_od)
    _text(body, RECVIT, "DateNaissance", query.birth_date)
    _text(body, RECVIT, "RangNaissance", str(query.rang))
    return _envelope(ctx, body, security, couverture=query)


def _envelope(
    ctx: CallContext, body_content: etree._Element, security: etree._Element | None, couverture: CardQuery | None
) -> bytes:
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
    _text(header, WSA, "Action", ctx.action)
    _text(header, WSA, "MessageID", ctx.message_id)
    _text(header, WSA, "To", ctx.to)
    header.append(_contexte_bam(ctx, couverture))
    header.append(_contexte_lps(ctx))
    wsse = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    if security is not None:
        wsse.append(security)
    etree.SubElement(envelope, f"{{{SOAP12}}}Body").append(body_content)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _contexte_bam(ctx: CallContext, card: CardQuery | None) -> etree._Element:
    bam = etree.Element(f"{{{CTXBAM}}}ContexteBAM", nsmap={"ctxbam": CTXBAM}, Version="01_02")
    _text(bam, CTXBAM, "Id", str(uuid.uuid4()))
    _text(bam, CTXBAM, "Temps", _utc(ctx.now))
    _text(bam, CTXBAM, "Emetteur", ctx.emitter)
    couverture = etree.SubElement(bam, f"{{{CTXBAM}}}COUVERTURE")
    if card is not None:
        assure = etree.SubElement(couverture, f"{{{CTXBAM}}}ASSURE")
        _text(etree.SubElement(assure, f"{{{CTXBAM}}}Id"), CTXBAM, "Num", card.matricule_od)
        beneficiaire = etree.SubElement(couverture, f"{{{CTXBAM}}}BENEFICIAIRE")
        if card.matricule_individu:
            _text(etree.SubElement(beneficiaire, f"{{{CTXBAM}}}Nir"), CTXBAM, "Num", card.matricule_individu)
        _text(beneficiaire, CTXBAM, "DateNai", card.birth_date)
        _text(beneficiaire, CTXBAM, "Rang", str(card.rang))
    return bam


def _contexte_lps(ctx: CallContext) -> etree._Element:
    lps = etree.Element(f"{{{CTXLPS}}}ContexteLPS", nsmap={"ctxlps": CTXLPS}, Nature="CTXLPS", Version="01_00")
    _text(lps, CTXLPS, "Id", str(uuid.uuid4()))
    _text(lps, CTXLPS, "Temps", _utc(ctx.now))
    _text(lps, CTXLPS, "Emetteur", ctx.emitter)
    software = etree.SubElement(lps, f"{{{CTXLPS}}}LPS")
    if ctx.with_idam:
        _text(software, CTXLPS, "IDAM", ctx.lps.idam).set("R", "4")
    _text(software, CTXLPS, "Version", ctx.lps.version)
    _text(software, CTXLPS, "Instance", ctx.lps.instance)
    _text(software, CTXLPS, "Nom", ctx.lps.name)
    return lps


def _text(parent: etree._Element, ns: str, name: str, value: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    element.text = value
    return element


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- answers ----------------------------------------------------------------------------------

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def parse_answer(payload: bytes) -> InsiAnswer:
    """Read an INSi answer; anything that is not a RESULTAT or a SOAP fault becomes code ``error``."""
    try:
        root = etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as exc:
        return InsiAnswer("error", detail=f"answer is not XML: {exc}")
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]
        return InsiAnswer("error", detail="answer carries a DOCTYPE")
    if etree.QName(root).localname != "Envelope":
        return InsiAnswer("error", detail="answer is not a SOAP envelope")
    body = root.find("{*}Body")
    if body is None:
        return InsiAnswer("error", detail="SOAP envelope without Body")
    fault = body.find("{*}Fault")
    if fault is not None:
        return InsiAnswer("fault", detail=_fault_text(fault))
    resultat = body.find(f".//{{{RESULTAT}}}RESULTAT")
    if resultat is None:
        resultat = body.find(".//{*}RESULTAT")
    if resultat is None:
        return InsiAnswer("error", detail="no RESULTAT in the answer")
    code = (resultat.findtext("{*}CR/{*}CodeCR") or "").strip()
    label = (resultat.findtext("{*}CR/{*}LibelleCR") or "").strip()
    if code not in ("00", "01", "02"):
        return InsiAnswer("error", label=label, detail=f"unexpected CodeCR {code!r}")
    if code != "00":
        return InsiAnswer(code, label=label)
    try:
        individu = _individu(resultat)
    except ValueError as exc:
        return InsiAnswer("error", label=label, detail=f"CR 00 without a usable INDIVIDU: {exc}")
    return InsiAnswer(code, label=label, individu=individu)


def _fault_text(fault: etree._Element) -> str:
    parts = [
        (fault.findtext(".//{*}Reason/{*}Text") or fault.findtext("{*}faultstring") or "").strip(),
        " ".join(" ".join(str(t) for t in e.itertext()).strip() for e in fault.iterfind(".//{*}Erreur")),
    ]
    return " — ".join(p for p in parts if p) or "SOAP fault"


def _individu(resultat: etree._Element) -> InsiIndividu:
    individu = resultat.find("{*}INDIVIDU")
    if individu is None:
        raise ValueError("INDIVIDU missing")
    active_element = individu.find("{*}INSACTIF")
    if active_element is None:
        raise ValueError("INSACTIF missing")
    tiq = individu.find("{*}TIQ")
    if tiq is None:
        raise ValueError("TIQ missing")
    first_names = tuple((tiq.findtext("{*}ListePrenom") or "").split()) or tuple(
        (tiq.findtext("{*}Prenom") or "").split()
    )
    return InsiIndividu(
        active=_matricule(active_element),
        history=tuple(_matricule(h) for h in individu.iterfind("{*}INSHISTO")),
        traits=InsiTraits(
            birth_name=(tiq.findtext("{*}NomNaissance") or "").strip(),
            first_names=first_names,
            sex=(tiq.findtext("{*}Sexe") or "").strip(),
            birth_date=(tiq.findtext("{*}DateNaissance") or "").strip(),
            birthplace_cog=(tiq.findtext("{*}LieuNaissance") or "").strip(),
        ),
    )


def _matricule(element: etree._Element) -> InsiMatricule:
    number = (element.findtext("{*}IdIndividu/{*}NumIdentifiant") or "").strip()
    key = (element.findtext("{*}IdIndividu/{*}Cle") or "").strip()
    oid = (element.findtext("{*}OID") or "").strip()
    if not number or not oid:
        raise ValueError(f"{etree.QName(element).localname} without NumIdentifiant or OID")
    return InsiMatricule(
        matricule=number + key,
        oid=oid,
        start=(element.findtext("{*}DateDeb") or "").strip(),
        end=(element.findtext("{*}DateFin") or "").strip(),
    )
