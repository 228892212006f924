"""The control API contract: the OpenAPI spec is valid, and the adapter and the reference system keep to it.

A vendor implements ``harness/sut/openapi.yaml``; the HTTP adapter relies on it.
If the spec, the adapter and the reference system drifted apart, the reference
system would pass scenarios that a vendor following the spec fails. So every
request the adapter sends and every answer the reference system gives while being
driven through each operation is validated against the spec with openapi-core.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_spec_validator import validate

from harness.identity_feed.pam_fr import FeedPatient, build_identity_message
from harness.pki import TestPki
from harness.plugin.fixtures import insi_endpoint_config
from harness.simulators.annuaire import AnnuaireSimulator
from harness.simulators.insi import InsiSimulator
from harness.sut.base import SutRefused
from harness.sut.model import (
    AnnuaireEndpoint,
    DmpEndpoint,
    EndpointConfig,
    Ins,
    MssanteEndpoint,
    MssSendRequest,
    PatientTraits,
    PortabilityRequest,
    PscEndpoint,
)
from harness.sut.reference import ReferenceSut
from tests.conftest import REPO
from tests.dmp_stub import DmpStub
from tests.test_reference_mss import BAL, PEER, OperatorStub
from tests.test_reference_psc import CAMILLE, ProviderStub

SPEC = REPO / "harness" / "sut" / "openapi.yaml"
METHODS = ("get", "put", "post", "patch", "delete")


def load_spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return data


def spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation, path parameters written ``{}`` whatever their names."""
    return {(m.upper(), _template(path)) for path, item in spec["paths"].items() for m in METHODS if m in item}


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def spec_template(spec: dict[str, Any], path: str) -> str:
    """The spec path (parameters as ``{}``) a concrete request path matches, literal segments first."""
    templates = sorted({_template(p) for p in spec["paths"]}, key=lambda t: (t.count("{}"), t))
    for template in templates:
        pattern = "^" + re.escape(template).replace(r"\{\}", "[^/]+") + "$"
        if re.match(pattern, path):
            return template
    return path


def test_the_spec_is_valid_openapi_3() -> None:
    validate(load_spec())


def test_the_reference_system_serves_exactly_the_spec_operations() -> None:
    source = (REPO / "harness" / "reference" / "api.py").read_text(encoding="utf-8")
    rules = re.findall(r'Rule\("([^"]+)", endpoint="[^"]+", methods=\["([A-Z]+)"\]\)', source)
    served = {(method, re.sub(r"<[^>]+>", "{}", path)) for path, method in rules}
    assert served == spec_operations(load_spec())


def test_the_adapter_calls_only_spec_operations() -> None:
    source = (REPO / "harness" / "sut" / "http.py").read_text(encoding="utf-8")
    calls = re.findall(r'_call\(\s*"([A-Z]+)",\s*f?"([^"]+)"', source)
    used = {(method, _template(path)) for method, path in calls}
    assert used and used <= spec_operations(load_spec())


