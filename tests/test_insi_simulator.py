"""The INSi simulator on real sockets: searches, authentication, hostile input, faults, records.

Three independent clients talk to it: the reference practice's INSi client
(``harness/reference``), zeep driven by the served WSDL, and plain ``requests`` posts
for everything a well-behaved client would never send.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from lxml import etree
from zeep import Client
from zeep.exceptions import Fault as ZeepFault
from zeep.transports import Transport

from harness.pki import CertBundle, TestPki
from harness.reference import saml
from harness.reference.insi import AuthMode as ClientAuthMode
from harness.reference.insi import InsiClient, InsiEndpoint
from harness.reference.soap import (
    CallContext,
    CardQuery,
    InsiAnswer,
    LpsIdentity,
    TraitsQuery,
    card_search_envelope,
    parse_answer,
    traits_search_envelope,
)
from harness.simulators.insi import (
    ACTION_CARD,
    ACTION_TRAITS,
    FaultKind,
    IdentityBase,
    IdentityBaseError,
    InsiFault,
    InsiIdentity,
    InsiSimulator,
)
from harness.simulators.insi.identities import FIXTURES_ENV
from harness.simulators.recording import Exchange
from harness.validators.ins import check_matricule

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS = {
    "soap": SOAP12,
    "wsa": "http://www.w3.org/2005/08/addressing",
    "bam": "urn:siram:bam:ctxbam",
    "lps": "urn:siram:lps:ctxlps",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "rs": "http://www.cnamts.fr/INSiRecSans",
    "res": "http://www.cnamts.fr/INSiResultat",
    "siram": "urn:siram",
    "wsdl": "http://schemas.xmlsoap.org/wsdl/",
    "soap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
}
LPS = LpsIdentity(name="Cabinet Test", version="1.2.3", instance=str(uuid.uuid4()), idam="IDAM-TEST-01")
CT_TRAITS = f'application/soap+xml; charset=utf-8; action="{ACTION_TRAITS}"'


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("insi-pki"))


@pytest.fixture(scope="module")
def simulator(pki: TestPki) -> Iterator[InsiSimulator]:
    with InsiSimulator(pki) as sim:
        yield sim


@pytest.fixture(autouse=True)
def fresh(simulator: InsiSimulator) -> InsiSimulator:
    simulator.reset()
    return simulator


def endpoint(simulator: InsiSimulator, pki: TestPki) -> InsiEndpoint:
    return InsiEndpoint(
        url=simulator.url,
        ca_file=pki.ca_bundle_path,
        client_cert_file=pki.organisation.chain_path,
        client_key_file=pki.organisation.key_path,
        cps_cert_file=pki.cps.chain_path,
        cps_key_file=pki.cps.key_path,
    )


def client(
    simulator: InsiSimulator, pki: TestPki, mode: ClientAuthMode = ClientAuthMode.ORGANISATION, **kwargs: bool
) -> InsiClient:
    return InsiClient(endpoint(simulator, pki), mode, LPS, timeout_s=5.0, **kwargs)


def traits(identity: InsiIdentity, first: int = 0, birthplace: bool = False) -> TraitsQuery:
    return TraitsQuery(
        identity.birth_name,
        identity.first_names[first],
        identity.sex,
        identity.birth_date,
        identity.birthplace if birthplace else "",
    )


def session(pki: TestPki, bundle: CertBundle | None) -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
    http.verify = str(pki.ca_bundle_path)
    if bundle is not None:
        http.cert = (str(bundle.chain_path), str(bundle.key_path))
    return http


def context(simulator: InsiSimulator, operation: str = "rechercherInsAvecTraitsIdentite") -> CallContext:
    return CallContext(operation=operation, to=simulator.url, emitter="1990000010", now=datetime.now(UTC), lps=LPS)


def traits_envelope(simulator: InsiSimulator, query: TraitsQuery, security: etree._Element | None = None) -> bytes:
    return traits_search_envelope(context(simulator), query, security)


def post(
    simulator: InsiSimulator,
    pki: TestPki,
    body: bytes,
    bundle: CertBundle | None = None,
    content_type: str = CT_TRAITS,
) -> requests.Response:
    with session(pki, bundle) as http:
        return http.post(simulator.url, data=body, headers={"Content-Type": content_type}, timeout=10)


def last(simulator: InsiSimulator) -> Exchange:
    exchanges = simulator.recorder.all()
    assert exchanges, "nothing recorded"
    return exchanges[-1]


def rules(exchange: Exchange) -> set[str]:
    return {f["rule"] for f in exchange.meta["findings"]}


def edit(envelope: bytes, *remove: str, versions: dict[str, str] | None = None) -> bytes:
    """``envelope`` without the elements at the XPaths ``remove``, with ``Version`` set on the ``versions`` XPaths."""
    root = etree.fromstring(envelope)
    for path in remove:
        for element in root.xpath(path, namespaces=NS):
            element.getparent().remove(element)
    for path, version in (versions or {}).items():
        for element in root.xpath(path, namespaces=NS):
            element.set("Version", version)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- searches by traits -------------------------------------------------------------------------


def test_traits_search_cr_00_returns_the_ins_and_the_tiq(simulator: InsiSimulator, pki: TestPki) -> None:
    plain = simulator.base.named("plain")
    answer = client(simulator, pki).search_by_traits(traits(plain, first=1), datetime.now(UTC))
    assert answer.code == "00" and answer.label == "OK"
    assert answer.individu is not None
    assert answer.individu.active.matricule == plain.matricule
    assert answer.individu.active.oid == "1.2.250.1.213.1.4.8"
    tiq = answer.individu.traits
    assert (tiq.birth_name, tiq.first_names, tiq.sex, tiq.birth_date, tiq.birthplace_cog) == (
        "SEGURUN",
        ("CAMILLE", "ANNE"),
        "F",
        "1985-04-17",
        "69123",
    )
    call = last(simulator)
    assert (call.simulator, call.protocol, call.action) == ("insi", "soap12", ACTION_TRAITS)
    assert call.meta["auth_mode"] == "organisation-certificate"
    assert "CENTRE DE SANTE DU TEST" in call.meta["client_certificate"]
    assert call.meta["operation"] == "RECSANSVITALE"
    assert call.meta["query"] == {
        "birth_name": "SEGURUN",
        "first_name": "ANNE",
        "sex": "F",
        "birth_date": "1985-04-17",
        "birthplace": "",
    }
    assert (call.meta["cr"], call.meta["fault"], call.meta["findings"]) == ("00", None, [])
    assert call.meta["wsa"]["message_id"] == answer.message_id
    tiq_xml = etree.fromstring(call.response).find(".//res:TIQ", NS)
    assert [child.tag.split("}")[1] for child in tiq_xml] == [
        "NomNaissance",
        "Prenom",
        "ListePrenom",
        "Sexe",
        "DateNaissance",
        "LieuNaissance",
    ]
    assert tiq_xml.findtext("res:Prenom", namespaces=NS) == "CAMILLE"


def test_traits_search_cr_01_when_nobody_matches(simulator: InsiSimulator, pki: TestPki) -> None:
    query = TraitsQuery("PERSONNE", "NUL", "M", "1950-01-01")
    answer = client(simulator, pki).search_by_traits(query, datetime.now(UTC))
    assert (answer.code, answer.individu) == ("01", None)
    assert last(simulator).meta["cr"] == "01"
    plain = simulator.base.named("plain")
    wrong_sex = replace(traits(plain), sex="M")
    assert client(simulator, pki).search_by_traits(wrong_sex, datetime.now(UTC)).code == "01"


def test_homonyms_give_cr_02_until_the_birthplace_or_another_first_name_tells_them_apart(
    simulator: InsiSimulator, pki: TestPki
) -> None:
    insi = client(simulator, pki)
    a, b = simulator.base.named("homonym-a"), simulator.base.named("homonym-b")
    assert insi.search_by_traits(traits(a), datetime.now(UTC)).code == "02"
    assert last(simulator).meta["cr"] == "02"
    with_birthplace = insi.search_by_traits(traits(b, birthplace=True), datetime.now(UTC))
    assert with_birthplace.code == "00" and with_birthplace.individu is not None
    assert with_birthplace.individu.active.matricule == b.matricule
    second_name = insi.search_by_traits(traits(a, first=1), datetime.now(UTC))
    assert second_name.individu is not None and second_name.individu.active.matricule == a.matricule


def test_traits_are_compared_normalised_and_returned_normalised(simulator: InsiSimulator, pki: TestPki) -> None:
    composed = simulator.base.named("composed")
    query = TraitsQuery("de l’Épée - Marchand", "Hélie", "M", "1958-12-31", "80021")
    answer = client(simulator, pki).search_by_traits(query, datetime.now(UTC))
    assert answer.individu is not None and answer.individu.active.matricule == composed.matricule
    assert answer.individu.traits.birth_name == "DE L'EPEE-MARCHAND"
    assert answer.individu.traits.first_names == ("JEAN-FRANCOIS", "HELIE", "BARTHELEMY")
    whole_list = replace(query, first_name="jean-françois hélie barthélémy")
    assert client(simulator, pki).search_by_traits(whole_list, datetime.now(UTC)).code == "00"
    not_hyphen = replace(query, first_name="JEAN FRANCOIS")
    assert client(simulator, pki).search_by_traits(not_hyphen, datetime.now(UTC)).code == "01"


def test_inshisto_entries_come_with_their_dates_and_oids(simulator: InsiSimulator, pki: TestPki) -> None:
    identity = simulator.base.named("with-history")
    answer = client(simulator, pki).search_by_traits(traits(identity), datetime.now(UTC))
    assert answer.individu is not None
    history = [(h.matricule, h.oid, h.start, h.end) for h in answer.individu.history]
    assert history == [
        ("890047511577760", "1.2.250.1.213.1.4.9", "1990-04-15", "1990-05-02"),
        ("290047511330123", "1.2.250.1.213.1.4.8", "1990-05-02", "2012-03-01"),
    ]


@pytest.mark.parametrize(
    ("key", "oid"),
    [
        ("nia", "1.2.250.1.213.1.4.9"),
        ("test-nir", "1.2.250.1.213.1.4.10"),
        ("corse-2a", "1.2.250.1.213.1.4.8"),
        ("corse-2b", "1.2.250.1.213.1.4.8"),
        ("abroad", "1.2.250.1.213.1.4.8"),
    ],
)
def test_identities_are_returned_with_the_oid_they_declare(
    key: str, oid: str, simulator: InsiSimulator, pki: TestPki
) -> None:
    identity = simulator.base.named(key)
    answer = client(simulator, pki).search_by_traits(traits(identity, birthplace=True), datetime.now(UTC))
    assert answer.individu is not None
    assert (answer.individu.active.matricule, answer.individu.active.oid) == (identity.matricule, oid)
    assert check_matricule(answer.individu.active.matricule, oid) == []


def test_an_incomplete_query_is_a_sender_fault(simulator: InsiSimulator, pki: TestPki) -> None:
    envelope = traits_envelope(simulator, TraitsQuery("SEGURUN", "ANNE", "X", "17/04/1985"))
    response = post(simulator, pki, edit(envelope, "//rs:Prenom"), pki.organisation)
    assert response.status_code == 400
    assert parse_answer(response.content).code == "fault"
    call = last(simulator)
    assert call.meta["fault"] == "invalid-request"
    messages = " ".join(f["message"] for f in call.meta["findings"])
    assert "Prenom" in messages and "Sexe" in messages and "DateNaissance" in messages


# -- searches by Carte Vitale ------------------------------------------------------------------


def test_card_search_returns_the_beneficiary_not_the_card_holder(simulator: InsiSimulator, pki: TestPki) -> None:
    insi = client(simulator, pki)
    holder, child = simulator.base.named("carte-vitale"), simulator.base.named("child-on-card")
    own = insi.search_by_card(CardQuery(holder.matricule, holder.birth_date), datetime.now(UTC))
    assert own.individu is not None and own.individu.active.matricule == holder.matricule
    kid = insi.search_by_card(CardQuery(holder.matricule[:13], child.birth_date), datetime.now(UTC))
    assert kid.individu is not None and kid.individu.active.matricule == child.matricule
    call = last(simulator)
    assert (call.action, call.meta["operation"], call.meta["cr"]) == (ACTION_CARD, "RECVITALE", "00")
    assert call.meta["query"]["matricule_od"] == holder.matricule[:13]
    assert call.meta["query"]["birth_date"] == child.birth_date
    assert call.meta["findings"] == []


def test_card_search_tells_twins_apart_by_rang(simulator: InsiSimulator, pki: TestPki) -> None:
    insi = client(simulator, pki)
    holder, twin = simulator.base.named("carte-vitale"), simulator.base.named("twin-2")
    answer = insi.search_by_card(CardQuery(holder.matricule, twin.birth_date, rang=2), datetime.now(UTC))
    assert answer.individu is not None and answer.individu.active.matricule == twin.matricule
    envelope = card_search_envelope(
        context(simulator, "rechercherInsAvecCarteVitale"), CardQuery(holder.matricule, twin.birth_date), None
    )
    without_rang = edit(envelope, "//*[local-name()='RangNaissance']")
    response = post(simulator, pki, without_rang, pki.organisation, f'application/soap+xml; action="{ACTION_CARD}"')
    assert parse_answer(response.content).code == "02"
    by_individual = insi.search_by_card(
        CardQuery(holder.matricule, twin.birth_date, rang=1, matricule_individu=twin.matricule), datetime.now(UTC)
    )
    assert by_individual.code == "01"  # twin-2 is rang 2: the criteria contradict each other


def test_card_search_with_an_unknown_card_is_cr_01(simulator: InsiSimulator, pki: TestPki) -> None:
    answer = client(simulator, pki).search_by_card(CardQuery("1551299999999", "1955-12-01"), datetime.now(UTC))
    assert answer.code == "01"


# -- authentication -----------------------------------------------------------------------------


def test_cps_mode_is_recognised_from_the_signed_assertion(simulator: InsiSimulator, pki: TestPki) -> None:
    plain = simulator.base.named("plain")
    answer = client(simulator, pki, ClientAuthMode.CPS).search_by_traits(traits(plain), datetime.now(UTC))
    assert answer.code == "00"
    call = last(simulator)
    assert call.meta["auth_mode"] == "cps-assertion"
    assert "DR JEAN TESTEUR" in call.meta["assertion_signer"]
    assert call.meta["findings"] == []


def _assertion(bundle: CertBundle, when: datetime | None = None) -> etree._Element:
    return saml.cps_assertion(
        bundle.chain_pem, bundle.key_pem, "899700012345", when or datetime.now(UTC), "Cabinet Test", "1.2.3"
    )


def _tampered(pki: TestPki) -> etree._Element:
    assertion = _assertion(pki.cps)
    assertion.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}NameID").text = "899700099999"
    return assertion


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered", "invalid-assertion"),
        ("signed-by-organisation", "assertion-not-cps"),
        ("signed-by-rogue", "invalid-assertion"),
        ("expired", "assertion-expired"),
    ],
)
def test_a_bad_cps_assertion_is_refused(case: str, reason: str, simulator: InsiSimulator, pki: TestPki) -> None:
    assertion = {
        "tampered": lambda: _tampered(pki),
        "signed-by-organisation": lambda: _assertion(pki.organisation),
        "signed-by-rogue": lambda: _assertion(pki.rogue),
        "expired": lambda: _assertion(pki.cps, datetime.now(UTC) - timedelta(hours=2)),
    }[case]()
    plain = simulator.base.named("plain")
    response = post(simulator, pki, traits_envelope(simulator, traits(plain), assertion), pki.cps)
    answer = parse_answer(response.content)
    assert (response.status_code, answer.code) == (400, "fault")
    call = last(simulator)
    assert (call.meta["auth_mode"], call.meta["fault"], call.meta["cr"]) == ("none", reason, None)
    assert f"insi.auth.{reason}" in rules(call)


def test_a_cps_certificate_without_assertion_is_refused(simulator: InsiSimulator, pki: TestPki) -> None:
    response = post(simulator, pki, traits_envelope(simulator, traits(simulator.base.named("plain"))), pki.cps)
    assert parse_answer(response.content).code == "fault"
    assert last(simulator).meta["fault"] == "cps-without-assertion"


def test_no_authentication_at_all_is_a_fault(simulator: InsiSimulator, pki: TestPki) -> None:
    response = post(simulator, pki, traits_envelope(simulator, traits(simulator.base.named("plain"))), None)
    answer = parse_answer(response.content)
    assert answer.code == "fault" and "aucune authentification" in answer.detail
    erreur = etree.fromstring(response.content).find(".//siram:Erreur", NS)
    assert erreur is not None and erreur.get("code") == "unauthenticated"
    call = last(simulator)
    assert (call.meta["auth_mode"], call.meta["client_certificate"], call.meta["fault"]) == (
        "none",
        None,
        "unauthenticated",
    )
    assert "insi.auth.none" in rules(call)


def test_an_expired_organisation_certificate_gets_a_soap_fault(simulator: InsiSimulator, pki: TestPki) -> None:
    envelope = traits_envelope(simulator, traits(simulator.base.named("plain")))
    response = post(simulator, pki, envelope, pki.expired_organisation)
    answer = parse_answer(response.content)
    assert answer.code == "fault" and "expiré" in answer.detail
    call = last(simulator)
    assert call.meta["fault"] == "certificate-invalid"
    assert "CENTRE DE SANTE DU TEST" in call.meta["client_certificate"]


def test_a_rogue_certificate_is_refused_at_the_tls_handshake(simulator: InsiSimulator, pki: TestPki) -> None:
    mark = simulator.recorder.mark()
    with pytest.raises(requests.exceptions.RequestException):
        post(simulator, pki, traits_envelope(simulator, traits(simulator.base.named("plain"))), pki.rogue)
    refused = simulator.recorder.wait_for(mark, lambda e: e.protocol == "tls", timeout_s=2)
    assert refused is not None
    assert refused.meta["fault"] == "tls-handshake" and "CERTIFICATE_VERIFY_FAILED" in refused.meta["detail"]
    answer = client(simulator, pki).search_by_traits(traits(simulator.base.named("plain")), datetime.now(UTC))
    assert answer.code == "00"  # the server is unharmed


# -- request conformance findings ----------------------------------------------------------------


def test_missing_idam_is_a_finding_but_still_answered(simulator: InsiSimulator, pki: TestPki) -> None:
    plain = simulator.base.named("plain")
    answer = client(simulator, pki, with_idam=False).search_by_traits(traits(plain), datetime.now(UTC))
    assert answer.code == "00"
    assert rules(last(simulator)) == {"insi.header.contexte-lps.idam"}


def test_header_problems_are_all_recorded(simulator: InsiSimulator, pki: TestPki) -> None:
    envelope = traits_envelope(simulator, traits(simulator.base.named("plain")))
    broken = edit(
        envelope,
        "//wsa:MessageID",
        "//bam:Emetteur",
        "//lps:Nom",
        versions={"//bam:ContexteBAM": "01_00", "//lps:ContexteLPS": "02_00"},
    )
    broken = broken.replace(ACTION_TRAITS.encode() + b"</", ACTION_CARD.encode() + b"</")
    response = post(simulator, pki, broken, pki.organisation, "application/soap+xml")
    assert parse_answer(response.content).code == "00"  # the body says RECSANSVITALE: answered as such
    call = last(simulator)
    assert call.action == ACTION_TRAITS and call.meta["wsa"]["action"] == ACTION_CARD
    assert {
        "insi.wsa.action-body-mismatch",
        "insi.wsa.message-id-missing",
        "insi.header.contexte-bam.version",
        "insi.header.contexte-bam.emetteur",
        "insi.header.contexte-lps.version",
        "insi.header.contexte-lps.nom",
    } <= rules(call)
    bare = edit(envelope, "//bam:ContexteBAM", "//lps:ContexteLPS", "//wsa:Action")
    post(simulator, pki, bare, pki.organisation, "application/soap+xml")
    assert {
        "insi.header.contexte-bam.missing",
        "insi.header.contexte-lps.missing",
        "insi.wsa.action-missing",
    } <= rules(last(simulator))


def test_an_unknown_action_or_body_is_a_sender_fault(simulator: InsiSimulator, pki: TestPki) -> None:
    envelope = traits_envelope(simulator, traits(simulator.base.named("plain")))
    unknown_action = envelope.replace(ACTION_TRAITS.encode(), b"urn:ServiceIdentiteCertifiee:1.0.0:supprimerIns")
    response = post(simulator, pki, unknown_action, pki.organisation, "application/soap+xml")
    assert response.status_code == 400
    assert last(simulator).meta["fault"] == "unknown-action"
    unknown_body = envelope.replace(b"RECSANSVITALE", b"RECHERCHE")
    post(simulator, pki, unknown_body, pki.organisation)
    assert last(simulator).meta["fault"] == "unknown-operation"


# -- zeep, an independent client driven by the WSDL -------------------------------------------------


def _zeep(simulator: InsiSimulator, pki: TestPki) -> Client:
    return Client(simulator.wsdl_url, transport=Transport(session=session(pki, pki.organisation), timeout=10))


def _zeep_headers() -> dict[str, object]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "ContexteBAM": {"Version": "01_02", "Id": str(uuid.uuid4()), "Temps": now, "Emetteur": "1990000010"},
        "ContexteLPS": {
            "Version": "01_00",
            "Nature": "CTXLPS",
            "Id": str(uuid.uuid4()),
            "Temps": now,
            "Emetteur": "1990000010",
            "LPS": {"IDAM": {"_value_1": "IDAM-ZEEP", "R": "4"}, "Version": "4.3", "Instance": "i-1", "Nom": "zeep"},
        },
    }


def test_zeep_calls_both_operations_from_the_served_wsdl(simulator: InsiSimulator, pki: TestPki) -> None:
    zeep = _zeep(simulator, pki)
    identity = simulator.base.named("with-history")
    result = zeep.service.rechercherInsAvecTraitsIdentite(
        NomNaissance=identity.birth_name,
        Prenom="CLAIRE",
        Sexe="F",
        DateNaissance=identity.birth_date,
        LieuNaissance=identity.birthplace,
        _soapheaders=_zeep_headers(),
    )
    assert result.CR.CodeCR == "00"
    active = result.INDIVIDU.INSACTIF
    assert active.IdIndividu.NumIdentifiant + active.IdIndividu.Cle == identity.matricule
    assert [h.OID for h in result.INDIVIDU.INSHISTO] == ["1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.8"]
    assert result.INDIVIDU.TIQ.ListePrenom == "JULIE CLAIRE"
    call = last(simulator)
    assert call.meta["auth_mode"] == "organisation-certificate" and call.meta["findings"] == []
    wsdl_fetch = simulator.recorder.all()[0]
    assert (wsdl_fetch.protocol, wsdl_fetch.action) == ("http", "GET ?wsdl")

    card = zeep.service.rechercherInsAvecCarteVitale(
        MatriculeOD={"NumIdentifiant": simulator.base.named("carte-vitale").matricule},
        DateNaissance="2018-11-20",
        RangNaissance="1",
    )
    assert card.CR.CodeCR == "00" and card.INDIVIDU.TIQ.Prenom == "INES"
    assert {"insi.header.contexte-bam.missing", "insi.header.contexte-lps.missing"} <= rules(last(simulator))


def test_zeep_sees_soap_faults(simulator: InsiSimulator, pki: TestPki) -> None:
    zeep = _zeep(simulator, pki)
    simulator.set_fault(InsiFault.SOAP_FAULT)
    with pytest.raises(ZeepFault) as raised:
        zeep.service.rechercherInsAvecTraitsIdentite(
            NomNaissance="SEGURUN", Prenom="ANNE", Sexe="F", DateNaissance="1985-04-17", _soapheaders=_zeep_headers()
        )
    assert "Erreur technique" in str(raised.value.message)


def test_the_wsdl_names_the_live_endpoint_and_both_soap_actions(simulator: InsiSimulator, pki: TestPki) -> None:
    with session(pki, pki.organisation) as http:
        response = http.get(simulator.wsdl_url, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/xml")
    wsdl = etree.fromstring(response.content)
    assert wsdl.xpath("//soap12:address/@location", namespaces=NS) == [simulator.url]
    assert sorted(wsdl.xpath("//soap12:operation/@soapAction", namespaces=NS)) == sorted([ACTION_CARD, ACTION_TRAITS])
    assert wsdl.find(".//soap12:binding", NS) is not None


# -- hostile input --------------------------------------------------------------------------------

_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE soap:Envelope [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>
<rs:RECSANSVITALE xmlns:rs="http://www.cnamts.fr/INSiRecSans"><rs:NomNaissance>&secret;</rs:NomNaissance>
</rs:RECSANSVITALE></soap:Body></soap:Envelope>"""


