"""The Annuaire Santé simulator, seen from a plain HTTPS client (``requests``, TLS verified against the test PKI)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.operationoutcome import OperationOutcome

from harness.evidence.journal import exchange_evidence
from harness.pki import TestPki
from harness.simulators.annuaire import (
    EMAIL_TYPE_URL,
    IDNPS_SYSTEM,
    MAILBOX_METADATA_URL,
    RPPS_SYSTEM,
    AnnuaireFault,
    AnnuaireFaultKind,
    AnnuaireSimulator,
    DirectoryError,
)

KEY = "secret-key-for-tests"
V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
NOS = "https://mos.esante.gouv.fr/NOS"

# pp16dr-practitioner of IG-fhir-annuaire (input/fsh/examples/DR/PP16DR-Practitioner.fsh, MIT),
# hand-translated from FSH to JSON (meta.profile and the address left out).
ANS_EXAMPLE_PRACTITIONER: dict[str, Any] = {
    "resourceType": "Practitioner",
    "id": "3719500",
    "meta": {
        "versionId": "0.1",
        "source": "https://annuaire.esante.gouv.fr",
        "lastUpdated": "2019-08-31T01:00:00.000+01:00",
    },
    "extension": [
        {
            "url": "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-registration",
            "extension": [
                {"url": "isFirst", "valueBoolean": True},
                {
                    "url": "registeringOrganization",
                    "valueCodeableConcept": {
                        "coding": [
                            {
                                "system": f"{NOS}/TRE_R60-AutoriteEnregistrement/FHIR/TRE-R60-AutoriteEnregistrement",
                                "code": "CNOP",
                            }
                        ]
                    },
                },
                {"url": "period", "valuePeriod": {"start": "2019-01-15"}},
            ],
        }
    ],
    "active": True,
    "identifier": [
        {
            "system": "urn:oid:1.2.250.1.71.4.2.1",
            "use": "official",
            "value": "810102727017",
            "type": {"coding": [{"system": V2_0203, "code": "IDNPS"}]},
        },
        {
            "system": "https://rpps.esante.gouv.fr",
            "use": "official",
            "value": "10102727017",
            "type": {"coding": [{"system": V2_0203, "code": "RPPS"}]},
        },
    ],
    "name": [{"prefix": ["M"], "use": "usual", "family": "CHATELIER", "given": ["David"]}],
    "gender": "male",
    "birthDate": "1976-07-17",
    "language": "fr",
    "telecom": [
        {"system": "phone", "value": "0612122216", "rank": 1},
        {"system": "email", "value": "davidchatelier@orange.fr"},
        {
            "system": "email",
            "value": "davidchatelier@pro.mssante.fr",
            "extension": [
                {
                    "url": EMAIL_TYPE_URL,
                    "valueCoding": {
                        "system": f"{NOS}/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie",
                        "code": "MSSANTE",
                    },
                },
                {
                    "url": MAILBOX_METADATA_URL,
                    "extension": [
                        {
                            "url": "type",
                            "valueCodeableConcept": {
                                "coding": [{"system": f"{NOS}/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL", "code": "PER"}]
                            },
                        }
                    ],
                },
            ],
        },
    ],
    "qualification": [
        {
            "code": {
                "coding": [
                    {"system": f"{NOS}/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante", "code": "21"},
                    {
                        "system": f"{NOS}/TRE_R09-CategorieProfessionnelle/FHIR/TRE-R09-CategorieProfessionnelle",
                        "code": "C",
                    },
                ]
            }
        }
    ],
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("annuaire-pki"))


@pytest.fixture(scope="module")
def running(pki: TestPki) -> Iterator[AnnuaireSimulator]:
    with AnnuaireSimulator(pki, api_key=KEY, page_size=3) as sim:
        yield sim


@pytest.fixture
def sim(running: AnnuaireSimulator) -> Iterator[AnnuaireSimulator]:
    running.reset()
    yield running
    running.reset()


@pytest.fixture
def http(pki: TestPki) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
    session.verify = str(pki.ca_bundle_path)
    session.headers.update({"ESANTE-API-KEY": KEY, "Accept": "application/fhir+json"})
    yield session
    session.close()


def get(http: requests.Session, sim: AnnuaireSimulator, path: str, **params: Any) -> requests.Response:
    return http.get(sim.url + path, params=params, timeout=10)


def bundle(response: requests.Response) -> Bundle:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    parsed = Bundle.model_validate_json(response.content)
    assert parsed.type == "searchset"
    return parsed


def ids(parsed: Bundle, mode: str = "match") -> list[str]:
    return [e.resource.id for e in parsed.entry or [] if e.search is not None and e.search.mode == mode]


def outcome(response: requests.Response, status: int) -> OperationOutcome:
    assert response.status_code == status, response.text
    parsed = OperationOutcome.model_validate_json(response.content)
    assert parsed.issue and parsed.issue[0].severity == "error"
    return parsed


# -- search --------------------------------------------------------------------------------------------
def test_search_by_rpps_identifier_with_and_without_system(sim: AnnuaireSimulator, http: requests.Session) -> None:
    assert ids(bundle(get(http, sim, "/Practitioner", identifier=f"{RPPS_SYSTEM}|10000000003"))) == ["pra-0003"]
    assert ids(bundle(get(http, sim, "/Practitioner", identifier="10000000003"))) == ["pra-0003"]
    assert ids(bundle(get(http, sim, "/Practitioner", identifier=f"{IDNPS_SYSTEM}|10000000003"))) == []


def test_search_by_idnps(sim: AnnuaireSimulator, http: requests.Session) -> None:
    found = bundle(get(http, sim, "/Practitioner", identifier=f"{IDNPS_SYSTEM}|810000000001"))
    assert ids(found) == ["pra-0001"] and found.total == 1
    assert ids(bundle(get(http, sim, "/Practitioner", identifier=f"{IDNPS_SYSTEM}|0751234567"))) == ["pra-0006"]


def test_name_search_is_prefix_case_and_accent_insensitive(sim: AnnuaireSimulator, http: requests.Session) -> None:
    assert ids(bundle(get(http, sim, "/Practitioner", family="lefevre"))) == ["pra-0003"]
    assert ids(bundle(get(http, sim, "/Practitioner", name="hele"))) == ["pra-0003"]
    assert ids(bundle(get(http, sim, "/Practitioner", given="gaelle"))) == ["pra-0005"]
    assert ids(bundle(get(http, sim, "/Practitioner", family="ETIENNE"))) == ["pra-0007"]
    homonyms = bundle(get(http, sim, "/Practitioner", family="martin"))
    assert sorted(ids(homonyms)) == ["pra-0001", "pra-0002"] and homonyms.total == 2
    assert ids(bundle(get(http, sim, "/Practitioner", family="martin", given="jean"))) == ["pra-0002"]
    assert ids(bundle(get(http, sim, "/Organization", name="cabinet medical"))) == ["org-0002"]


def test_mailbox_mss_exact_and_contains(sim: AnnuaireSimulator, http: requests.Session) -> None:
    exact = {"mailbox-mss:exact": "helene.lefevre@cabinet-lilas.mssante.fr"}
    assert ids(bundle(http.get(sim.url + "/Practitioner", params=exact, timeout=10))) == ["pra-0003"]
    wrong_case = {"mailbox-mss:exact": "Helene.Lefevre@cabinet-lilas.mssante.fr"}
    assert ids(bundle(http.get(sim.url + "/Practitioner", params=wrong_case, timeout=10))) == []
    contains = {"mailbox-mss:contains": "cabinet-lilas"}
    assert sorted(ids(bundle(http.get(sim.url + "/Practitioner", params=contains, timeout=10)))) == [
        "pra-0001",
        "pra-0003",
    ]
    prefix = {"mailbox-mss": "gaelle.noel@"}
    assert ids(bundle(http.get(sim.url + "/Practitioner", params=prefix, timeout=10))) == ["pra-0005"]
    assert ids(bundle(http.get(sim.url + "/Organization", params=contains, timeout=10))) == ["org-0002"]


def test_mailboxes_carry_the_ans_extensions(sim: AnnuaireSimulator, http: requests.Session) -> None:
    found = bundle(get(http, sim, "/Practitioner", _id="pra-0003"))
    assert found.entry is not None
    practitioner = json.loads(found.entry[0].resource.model_dump_json())
    boxes = [t for t in practitioner["telecom"] if t["system"] == "email"]
    assert len(boxes) == 2
    for box in boxes:
        urls = {e["url"] for e in box["extension"]}
        assert urls == {EMAIL_TYPE_URL, MAILBOX_METADATA_URL}
        meta = next(e for e in box["extension"] if e["url"] == MAILBOX_METADATA_URL)
        kind = next(e for e in meta["extension"] if e["url"] == "type")
        assert kind["valueCodeableConcept"]["coding"][0]["code"] == "PER"


def test_active_filter_and_inactive_practitioner(sim: AnnuaireSimulator, http: requests.Session) -> None:
    assert ids(bundle(get(http, sim, "/Practitioner", family="durand", active="false"))) == ["pra-0004"]
    assert ids(bundle(get(http, sim, "/Practitioner", family="durand", active="true"))) == []


def test_revinclude_returns_the_roles(sim: AnnuaireSimulator, http: requests.Session) -> None:
    found = bundle(get(http, sim, "/Practitioner", family="lefevre", _revinclude="PractitionerRole:practitioner"))
    assert ids(found) == ["pra-0003"]
    assert sorted(ids(found, "include")) == ["prr-0003", "prr-0004"]
    assert found.total == 1


def test_practitioner_role_and_organization_searches(sim: AnnuaireSimulator, http: requests.Session) -> None:
    assert sorted(ids(bundle(get(http, sim, "/PractitionerRole", practitioner="Practitioner/pra-0003")))) == [
        "prr-0003",
        "prr-0004",
    ]
    assert ids(bundle(get(http, sim, "/PractitionerRole", organization="org-0003"))) == ["prr-0006"]
    assert ids(bundle(get(http, sim, "/PractitionerRole", identifier=f"{RPPS_SYSTEM}|1000000005001"))) == ["prr-0006"]
    included = bundle(get(http, sim, "/PractitionerRole", _id="prr-0006", _include="PractitionerRole:organization"))
    assert ids(included, "include") == ["org-0003"]
    assert ids(bundle(get(http, sim, "/Organization", identifier="urn:oid:1.2.250.1.71.4.2.2|3000000003"))) == [
        "org-0003"
    ]
    assert ids(bundle(get(http, sim, "/Organization", _id="org-0001,org-0002"))) == ["org-0001", "org-0002"]


def test_post_search_form_encoded(sim: AnnuaireSimulator, http: requests.Session) -> None:
    response = http.post(sim.url + "/Practitioner/_search", data={"family": "noël"}, timeout=10)
    assert ids(bundle(response)) == ["pra-0005"]


def test_paging_follows_next_to_the_end(sim: AnnuaireSimulator, http: requests.Session) -> None:
    first = bundle(get(http, sim, "/Practitioner", _count="2"))
    assert first.total == 7
    seen = ids(first)
    page = first
    pages = 1
    while True:
        following = [link.url for link in page.link or [] if link.relation == "next"]
        if not following:
            break
        assert following[0].startswith(sim.url + "?_getpages=")
        page = bundle(http.get(following[0], timeout=10))
        assert page.total == 7
        seen += ids(page)
        pages += 1
    assert pages == 4 and len(seen) == 7 == len(set(seen))
    self_links = [link.url for link in first.link or [] if link.relation == "self"]
    assert self_links and self_links[0].startswith(sim.url + "/Practitioner?")


def test_count_is_capped_at_page_size(sim: AnnuaireSimulator, http: requests.Session) -> None:
    capped = bundle(get(http, sim, "/Practitioner", _count="40"))
    assert len(ids(capped)) == 3 and capped.total == 7
    summary = bundle(get(http, sim, "/Practitioner", _count="0"))
    assert ids(summary) == [] and summary.total == 7


def test_read_by_id(sim: AnnuaireSimulator, http: requests.Session) -> None:
    response = get(http, sim, "/Organization/org-0001")
    assert response.status_code == 200
    assert json.loads(response.content)["name"] == "CENTRE HOSPITALIER DE TEST"
    outcome(get(http, sim, "/Practitioner/nobody"), 404)


# -- refusals ----------------------------------------------------------------------------------------
def test_api_key_missing_and_wrong(sim: AnnuaireSimulator, http: requests.Session) -> None:
    url = sim.url + "/Practitioner"
    del http.headers["ESANTE-API-KEY"]
    outcome(http.get(url, timeout=10), 401)
    outcome(http.get(url, headers={"ESANTE-API-KEY": "nope"}, timeout=10), 403)


def test_writes_are_refused(sim: AnnuaireSimulator, http: requests.Session) -> None:
    body = json.dumps({"resourceType": "Practitioner", "id": "pra-0001"})
    outcome(http.put(sim.url + "/Practitioner/pra-0001", data=body, timeout=10), 405)
    outcome(http.delete(sim.url + "/Practitioner/pra-0001", timeout=10), 405)
    created = http.post(sim.url + "/Practitioner", data=body, timeout=10)
    outcome(created, 405)
    assert "GET" in created.headers["Allow"]


def test_bad_requests_are_operation_outcomes(sim: AnnuaireSimulator, http: requests.Session) -> None:
    outcome(get(http, sim, "/Practitioner", colour="blue"), 400)  # strict: unknown parameter
    outcome(get(http, sim, "/Practitioner", **{"family:above": "x"}), 400)
    outcome(get(http, sim, "/Practitioner", _count="-1"), 400)
    outcome(get(http, sim, "/Practitioner", _count="many"), 400)
    outcome(get(http, sim, "/Practitioner", _revinclude="PractitionerRole:organization"), 400)
    outcome(get(http, sim, "/Practitioner", active="maybe"), 400)
    outcome(get(http, sim, "/Patient"), 404)
    outcome(get(http, sim, "", _getpages="no-such-search"), 410)
    first = bundle(get(http, sim, "/Practitioner", _count="2"))
    next_url = next(link.url for link in first.link or [] if link.relation == "next")
    outcome(http.get(next_url.replace("_getpagesoffset=2", "_getpagesoffset=x"), timeout=10), 400)
    outcome(http.get(next_url.replace("_getpagesoffset=2", "_getpagesoffset=999"), timeout=10), 400)
    outcome(http.get(sim.url.replace("/fhir/v2", "/other"), timeout=10), 404)


def test_huge_query_string_is_refused_not_crashed(sim: AnnuaireSimulator, http: requests.Session) -> None:
    outcome(get(http, sim, "/Practitioner", family="x" * 70000), 414)
    many = "&".join(f"family=a{n}" for n in range(300))
    outcome(http.get(sim.url + "/Practitioner?" + many, timeout=10), 400)
    assert ids(bundle(get(http, sim, "/Practitioner", family="martin", given="sophie"))) == ["pra-0001"]


def test_xml_is_not_served(sim: AnnuaireSimulator, http: requests.Session) -> None:
    outcome(get(http, sim, "/Practitioner", _format="xml"), 406)
    outcome(http.get(sim.url + "/Practitioner", headers={"Accept": "application/fhir+xml"}, timeout=10), 406)
    assert ids(bundle(get(http, sim, "/Practitioner", _format="json", family="benard"))) == ["pra-0006"]


# -- faults --------------------------------------------------------------------------------------------
def test_fault_unavailable(sim: AnnuaireSimulator, http: requests.Session) -> None:
    sim.set_fault("unavailable", count=1)
    outcome(get(http, sim, "/Practitioner"), 503)
    bundle(get(http, sim, "/Practitioner"))  # the fault was for one call only


def test_fault_slow(sim: AnnuaireSimulator, http: requests.Session) -> None:
    sim.set_fault(AnnuaireFault(AnnuaireFaultKind.SLOW, delay_s=0.5))
    began = time.monotonic()
    bundle(get(http, sim, "/Practitioner", family="martin"))
    assert time.monotonic() - began >= 0.5


def test_fault_malformed(sim: AnnuaireSimulator, http: requests.Session) -> None:
    sim.set_fault("malformed")
    response = get(http, sim, "/Practitioner")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_fault_empty(sim: AnnuaireSimulator, http: requests.Session) -> None:
    sim.set_fault(AnnuaireFaultKind.EMPTY)
    empty = bundle(get(http, sim, "/Practitioner", family="martin"))
    assert empty.total == 0 and not empty.entry


# -- records and evidence ----------------------------------------------------------------------------
def test_exchanges_are_recorded(sim: AnnuaireSimulator, http: requests.Session) -> None:
    mark = sim.recorder.mark()
    bundle(get(http, sim, "/Practitioner", family="martin"))
    get(http, sim, "/Organization/org-0002")
    searches = sim.recorder.since(mark, action="search-type Practitioner")
    assert len(searches) == 1
    exchange = searches[0]
    assert exchange.simulator == "annuaire" and exchange.protocol == "http"
    assert exchange.meta["total"] == 2 and exchange.meta["api_key"] == "valid"
    assert exchange.meta["parameters"] == [["family", "martin"]]
    assert exchange.meta["http"]["status"] == 200
    assert exchange.tls["version"].startswith("TLS")
    assert b"pra-0002" in exchange.response
    assert [e.action for e in sim.recorder.since(mark)] == ["search-type Practitioner", "read Organization"]


def test_api_key_is_redacted_in_evidence(sim: AnnuaireSimulator, http: requests.Session) -> None:
    mark = sim.recorder.mark()
    bundle(get(http, sim, "/Practitioner", family="martin"))
    (exchange,) = sim.recorder.since(mark)
    assert KEY in json.dumps(exchange.meta)
    safe, data = exchange_evidence(exchange)
    assert KEY.encode() not in data
    assert KEY not in json.dumps(safe.meta)


# -- seed ------------------------------------------------------------------------------------------------
def test_seed_shapes(sim: AnnuaireSimulator) -> None:
    counts = sim.directory.counts()
    assert counts["Practitioner"] >= 6 and counts["Organization"] == 3 and counts["PractitionerRole"] >= 6


def test_an_ans_example_instance_is_found_by_search(sim: AnnuaireSimulator, http: requests.Session) -> None:
    sim.add_resource(ANS_EXAMPLE_PRACTITIONER)
    assert ids(bundle(get(http, sim, "/Practitioner", identifier=f"{RPPS_SYSTEM}|10102727017"))) == ["3719500"]
    contains = {"mailbox-mss:contains": "davidchatelier@pro"}
    assert ids(bundle(http.get(sim.url + "/Practitioner", params=contains, timeout=10))) == ["3719500"]
    personal = {"mailbox-mss": "davidchatelier@orange"}  # a personal e-mail is not an MSSanté BAL
    assert ids(bundle(http.get(sim.url + "/Practitioner", params=personal, timeout=10))) == []
    sim.reset()
    assert sim.directory.get("Practitioner", "3719500") is None


def test_invalid_resources_are_refused(sim: AnnuaireSimulator) -> None:
    with pytest.raises(DirectoryError):
        sim.add_resource({"resourceType": "Practitioner", "id": "x", "gender": ["not", "a", "code"]})
    with pytest.raises(DirectoryError):
        sim.add_resource({"resourceType": "Patient", "id": "x"})


def test_unreadable_http_gets_an_operation_outcome(sim: AnnuaireSimulator, pki: TestPki) -> None:
    import socket
    import ssl

    host, port = sim.url.split("//")[1].split("/")[0].split(":")
    context = ssl.create_default_context(cafile=str(pki.ca_bundle_path))
    mark = sim.recorder.mark()
    with context.wrap_socket(socket.create_connection((host, int(port)), timeout=5), server_hostname=host) as tls:
        tls.sendall(b"GARBAGE\r\n\r\n")
        answer = b""
        while piece := tls.recv(65536):
            answer += piece
    assert answer.startswith(b"HTTP/1.1 400")
    OperationOutcome.model_validate_json(answer.split(b"\r\n\r\n", 1)[1])
    assert [e.meta["http"]["status"] for e in sim.recorder.since(mark)] == [400]


# -- _lastUpdated, identifier-type, mailbox-mss-type, number-smartcard ----------------------------------
def every_match(http: requests.Session, sim: AnnuaireSimulator, path: str, params: Any) -> list[str]:
    """The ids of every match, following ``next`` links (the simulator under test pages by 3)."""
    page = bundle(http.get(sim.url + path, params=params, timeout=10))
    found = ids(page)
    while following := [link.url for link in page.link or [] if link.relation == "next"]:
        page = bundle(http.get(following[0], timeout=10))
        found += ids(page)
    return sorted(found)


def last_updated(http: requests.Session, sim: AnnuaireSimulator, path: str, *values: str) -> list[str]:
    return every_match(http, sim, path, [("_lastUpdated", v) for v in values])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("ge2026-02-01",), ["pra-0003", "pra-0007"]),
        (("gt2026-01",), ["pra-0003", "pra-0007"]),  # after the whole of January
        (("lt2025",), ["pra-0004"]),
        (("2026-01-15",), ["pra-0001", "pra-0005"]),  # no prefix is eq, the whole day
        (("eq2025-12-31",), ["pra-0006"]),  # 23:30+01:00 is 22:30 UTC, still the 31st
        (("le2025-12-31",), ["pra-0002", "pra-0004", "pra-0006"]),
        (("ge2025-01-01", "lt2026-01-01"), ["pra-0002", "pra-0006"]),  # repeated: AND
        (("lt2025,ge2026-03",), ["pra-0003", "pra-0004"]),  # comma: OR
        (("ge2026-03-02T13:30:00Z",), ["pra-0003"]),  # 14:30+01:00
        (("gt2026-03-02T13:30:00Z",), []),
        (("eq2026-03-02T14:30+01:00",), ["pra-0003"]),  # minute precision
        (
            ("lt2026-03-02T14:30:00.000+01:00",),
            ["pra-0001", "pra-0002", "pra-0004", "pra-0005", "pra-0006", "pra-0007"],
        ),
    ],
)
def test_last_updated_on_practitioner(
    sim: AnnuaireSimulator, http: requests.Session, values: tuple[str, ...], expected: list[str]
) -> None:
    assert last_updated(http, sim, "/Practitioner", *values) == expected


def test_last_updated_on_every_type(sim: AnnuaireSimulator, http: requests.Session) -> None:
    assert last_updated(http, sim, "/PractitionerRole", "ge2026-02") == ["prr-0001"]
    assert last_updated(http, sim, "/Organization", "lt2026") == ["org-0003"]
    assert last_updated(http, sim, "/HealthcareService", "ge2026") == ["hcs-0001"]
    assert last_updated(http, sim, "/Device", "lt2025") == ["dev-0002"]


@pytest.mark.parametrize(
    "value", ["ne2026-01-01", "sa2026-01-01", "yesterday", "2026-13-01", "2026-02-30", "ge2026-01-01T25:00Z", "ge"]
)
def test_bad_last_updated_is_a_400(sim: AnnuaireSimulator, http: requests.Session, value: str) -> None:
    outcome(get(http, sim, "/Practitioner", _lastUpdated=value), 400)


def test_a_resource_without_last_updated_never_matches_a_date(sim: AnnuaireSimulator, http: requests.Session) -> None:
    sim.add_resource({"resourceType": "Device", "id": "dev-undated", "status": "active"})
    assert "dev-undated" not in last_updated(http, sim, "/Device", "ge1900")
    assert "dev-undated" not in last_updated(http, sim, "/Device", "lt2100")


def test_identifier_type(sim: AnnuaireSimulator, http: requests.Session) -> None:
    rpps = every_match(http, sim, "/Practitioner", {"identifier-type": "RPPS"})
    assert rpps == ["pra-0001", "pra-0002", "pra-0003", "pra-0004", "pra-0005", "pra-0007"]  # pra-0006 is ADELI-only
    idnps = bundle(get(http, sim, "/Practitioner", **{"identifier-type": f"{V2_0203}|IDNPS"}))
    assert idnps.total == 7
    assert ids(bundle(get(http, sim, "/Practitioner", **{"identifier-type": "ADELI"}))) == []
    assert ids(bundle(get(http, sim, "/Practitioner", **{"identifier-type": "http://other|RPPS"}))) == []
    assert ids(bundle(get(http, sim, "/Organization", **{"identifier-type": "FINEG"}))) == ["org-0001", "org-0003"]
    outcome(get(http, sim, "/PractitionerRole", **{"identifier-type": "RPPS"}), 400)  # not on the real API either


def test_mailbox_mss_type(sim: AnnuaireSimulator, http: requests.Session) -> None:
    def search(path: str, value: str) -> list[str]:
        return every_match(http, sim, path, {"mailbox-mss-type": value})

    assert search("/Organization", "APP") == ["org-0003"]
    assert search("/Organization", f"{NOS}/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL|ORG") == ["org-0001", "org-0002"]
    assert search("/Organization", "ORG,APP") == ["org-0001", "org-0002", "org-0003"]
    assert len(search("/Practitioner", "PER")) == 6  # pra-0007 has no BAL
    assert search("/Practitioner", "CAB") == []
    assert search("/PractitionerRole", "CAB") == ["prr-0001"]
    prefix = {"mailbox-mss": "cabinet.martin@"}
    assert ids(bundle(http.get(sim.url + "/PractitionerRole", params=prefix, timeout=10))) == ["prr-0001"]


def test_number_smartcard(sim: AnnuaireSimulator, http: requests.Session) -> None:
    assert ids(bundle(get(http, sim, "/Practitioner", **{"number-smartcard": "2800000001"}))) == ["pra-0001"]
    assert ids(bundle(get(http, sim, "/Practitioner", **{"number-smartcard:exact": "280000000"}))) == []
    assert ids(bundle(get(http, sim, "/Practitioner", **{"number-smartcard": "9999"}))) == []


# -- HealthcareService and Device -------------------------------------------------------------------------
ARHGOS = "https://arhgos.ars.sante.fr"


@pytest.mark.parametrize(("kind", "resource_id"), [("HealthcareService", "hcs-0001"), ("Device", "dev-0001")])
def test_read_healthcare_service_and_device(
    sim: AnnuaireSimulator, http: requests.Session, kind: str, resource_id: str
) -> None:
    response = get(http, sim, f"/{kind}/{resource_id}")
    assert response.status_code == 200, response.text
    model = HealthcareService if kind == "HealthcareService" else Device
    assert model.model_validate_json(response.content).id == resource_id
    outcome(get(http, sim, f"/{kind}/nothing-here"), 404)


def test_search_healthcare_services(sim: AnnuaireSimulator, http: requests.Session) -> None:
    path = "/HealthcareService"
    assert ids(bundle(get(http, sim, path, _id="hcs-0002"))) == ["hcs-0002"]
    assert ids(bundle(get(http, sim, path, identifier=f"{ARHGOS}|00-00-RC-00001"))) == ["hcs-0001"]
    assert sorted(ids(bundle(get(http, sim, path, organization="Organization/org-0001")))) == ["hcs-0001", "hcs-0002"]
    assert ids(bundle(get(http, sim, path, organization="org-0002"))) == []
    assert ids(bundle(get(http, sim, path, active="false"))) == ["hcs-0002"]
    included = bundle(get(http, sim, path, _id="hcs-0001", _include="HealthcareService:organization"))
    assert ids(included, "include") == ["org-0001"]
    outcome(get(http, sim, path, providedBy="org-0001"), 400)  # the FHIR parameter is organization


def test_search_devices(sim: AnnuaireSimulator, http: requests.Session) -> None:
    path = "/Device"
    assert ids(bundle(get(http, sim, path, identifier=f"{ARHGOS}|00-00-EML-00002"))) == ["dev-0002"]
    assert ids(bundle(get(http, sim, path, identifier="00-00-EML-00001"))) == ["dev-0001"]
    assert sorted(ids(bundle(get(http, sim, path, organization="org-0001")))) == ["dev-0001", "dev-0002"]
    assert ids(bundle(get(http, sim, path, status="inactive"))) == ["dev-0002"]
    included = bundle(get(http, sim, path, _id="dev-0001", _include="Device:organization"))
    assert ids(included, "include") == ["org-0001"]
    response = http.post(sim.url + "/Device/_search", data={"organization": "org-0001", "status": "active"}, timeout=10)
    assert ids(bundle(response)) == ["dev-0001"]


def test_organization_revincludes(sim: AnnuaireSimulator, http: requests.Session) -> None:
    params = [
        ("_id", "org-0001"),
        ("_revinclude", "HealthcareService:organization"),
        ("_revinclude", "Device:organization"),
    ]
    found = bundle(http.get(sim.url + "/Organization", params=params, timeout=10))
    assert ids(found) == ["org-0001"] and found.total == 1
    assert sorted(ids(found, "include")) == ["dev-0001", "dev-0002", "hcs-0001", "hcs-0002"]


@pytest.mark.parametrize("kind", ["Practitioner", "PractitionerRole", "Organization", "HealthcareService", "Device"])
def test_unknown_search_parameter_is_a_400_on_every_type(
    sim: AnnuaireSimulator, http: requests.Session, kind: str
) -> None:
    refused = outcome(get(http, sim, f"/{kind}", colour="blue"), 400)
    assert "colour" in (refused.issue[0].diagnostics or "")
    outcome(http.post(sim.url + f"/{kind}/_search", data={"colour": "blue"}, timeout=10), 400)
    outcome(get(http, sim, f"/{kind}", **{"_lastUpdated:missing": "true"}), 400)  # unknown modifier


def test_new_types_survive_reset_and_are_counted(sim: AnnuaireSimulator) -> None:
    sim.add_resource({"resourceType": "HealthcareService", "id": "hcs-extra"})
    assert sim.directory.counts()["HealthcareService"] == 3
    sim.reset()
    assert sim.directory.counts() == {
        "Practitioner": 7,
        "PractitionerRole": 8,
        "Organization": 3,
        "HealthcareService": 2,
        "Device": 2,
    }
    with pytest.raises(DirectoryError):
        sim.add_resource({"resourceType": "Device", "id": "d", "status": ["not", "a", "code"]})