class ContractCheck:
    """A requests response hook validating each exchange against the spec."""

    def __init__(self, base_url: str) -> None:
        spec = load_spec()
        self.spec = dict(spec)
        spec["servers"] = [{"url": base_url}]
        self.openapi = OpenAPI.from_dict(spec)
        self.problems: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = RequestsOpenAPIRequest(response.request)
        where = f"{response.request.method} {response.request.path_url} → {response.status_code}"
        self.seen.add((str(response.request.method), spec_template(self.spec, request.path)))
        for error in self.openapi.iter_request_errors(request):
            self.problems.append(f"{where}: request: {error}")
        if response.status_code < 400:
            for error in self.openapi.iter_response_errors(request, RequestsOpenAPIResponse(response)):
                self.problems.append(f"{where}: response: {error}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("pki"))


Driven = tuple[ReferenceSut, ContractCheck, InsiSimulator, DmpStub, OperatorStub, AnnuaireSimulator, ProviderStub]


@pytest.fixture
def driven(pki: TestPki, tmp_path: Path) -> Iterator[Driven]:
    with (
        InsiSimulator(pki) as insi,
        DmpStub(pki) as dmp,
        OperatorStub(pki) as mss,
        AnnuaireSimulator(pki) as annuaire,
        ProviderStub(pki) as psc,
    ):
        sut = ReferenceSut(tmp_path / "reference", timeout_s=10.0)
        check = ContractCheck(sut.base_url)
        sut._session.hooks["response"].append(check)
        try:
            yield sut, check, insi, dmp, mss, annuaire, psc
        finally:
            sut.close()


def test_every_operation_keeps_to_the_spec(driven: Driven) -> None:
    sut, check, insi, dmp, mss, annuaire, psc = driven
    sut.describe()
    dmp_endpoint = DmpEndpoint(
        url=dmp.url,
        ca_pem=insi.pki.ca_bundle_pem.decode("ascii"),
        client_cert_pem=insi.pki.organisation.chain_pem.decode("ascii"),
        client_key_pem=insi.pki.organisation.key_pem.decode("ascii"),
    )
    sut.configure_endpoints(EndpointConfig(insi=insi_endpoint_config(insi.url, insi.pki).insi, dmp=dmp_endpoint))
    sut.reset()
    sut.set_clock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    sut._call("GET", "/clock")
    identity = insi.base.named("with-history")
    traits = PatientTraits(
        birth_name=identity.birth_name,
        first_names=tuple(identity.first_names),
        sex=identity.sex,
        birth_date=identity.birth_date,
        birthplace_cog=identity.birthplace,
    )
    patient = sut.create_patient(traits)
    assert sut.search_ins(patient.id, mode="traits").outcome == "found"
    card = insi.base.named("carte-vitale")
    other = sut.create_patient(PatientTraits(card.birth_name, tuple(card.first_names), card.sex, card.birth_date))
    sut.search_ins(other.id, mode="carte-vitale", carte_vitale={"matricule_od": card.matricule_od or card.matricule})
    sut.check_identity(patient.id, "CN")
    assert sut.verify_ins(patient.id).outcome == "OK"
    sut.update_traits(patient.id, {"used_name": "USAGE"})
    assert [p.id for p in sut.find_patients_by_ins(identity.matricule)] == [patient.id]
    with pytest.raises(SutRefused):
        sut.find_patients_by_ins(identity.matricule[:13])
    sut.get_patient(patient.id)
    sut.list_patients()
    feed = FeedPatient(
        ipp="IPP1",
        ipp_authority_name="HOPITAL-VOISIN",
        ipp_authority_oid="1.2.250.1.999.1.1.7",
        traits=traits,
        ins=Ins(identity.matricule, identity.oid),
        identity_reliability="VALI",
        ins_query_date=datetime(2026, 3, 2, tzinfo=UTC).date(),
    )
    sut.receive_identity_feed(build_identity_message(feed, "A28", control_id="C1", timestamp=datetime.now(UTC)))
    sut.worklist()
    sut.traces()
    produced = sut.produce_document(patient.id, "11488-4")
    assert produced.cda is not None and produced.pdf is not None and produced.type_code == "11488-4"
    assert identity.matricule.encode() in produced.cda  # a qualified identity: the INS is in the header
    assert sut.produce_document(patient.id, "60591-5", structure="N3").type_code == "SYNTH"
    with pytest.raises(SutRefused):
        sut.produce_document(patient.id, "00000-0")
    received = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3.4.5"/><code code="11502-2"'
        b' codeSystem="2.16.840.1.113883.6.1"/><title>CR</title><effectiveTime value="20200101"/></ClinicalDocument>'
    )
    stylesheet = b'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/>'
    assert sut.import_document(patient.id, received, stylesheet).has_stylesheet
    assert [d.type_code for d in sut.list_documents(patient.id, sort="type-code")] == ["11488-4", "11502-2", "SYNTH"]
    assert sut.list_documents(patient.id)[-1].document_id == "1.2.3.4.5"

    historical = sut.produce_document(patient.id, "11488-4", act_date="2021-06-14")
    assert b'<low value="20210614"/>' in (historical.cda or b"")
    sut.set_document_visibility(patient.id, historical.document_id, True, False, True)
    assert sut.validate_document(patient.id, historical.document_id).result == "sent"
    assert sut.dmp_action(patient.id, historical.document_id, "send").result == "not-sent"  # already sent
    assert sut.dmp_action(patient.id, historical.document_id, "replace").result == "sent"
    assert sut.dmp_action(patient.id, historical.document_id, "delete").result == "sent"
    sut.set_dmp_consent(patient.id, feed_opposition=True, consultation_opposition=False)
    assert sut.validate_document(patient.id, produced.document_id).result == "not-sent"
    assert [r.action.rsplit(":", 1)[-1] for r in dmp.received] == [
        "ProvideAndRegisterDocumentSet-b",
        "ProvideAndRegisterDocumentSet-b",
        "UpdateDocumentSet",
    ]
    sut.traces()  # the DMP calls are in the call log, in the Trace shape

    ca_pem = insi.pki.ca_bundle_pem.decode("ascii")
    sut.configure_endpoints(
        EndpointConfig(
            mssante=MssanteEndpoint(**mss.config()), annuaire=AnnuaireEndpoint(annuaire.url, annuaire.api_key, ca_pem)
        )
    )
    request = MssSendRequest(patient.id, (produced.document_id,), (PEER,), to_patient=True, read_receipt=True)
    assert sut.send_mss(request).result == "sent"
    question = EmailMessage()
    question["From"], question["To"], question["Subject"] = PEER, BAL, "Avis"
    question["Message-ID"] = "<contract-q@cabinet-lilas.mssante.fr>"
    question.set_content("Pouvez-vous me rappeler ?")
    mss.deliver(question.as_bytes())
    [received] = sut.fetch_mss()
    assert sut.reply_mss(received.message_id, "Bien reçu").result == "sent"
    assert sut.find_correspondents(family="MARTIN") and sut.find_correspondents(idnps="810000000001")
    sut.traces()  # the MSSanté and Annuaire calls too

    sut.configure_endpoints(EndpointConfig(psc=PscEndpoint(**psc.config())))
    client = sut.psc_client()
    user_id = sut.create_user("camille", "juste", CAMILLE.subject_name_id, "TEMOIN", "Camille")
    start = sut.start_psc_login()
    back = requests.get(
        start.authorization_url, verify=str(psc.pki.ca_bundle_path), allow_redirects=False, timeout=10
    ).headers["Location"]
    assert back.startswith(client.redirect_uri)
    assert sut._session.get(back, timeout=30).status_code == 200  # the browser back at the SUT
    assert sut.psc_session().user_id == user_id
    sut.traces()  # an INSi call now carries the PSC token: auth_mode PSC in the call log
    assert sut.search_ins(patient.id, mode="traits").outcome == "found"
    assert sut.traces()[-1].auth_mode == "PSC"
    state = dict(re.findall(r"[?&](state)=([^&]+)", sut.psc_logout().end_session_url))["state"]
    assert sut._session.get(f"{client.post_logout_redirect_uri}?state={state}", timeout=30).status_code == 200
    assert sut.password_login("camille", "juste").method == "password"
    with pytest.raises(SutRefused):
        sut.password_login("camille", "faux")
    sut.start_psc_ciba(CAMILLE.subject_name_id)

    copy_id = sut.store_id_document(patient.id, b"%PDF-1.7 carte nationale d'identite", "application/pdf")
    assert [c.document_id for c in sut.list_id_documents(patient.id)] == [copy_id]
    assert sut.read_id_document(patient.id, copy_id).startswith(b"%PDF")
    sut.record_activity(patient.id, "consultation")
    assert any(item.name.startswith("id-documents/") for item in sut.raw_storage())
    sut.set_clock(datetime(2031, 3, 3, 9, 30, tzinfo=UTC))
    assert sut.run_maintenance() == [copy_id]

    at = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)
    sut.create_appointment(patient.id, at, at + timedelta(minutes=20), "Consultation de suivi")
    assert [a.summary for a in sut.list_appointments(patient.id)] == ["Consultation de suivi"]
    exported = sut.export_portability(PortabilityRequest("unitaire", (patient.id,), since="2026-01-01"))
    assert exported.file_name.endswith(".zip") and exported.archive.startswith(b"PK")
    imported = sut.import_portability(exported.archive)  # into the same practice: everything is already there
    assert (imported.patient_ids, imported.documents, imported.appointments) == ((patient.id,), 0, 0)

    assert check.problems == []
    assert check.seen >= spec_operations(load_spec()), "every operation of the spec was exercised"