def _billion_laughs() -> bytes:
    entities = b"".join(b'<!ENTITY l%d "%s">' % (i, b"&l%d;" % (i - 1) * 10) for i in range(1, 10))
    return b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lol">' + entities + b"]><r>&l9;</r>"


@pytest.mark.parametrize(
    ("name", "body", "status", "fault"),
    [
        ("xxe", _XXE, 400, "doctype"),
        (
            "xxe-utf16",
            _XXE.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"').decode().encode("utf-16"),
            400,
            "doctype",
        ),
        ("billion-laughs", _billion_laughs(), 400, "doctype"),
        ("garbage", b"\x00\xff\xfe not XML at all <<<", 400, "not-xml"),
        ("empty", b"", 400, "empty"),
        ("not-soap", b"<RECSANSVITALE/>", 400, "not-soap"),
        (
            "soap-1.1",
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>',
            500,
            "version-mismatch",
        ),
        (
            "deep",
            b'<soap:Envelope xmlns:soap="'
            + SOAP12.encode()
            + b'"><soap:Body>'
            + b"<a>" * 200
            + b"</a>" * 200
            + b"</soap:Body></soap:Envelope>",
            400,
            "too-deep",
        ),
    ],
)
def test_hostile_bodies_get_a_quick_soap_fault(
    name: str, body: bytes, status: int, fault: str, simulator: InsiSimulator, pki: TestPki
) -> None:
    started = time.monotonic()
    response = post(simulator, pki, body, pki.organisation)
    assert time.monotonic() - started < 2
    assert response.status_code == status
    assert b"root:" not in response.content
    root = etree.fromstring(response.content)
    code = root.findtext(".//soap:Fault/soap:Code/soap:Value", namespaces=NS)
    assert code == ("soap:VersionMismatch" if fault == "version-mismatch" else "soap:Sender")
    if fault == "version-mismatch":
        assert root.find(".//soap:Upgrade/soap:SupportedEnvelope", NS) is not None
    call = last(simulator)
    assert call.meta["fault"] == fault and call.request == body and call.response == response.content


def test_an_oversized_body_is_refused_without_being_read(simulator: InsiSimulator, pki: TestPki) -> None:
    started = time.monotonic()
    response = post(simulator, pki, b"<" + b"x" * (5 * 1024 * 1024), pki.organisation)
    assert time.monotonic() - started < 5
    assert response.status_code == 413
    call = last(simulator)
    assert call.meta["fault"] == "body-too-large" and call.request == b""
    assert call.meta["http"]["status"] == 413


def test_a_chunked_request_is_read(simulator: InsiSimulator, pki: TestPki) -> None:
    envelope = traits_envelope(simulator, traits(simulator.base.named("plain")))
    pieces = iter([envelope[:100], envelope[100:]])
    with session(pki, pki.organisation) as http:
        response = http.post(simulator.url, data=pieces, headers={"Content-Type": CT_TRAITS}, timeout=10)
    assert parse_answer(response.content).code == "00"
    assert last(simulator).request == envelope


def _trickle(connection: ssl.SSLSocket, stop: threading.Event) -> None:
    """Send a request line one byte at a time, each just before the read timeout."""
    with contextlib.suppress(OSError):
        for byte in b"POST /insi HTTP/1.1":
            if stop.wait(0.15):
                return
            connection.sendall(bytes([byte]))


def test_silent_partial_and_trickling_clients_do_not_block_others(pki: TestPki) -> None:
    with InsiSimulator(pki, socket_timeout_s=0.3, request_timeout_s=0.8) as sim:
        host, port = sim.url.split("//")[1].split("/")[0].split(":")
        address = (host, int(port))
        tls = ssl.create_default_context(cafile=str(pki.ca_bundle_path))
        tls.load_cert_chain(str(pki.organisation.chain_path), str(pki.organisation.key_path))
        silent = socket.create_connection(address)  # never starts TLS
        partial = tls.wrap_socket(socket.create_connection(address), server_hostname="127.0.0.1")
        partial.sendall(b"POST /insi HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<soap:Env")
        trickling = tls.wrap_socket(socket.create_connection(address), server_hostname="127.0.0.1")
        stop = threading.Event()
        trickler = threading.Thread(target=_trickle, args=(trickling, stop), daemon=True)
        trickler.start()
        try:
            started = time.monotonic()
            answer = client(sim, pki).search_by_traits(traits(sim.base.named("plain")), datetime.now(UTC))
            assert answer.code == "00" and time.monotonic() - started < 1

            def timed_out(ending: bytes) -> Exchange | None:
                return sim.recorder.wait_for(
                    0, lambda e: e.meta.get("fault") == "timeout" and e.request.endswith(ending), timeout_s=3
                )

            assert timed_out(b"<soap:Env") is not None  # the body never came
            trickled = sim.recorder.wait_for(
                0, lambda e: e.meta.get("fault") == "timeout" and b"\r\n" not in e.request, timeout_s=3
            )
            assert trickled is not None and trickled.request.startswith(b"POST")  # cut by the request deadline
            assert "deadline" in trickled.meta["detail"]
            assert sim.recorder.wait_for(0, lambda e: e.meta.get("fault") == "tls-handshake", timeout_s=3)
        finally:
            stop.set()
            silent.close()
            partial.close()
            trickling.close()


def test_a_simulator_bug_still_gives_an_answer_and_a_record(
    simulator: InsiSimulator, pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> list[InsiIdentity]:
        raise RuntimeError("bug in the simulator")

    monkeypatch.setattr(simulator.base, "search_by_traits", broken)
    answer = _search_plain(simulator, pki)
    assert answer.code == "fault"
    call = last(simulator)
    assert (call.meta["fault"], call.meta["http"]["status"]) == ("internal-error", 500)
    assert "bug in the simulator" in call.meta["detail"]


def test_other_paths_and_methods(simulator: InsiSimulator, pki: TestPki) -> None:
    with session(pki, pki.organisation) as http:
        assert http.get(simulator.url, timeout=10).status_code == 405
        assert http.post(simulator.url.replace("/insi", "/autre"), data=b"<x/>", timeout=10).status_code == 404
        assert http.delete(simulator.url, timeout=10).status_code == 405
    assert [e.meta["fault"] for e in simulator.recorder.all()] == [
        "method-not-allowed",
        "not-found",
        "method-not-allowed",
    ]


# -- injected faults ---------------------------------------------------------------------------------


def _search_plain(simulator: InsiSimulator, pki: TestPki) -> InsiAnswer:
    return client(simulator, pki).search_by_traits(traits(simulator.base.named("plain")), datetime.now(UTC))


def test_unavailable_gives_http_503_for_the_next_calls_only(simulator: InsiSimulator, pki: TestPki) -> None:
    simulator.set_fault(FaultKind.UNAVAILABLE, count=2)
    first, second, third = (_search_plain(simulator, pki) for _ in range(3))
    assert (first.code, second.code, third.code) == ("error", "error", "00")
    assert "503" in first.detail
    calls = simulator.recorder.all()
    assert [c.meta["fault"] for c in calls] == ["unavailable", "unavailable", None]
    assert calls[0].meta["http"]["status"] == 503 and calls[0].meta["operation"] == "RECSANSVITALE"
    assert simulator.fault is None


def test_slow_delays_the_answer(simulator: InsiSimulator, pki: TestPki) -> None:
    simulator.set_fault(InsiFault(FaultKind.SLOW, delay_s=0.6))
    started = time.monotonic()
    answer = _search_plain(simulator, pki)
    assert answer.code == "00" and time.monotonic() - started >= 0.6
    assert last(simulator).meta["fault"] == "slow" and last(simulator).meta["delay_s"] == 0.6


def test_soap_fault_carries_siram_erreur(simulator: InsiSimulator, pki: TestPki) -> None:
    simulator.set_fault(InsiFault(FaultKind.SOAP_FAULT, message="Service INSi indisponible (test)"))
    answer = _search_plain(simulator, pki)
    assert answer.code == "fault" and "Service INSi indisponible (test)" in answer.detail
    call = last(simulator)
    assert (call.meta["fault"], call.meta["cr"], call.meta["computed_cr"]) == ("soap-fault", None, "00")
    assert call.meta["http"]["status"] == 500
    simulator.clear_fault()
    assert _search_plain(simulator, pki).code == "00"


def test_malformed_answer_is_truncated_xml(simulator: InsiSimulator, pki: TestPki) -> None:
    simulator.set_fault(InsiFault.MALFORMED)
    answer = _search_plain(simulator, pki)
    assert answer.code == "error" and "not XML" in answer.detail
    call = last(simulator)
    assert call.meta["fault"] == "malformed" and call.meta["http"]["status"] == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(call.response)


def test_not_found_as_fault_only_bends_cr_01(simulator: InsiSimulator, pki: TestPki) -> None:
    simulator.set_fault(InsiFault.NOT_FOUND_AS_FAULT)
    assert _search_plain(simulator, pki).code == "00"
    nobody = client(simulator, pki).search_by_traits(TraitsQuery("TCHITCHI", "A", "F", "1990-01-01"), datetime.now(UTC))
    assert nobody.code == "fault" and "non trouvé" in nobody.detail
    call = last(simulator)
    assert (call.meta["fault"], call.meta["computed_cr"]) == ("not-found-as-fault", "01")


def test_fault_values_are_checked() -> None:
    with pytest.raises(ValueError):
        InsiFault(FaultKind.SLOW, delay_s=-1)
    with pytest.raises(ValueError):
        InsiFault(FaultKind.UNAVAILABLE, count=0)
    assert InsiFault.SLOW.delay_s > 0 and InsiFault.UNAVAILABLE.times(3).count == 3


# -- records and life cycle -----------------------------------------------------------------------------


def test_exchanges_keep_the_whole_request_and_response(simulator: InsiSimulator, pki: TestPki) -> None:
    envelope = traits_envelope(simulator, traits(simulator.base.named("plain")))
    response = post(simulator, pki, envelope, pki.organisation)
    call = last(simulator)
    assert call.request == envelope and call.response == response.content
    assert call.direction == "inbound" and call.peer.startswith("127.0.0.1:")
    assert call.tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert call.meta["http"]["request_headers"]["Content-Type"] == CT_TRAITS
    assert call.started <= call.ended
    assert call.to_dict()["request"]["data"] == envelope.decode()


def test_reset_clears_records_overrides_and_fault_but_keeps_earlier_marks_usable(
    simulator: InsiSimulator, pki: TestPki
) -> None:
    plain = simulator.base.named("plain")
    _search_plain(simulator, pki)
    mark = simulator.recorder.mark()
    simulator.base.override(plain.matricule, birth_name="AUTRE")
    simulator.set_fault(InsiFault.UNAVAILABLE)
    simulator.reset()
    assert simulator.recorder.all() == [] and simulator.fault is None
    assert simulator.base.named("plain") == plain
    assert _search_plain(simulator, pki).code == "00"
    after = simulator.recorder.since(mark)
    assert len(after) == 1 and after[0].seq == mark + 1


def test_an_override_changes_what_insi_answers(simulator: InsiSimulator, pki: TestPki) -> None:
    plain = simulator.base.named("plain")
    insi = client(simulator, pki)
    simulator.base.override(plain.matricule, birth_name=plain.birth_name + "-MODIFIE")
    assert insi.search_by_traits(traits(plain), datetime.now(UTC)).code == "01"
    simulator.base.override("plain", birth_name=plain.birth_name)
    assert insi.search_by_traits(traits(plain), datetime.now(UTC)).code == "00"


def test_describe_says_how_to_reach_it(simulator: InsiSimulator, pki: TestPki) -> None:
    facts = simulator.describe()
    assert facts["endpoint"] == simulator.url and facts["wsdl"] == simulator.url + "?wsdl"
    assert facts["ca_bundle"] == str(pki.ca_bundle_path)
    assert facts["organisation"]["key_path"] == str(pki.organisation.key_path)
    assert facts["cps"]["chain_path"] == str(pki.cps.chain_path)
    assert facts["actions"] == {"RECSANSVITALE": ACTION_TRAITS, "RECVITALE": ACTION_CARD}


def test_life_cycle(pki: TestPki) -> None:
    sim = InsiSimulator(pki, IdentityBase([]))
    with pytest.raises(RuntimeError):
        _ = sim.url
    with sim:
        url = sim.url
        assert url.startswith("https://127.0.0.1:") and url.endswith("/insi")
        sim.start()  # idempotent
    assert not sim.running
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    sim.stop()  # twice is fine
    with InsiSimulator(pki, IdentityBase([]), tls=False) as plain_http:
        assert plain_http.url.startswith("http://")
        response = requests.post(plain_http.url, data=b"<x/>", timeout=5)
        assert response.status_code == 400


# -- identity base ----------------------------------------------------------------------------------------


def test_the_default_base_has_every_identity_scenarios_name() -> None:
    base = IdentityBase.default()
    keys = {i.key for i in base}
    assert {
        "plain",
        "corse-2a",
        "corse-2b",
        "nia",
        "abroad",
        "homonym-a",
        "homonym-b",
        "with-history",
        "carte-vitale",
        "child-on-card",
        "twin-1",
        "twin-2",
        "composed",
        "test-nir",
        *(f"ordinary-{n}" for n in range(1, 9)),
    } <= keys
    for identity in base:
        assert not [f for f in check_matricule(identity.matricule, identity.oid) if f.severity.value == "error"]
    assert base.named("child-on-card").card_holder == base.named("carte-vitale").matricule
    assert base.get(base.named("plain").matricule[:13]) == base.named("plain")


def test_the_base_can_be_taken_from_another_fixtures_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "insi").mkdir()
    (tmp_path / "insi" / "identities.toml").write_text(
        '[[identity]]\nkey = "seul"\nmatricule = "285046912304595"\noid = "1.2.250.1.213.1.4.8"\n'
        'birth_name = "SEUL"\nfirst_names = ["UNE"]\nsex = "F"\nbirth_date = "1985-04-17"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path))
    assert [i.key for i in IdentityBase.default()] == ["seul"]
    assert os.environ[FIXTURES_ENV] == str(tmp_path)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('matricule = "285046912304596"', "key 96"),
        ('matricule = "28504691230459"', "15 expected"),
        ('sex = "X"', "'sex'"),
        ('birthplace = "6912"', "COG"),
        ("first_names = []", "first_names"),
    ],
)
def test_a_bad_identity_file_is_refused_with_its_location(text: str, complaint: str, tmp_path: Path) -> None:
    good = {
        "key": '"k"',
        "matricule": '"285046912304595"',
        "oid": '"1.2.250.1.213.1.4.8"',
        "birth_name": '"N"',
        "first_names": '["P"]',
        "sex": '"F"',
        "birth_date": '"1985-04-17"',
        "birthplace": '"69123"',
    }
    name, value = text.split(" = ")
    good[name] = value
    path = tmp_path / "ids.toml"
    path.write_text("[[identity]]\n" + "".join(f"{k} = {v}\n" for k, v in good.items()), encoding="utf-8")
    with pytest.raises(IdentityBaseError, match=complaint) as raised:
        IdentityBase.load(path)
    assert str(path) in str(raised.value) and "(k)" in str(raised.value)


def test_duplicates_and_unknown_fields_are_refused() -> None:
    base = IdentityBase.default()
    plain = base.named("plain")
    with pytest.raises(IdentityBaseError, match="duplicate"):
        IdentityBase([plain, replace(plain, key="other")])
    with pytest.raises(TypeError):
        base.override(plain.matricule, nom="X")
    with pytest.raises(KeyError):
        base.override("999999999999999", birth_name="X")


def test_identities_can_be_added_and_removed_until_reset() -> None:
    base = IdentityBase.default()
    count = len(base)
    newcomer = InsiIdentity(
        key="newcomer",
        matricule="185079913400167",
        oid="1.2.250.1.213.1.4.10",
        birth_name="NOUVEAU",
        first_names=("ALBAN",),
        sex="M",
        birth_date="1985-07-14",
        birthplace="99134",
    )
    assert check_matricule(newcomer.matricule, newcomer.oid) == []
    base.add(newcomer)
    assert base.search_by_traits("nouveau", "alban", "M", "1985-07-14") == [newcomer]
    base.remove("plain")
    assert len(base) == count
    base.reset()
    assert len(base) == count and base.get(newcomer.matricule) is None and base.named("plain")
