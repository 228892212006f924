"""The reference system (Cabinet Témoin) end to end: its process, control API, INSi calls and HL7 feeds.

Each reference process is started with the launcher and driven over HTTP and MLLP only,
against a tiny fake INSi defined here (an HTTPS werkzeug server with a throw-away PKI,
answering canned RESULTAT documents), so these tests depend on neither the harness's
INSi simulator nor its validators. Every switchable defect is shown to change an
observable behaviour.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree
from signxml import XMLVerifier
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from harness.reference import __version__
from harness.reference.launcher import ReferenceProcess, start_reference

REPO = Path(__file__).resolve().parents[1]
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
RESULTAT_NS = "http://www.cnamts.fr/INSiResultat"
NS = {
    "soap": SOAP12,
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "bam": "urn:siram:bam:ctxbam",
    "lps": "urn:siram:lps:ctxlps",
    "rs": "http://www.cnamts.fr/INSiRecSans",
    "rv": "http://www.cnamts.fr/INSiRecVit",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
TEST_OID = "1.2.250.1.213.1.4.10"
ORG_CN = "CENTRE-DE-SANTE-TEST"
CPS_ID = "899700012345"


# -- a throw-away PKI -------------------------------------------------------------------------------


@dataclass
class Pki:
    folder: Path
    ca_pem: str
    server_cert: Path
    server_key: Path
    org_cert_pem: str
    org_key_pem: str
    cps_cert_pem: str
    cps_key_pem: str


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(cn: str, *extra: x509.NameAttribute) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"), *extra, x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def make_pki(folder: Path) -> Pki:
    ca_key, server_key, org_key, cps_key = _key(), _key(), _key(), _key()
    ca_name = _name("Test IGC-Santé CA")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    server = _certificate(_name("localhost"), server_key, ca_name, ca_key, server=True)
    org = _certificate(_name(ORG_CN), org_key, ca_name, ca_key)
    cps = _certificate(_name("DR TEMOIN", x509.NameAttribute(NameOID.SERIAL_NUMBER, CPS_ID)), cps_key, ca_name, ca_key)
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_text(_pem_key(server_key))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    return Pki(
        folder=folder,
        ca_pem=ca.public_bytes(pem).decode(),
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        org_cert_pem=org.public_bytes(pem).decode(),
        org_key_pem=_pem_key(org_key),
        cps_cert_pem=cps.public_bytes(pem).decode(),
        cps_key_pem=_pem_key(cps_key),
    )


# -- a tiny fake INSi -------------------------------------------------------------------------------


def nir_key(body: str) -> str:
    digits = body.replace("2A", "19").replace("2B", "18")
    return f"{97 - int(digits) % 97:02d}"


@dataclass
class Person:
    """Someone the fake INSi knows."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    cog: str
    nir: str  # 13 characters
    oid: str = TEST_OID
    history: tuple[str, ...] = ()
    card_od: str = ""
    bad_key: bool = False

    @property
    def matricule(self) -> str:
        return self.nir + nir_key(self.nir)


@dataclass
class Exchange:
    headers: dict[str, str]
    body: bytes
    client_cert_pem: str
    tree: Any = None

    def find(self, path: str) -> Any:
        return self.tree.find(path, NS)

    @property
    def client_cn(self) -> str:
        cert = x509.load_pem_x509_certificate(self.client_cert_pem.encode())
        return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@dataclass
class FakeInsi:
    """Answers RECSANSVITALE / RECVITALE from a list of people; some birth names trigger special answers."""

    people: list[Person] = field(default_factory=list)
    special: dict[str, str] = field(default_factory=dict)  # birth name -> "02" | "fault" | "sleep"
    exchanges: list[Exchange] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def reset(self) -> None:
        self.people.clear()
        self.special.clear()
        self.exchanges.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        body = request.get_data()
        exchange = Exchange(dict(request.headers), body, environ.get("SSL_CLIENT_CERT", ""))
        exchange.tree = etree.fromstring(body)
        self.exchanges.append(exchange)
        response = self._answer(exchange)
        return response(environ, start_response)

    def _answer(self, exchange: Exchange) -> Response:
        recsans = exchange.find(".//rs:RECSANSVITALE")
        if recsans is not None:
            name = recsans.findtext("rs:NomNaissance", namespaces=NS).upper()
            special = self.special.get(name, "")
            if special == "sleep":
                self.release.wait(10)
            if special == "fault":
                return _fault("Erreur technique du service")
            if special == "02":
                return _resultat("02")
            first = recsans.findtext("rs:Prenom", namespaces=NS).upper()
            matches = [
                p
                for p in self.people
                if p.birth_name == name
                and first in p.first_names
                and p.sex == recsans.findtext("rs:Sexe", namespaces=NS)
                and p.birth_date == recsans.findtext("rs:DateNaissance", namespaces=NS)
            ]
        else:
            od = exchange.find(".//rv:RECVITALE/rv:MatriculeOD/rv:NumIdentifiant").text
            matches = [p for p in self.people if p.card_od == od]
        if len(matches) > 1:
            return _resultat("02")
        return _resultat("00", matches[0]) if matches else _resultat("01")


def _resultat(code: str, person: Person | None = None) -> Response:
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12})
    body = etree.SubElement(envelope, f"{{{SOAP12}}}Body")
    resultat = etree.SubElement(body, f"{{{RESULTAT_NS}}}RESULTAT", nsmap={None: RESULTAT_NS})

    def add(parent: Any, name: str, text: str | None = None) -> Any:
        element = etree.SubElement(parent, f"{{{RESULTAT_NS}}}{name}")
        element.text = text
        return element

    cr = add(resultat, "CR")
    add(cr, "CodeCR", code)
    add(cr, "LibelleCR", {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}[code])
    if person is not None:
        individu = add(resultat, "INDIVIDU")
        active = add(individu, "INSACTIF")
        ident = add(active, "IdIndividu")
        add(ident, "NumIdentifiant", person.nir)
        add(ident, "Cle", "00" if person.bad_key else nir_key(person.nir))
        add(active, "OID", person.oid)
        for old in person.history:
            histo = add(individu, "INSHISTO")
            old_ident = add(histo, "IdIndividu")
            add(old_ident, "NumIdentifiant", old)
            add(old_ident, "Cle", nir_key(old))
            add(histo, "OID", person.oid)
        tiq = add(individu, "TIQ")
        add(tiq, "NomNaissance", person.birth_name)
        add(tiq, "Prenom", person.first_names[0])
        add(tiq, "ListePrenom", " ".join(person.first_names))
        add(tiq, "Sexe", person.sex)
        add(tiq, "DateNaissance", person.birth_date)
        add(tiq, "LieuNaissance", person.cog)
    return Response(etree.tostring(envelope), content_type="application/soap+xml; charset=utf-8")


def _fault(text: str) -> Response:
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP12}}}Body"), f"{{{SOAP12}}}Fault")
    etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Code"), f"{{{SOAP12}}}Value").text = "soap:Receiver"
    etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text").text = text
    detail = etree.SubElement(fault, f"{{{SOAP12}}}Detail")
    etree.SubElement(detail, "{urn:siram}Erreur", nsmap={"siram": "urn:siram"}).text = "siram-TEST"
    return Response(etree.tostring(envelope), status=500, content_type="application/soap+xml; charset=utf-8")


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def fake_insi(pki: Pki) -> Iterator[FakeInsi]:
    fake = FakeInsi()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(cafile=str(pki.folder / "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    server = make_server("127.0.0.1", 0, fake, threaded=True, ssl_context=context)
    fake.url = f"https://127.0.0.1:{server.server_port}/insi"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()


@dataclass
class Api:
    """The control API of one reference process, plus its MLLP address."""

    ref: ReferenceProcess
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self.session.request(method, self.ref.url + path, json=body, timeout=30)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def create(
        self,
        birth_name: str,
        first_names: list[str],
        sex: str = "F",
        birth_date: str = "1980-01-15",
        cog: str = "75056",
        document: str = "",
    ) -> dict[str, Any]:
        traits = {
            "birth_name": birth_name,
            "first_names": first_names,
            "sex": sex,
            "birth_date": birth_date,
            "birthplace_cog": cog,
        }
        return dict(self.call("POST", "/patients", {"traits": traits, "identity_document": document}, expect=201))

    def search(self, patient_id: str, mode: str = "traits", **card: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"mode": mode}
        if card:
            body["carte_vitale"] = card
        return dict(self.call("POST", f"/patients/{patient_id}/ins/search", body))

    def verify(self, patient_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/patients/{patient_id}/ins/verify", {}))

    def patient(self, patient_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/patients/{patient_id}"))

    def traces(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/traces")["items"])

    def worklist(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/worklist")["items"])

    def mllp(self, payload: bytes, framed: bool = True, timeout: float = 10) -> bytes:
        with socket.create_connection(self.ref.mllp, timeout=timeout) as sock:
            sock.sendall(b"\x0b" + payload + b"\x1c\x0d" if framed else payload)
            return _read_frame(sock)


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x1c\x0d"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


Factory = Callable[..., Api]


DEFECT_NAMES = (
    "no-insi-trace",
    "incomplete-insi-trace",
    "keep-status-on-ko",
    "update-on-ko-feed",
    "keep-ins-on-ko-feed",
    "no-worklist-on-ko",
    "no-auto-verify",
    "trust-received-status",
    "keep-ins-on-trait-change",
    "cps-assertion-in-centre",
    "ignores-cr-02",
    "bad-lps-context",
)
Config = tuple[tuple[str, ...], tuple[str, ...] | None, float]
PRESTARTED: list[Config] = [
    ((), None, 5),
    ((), None, 1),
    ((), ("Médecin traitant",), 5),
    *[((name,), None, 5) for name in DEFECT_NAMES],
]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory, pki: Pki, fake_insi: FakeInsi) -> Iterator[Factory]:
    """Reference processes keyed by (defects, profiles, call timeout), started in parallel once and configured."""

    def launch(config: Config) -> ReferenceProcess:
        defects, profiles, call_timeout = config
        folder = tmp_path_factory.mktemp("reference")
        return start_reference(folder, defects=defects, profiles=profiles, call_timeout_s=call_timeout)

    with ThreadPoolExecutor(max_workers=len(PRESTARTED)) as pool:
        processes = dict(zip(PRESTARTED, pool.map(launch, PRESTARTED), strict=True))
    started: dict[Config, Api] = {}

    def get(defects: tuple[str, ...] = (), profiles: tuple[str, ...] | None = None, call_timeout: float = 5) -> Api:
        key = (defects, profiles, call_timeout)
        if key not in started:
            ref = processes.pop(key, None) or launch(key)
            api = Api(ref)
            api.call(
                "PUT",
                "/config/endpoints",
                {
                    "insi": {
                        "url": fake_insi.url,
                        "ca_pem": pki.ca_pem,
                        "client_cert_pem": pki.org_cert_pem,
                        "client_key_pem": pki.org_key_pem,
                        "cps_cert_pem": pki.cps_cert_pem,
                        "cps_key_pem": pki.cps_key_pem,
                    }
                },
                expect=204,
            )
            started[key] = api
        api = started[key]
        api.call("POST", "/reset", expect=204)
        return api

    yield get
    everything = [api.ref for api in started.values()] + list(processes.values())
    for ref in everything:
        ref.process.terminate()
    codes = {ref.log_path: ref.stop() for ref in everything}
    failed = {str(path): (code, path.read_text()[-2000:]) for path, code in codes.items() if code != 0}
    assert not failed


@pytest.fixture(autouse=True)
def clean_fake(fake_insi: FakeInsi) -> None:
    fake_insi.reset()


@pytest.fixture
def api(references: Factory) -> Api:
    return references()


def person(birth_name: str, first_names: tuple[str, ...] = ("JEANNE",), seq: int = 1, **extra: Any) -> Person:
    sex = extra.pop("sex", "F")
    nir = f"{'2' if sex == 'F' else '1'}8001750560{seq:02d}"
    return Person(
        birth_name, first_names, sex, extra.pop("birth_date", "1980-01-15"), extra.pop("cog", "75056"), nir, **extra
    )


def a28(
    birth_name: str,
    first_names: str,
    *,
    control_id: str = "MSG0001",
    ins: str = "",
    oid: str = TEST_OID,
    sex: str = "F",
    birth_date: str = "19800115",
    cog: str = "75056",
    reliability: str = "VALI",
    used_name: str = "",
    event: str = "A28",
) -> str:
    """A PAM-FR ADT^A28 (or other event) from a hospital's identity domain."""
    pid = [""] * 33
    pid[0], pid[1] = "PID", "1"
    ids = ["000123^^^HOPITAL-X&1.2.250.1.999.1&ISO^PI"]
    if ins:
        namespace = "ASIP-SANTE-INS-NIA" if oid.endswith(".9") else "ASIP-SANTE-INS-NIR"
        ids.append(f"{ins}^^^{namespace}&{oid}&ISO^INS")
    pid[3] = "~".join(ids)
    first = first_names.split()[0]
    names = [f"{birth_name}^{first}^{first_names}^^^^L"]
    if used_name:
        names.append(f"{used_name}^{first}^^^^^D")
    pid[5] = "~".join(names)
    pid[7], pid[8] = birth_date, sex
    pid[11] = f"1 rue de la Paix^^PARIS^^75002^FRA^H~^^^^^^BDL^^{cog}"
    pid[32] = reliability
    segments = [
        f"MSH|^~\\&|GAM|HOPITAL-X|CABINET|TEMOIN|20240306111154||ADT^{event}^ADT_A05|{control_id}|P|2.5^FRA^2.11"
        "|||||FRA|UNICODE UTF-8|||2.11^IHE_FRANCE-2.11-PAM",
        "EVN||20240306111154",
        "|".join(pid),
        "PV1|1|N",
    ]
    return "\r".join(segments)


def msa(ack: str) -> list[str]:
    for segment in ack.strip("\x0b\x1c\r").split("\r"):
        if segment.startswith("MSA|"):
            return segment.split("|")
    raise AssertionError(f"no MSA in {ack!r}")


# -- process and control API ------------------------------------------------------------------------


def test_announces_itself_and_declares_capabilities_profiles_and_mllp(api: Api) -> None:
    caps = api.call("GET", "/capabilities")
    assert caps["sut"] == {"publisher": "Segur Harness Reference", "software": "Cabinet Témoin", "version": __version__}
    assert set(caps["capabilities"]) == {
        "identity",
        "insi",
        "identity-feed",
        "worklist",
        "traces",
        "clock",
        "reset",
        "documents",
        "dmp",
        "mssante",
        "annuaire",
        "psc",
        "id-documents",
        "portability",
    }
    assert "Centres de santé" in caps["profiles"] and "Référentiel d'identités" in caps["profiles"]
    assert caps["mllp"] == {"host": api.ref.mllp[0], "port": api.ref.mllp[1]}
    assert api.ref.url.startswith("http://127.0.0.1:") and api.ref.running
    assert "defect" not in json.dumps(caps)


def test_unknown_defect_exits_with_code_2_and_help_lists_the_defects(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "harness.reference", "--db", str(tmp_path / "db.sqlite")]
    bad = subprocess.run(
        [*command, "--defects", "no-insi-trace,bogus"], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert bad.returncode == 2 and "bogus" in bad.stderr and bad.stdout == ""
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert helped.returncode == 0 and "keep-ins-on-trait-change" in helped.stdout


def test_control_api_errors_are_problem_json(api: Api) -> None:
    url = api.ref.url
    bad_json = requests.post(f"{url}/patients", data=b"{not json", timeout=10)
    assert bad_json.status_code == 400 and bad_json.headers["Content-Type"].startswith("application/problem+json")
    assert bad_json.json()["title"] == "Bad JSON"
    assert requests.get(f"{url}/patients/P999999", timeout=10).status_code == 404
    assert requests.post(f"{url}/patients/P999999/ins/verify", json={}, timeout=10).status_code == 404
    assert requests.get(f"{url}/nowhere", timeout=10).json()["status"] == 404
    assert requests.delete(f"{url}/patients", timeout=10).status_code == 405
    refused = requests.post(
        f"{url}/patients",
        json={"traits": {"birth_name": "X", "first_names": [], "sex": "M", "birth_date": "1980-01-01"}},
        timeout=10,
    )
    assert refused.status_code == 422 and "first_names" in refused.json()["detail"]
    assert requests.post(f"{url}/patients", json=[1, 2], timeout=10).status_code == 422
    assert requests.put(f"{url}/clock", json={"now": "yesterday"}, timeout=10).status_code == 422
    bad_pem = requests.put(f"{url}/config/endpoints", json={"insi": {"url": "https://x", "ca_pem": "nope"}}, timeout=10)
    assert bad_pem.status_code == 422
    patient = api.create("SANSINS", ["LEA"])
    assert requests.post(f"{url}/patients/{patient['id']}/ins/verify", timeout=10).status_code == 409


def test_creation_and_identity_check_set_the_rniv_statuses(api: Api) -> None:
    prov = api.create("MARTIN", ["CLAIRE", "ANNE"])
    assert prov["status"] == "PROV" and prov["ins"] is None and prov["origin"] == "local"
    vali = api.create("DURAND", ["PAUL"], sex="M", document="CN")
    assert vali["status"] == "VALI" and vali["identity_document"] == "CN"
    checked = api.call("POST", f"/patients/{prov['id']}/identity-check", {"document_type": "PA"})
    assert checked["status"] == "VALI" and checked["identity_document"] == "PA"
    assert [p["id"] for p in api.call("GET", "/patients")["items"]] == [prov["id"], vali["id"]]


def test_clock_is_settable_and_stamps_traces(api: Api, fake_insi: FakeInsi) -> None:
    api.call("PUT", "/clock", {"now": "2031-05-04T10:00:00+00:00"}, expect=204)
    try:
        assert api.call("GET", "/clock")["now"].startswith("2031-05-04T10:00")
        patient = api.create("HORLOGE", ["LOUIS"], sex="M")
        api.search(patient["id"])
        assert api.traces()[0]["timestamp"].startswith("2031-05-04")
        assert patient["created"].startswith("2031-05-04")
    finally:
        api.call("PUT", "/clock", {"now": dt.datetime.now(dt.UTC).isoformat()}, expect=204)


def test_reset_wipes_identities_traces_and_worklist(api: Api, fake_insi: FakeInsi) -> None:
    fake_insi.people.append(person("EFFACE"))
    patient = api.create("EFFACE", ["JEANNE"])
    api.search(patient["id"])
    api.call("POST", "/reset", expect=204)
    assert api.call("GET", "/patients")["items"] == [] and api.traces() == [] and api.worklist() == []


# -- INSi retrieval ---------------------------------------------------------------------------------


def test_traits_search_stores_the_ins_and_insi_traits_and_traces_everything(api: Api, fake_insi: FakeInsi) -> None:
    known = person("PAT-TROIS", ("DOMINIQUE", "MARIE-LOUISE"), cog="63220", history=("2790351215100",))
    fake_insi.people.append(known)
    patient = api.create("Pat-Trois", ["DOMINIQUE"], cog="63220")
    result = api.search(patient["id"])
    assert result["code"] == "00" and result["outcome"] == "found"
    after = result["patient"]
    assert after["status"] == "RECUP"
    assert after["ins"] == {"matricule": known.matricule, "oid": TEST_OID} and len(known.matricule) == 15
    assert after["traits"]["birth_name"] == "PAT-TROIS"
    assert after["traits"]["first_names"] == ["DOMINIQUE", "MARIE-LOUISE"]
    assert after["ins_history"][0]["matricule"] == "2790351215100" + nir_key("2790351215100")
    assert api.patient(patient["id"]) == after

    [trace] = api.traces()
    assert trace["service"] == "INSi" and trace["operation"] == "rechercherInsAvecTraitsIdentite"
    assert trace["purpose"] == "retrieval" and trace["auth_mode"] == "organisation-certificate"
    assert trace["patient_id"] == patient["id"] and trace["return_code"] == "00"
    assert trace["returned"]["matricule"] == known.matricule and trace["returned"]["oid"] == TEST_OID
    assert trace["returned"]["history"][0]["matricule"].startswith("2790351215100")
    assert trace["returned"]["traits"]["first_names"] == ["DOMINIQUE", "MARIE-LOUISE"]

    [exchange] = fake_insi.exchanges
    action = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    assert exchange.headers["Content-Type"] == f'application/soap+xml; charset=utf-8; action="{action}"'
    assert exchange.find("soap:Header/wsa:Action").text.endswith(":rechercherInsAvecTraitsIdentite")
    assert exchange.find("soap:Header/wsa:MessageID").text == trace["message_id"]
    assert exchange.find("soap:Header/wsa:To").text == fake_insi.url
    bam = exchange.find("soap:Header/bam:ContexteBAM")
    assert bam.get("Version") == "01_02" and len(bam.find("bam:COUVERTURE", NS)) == 0
    assert bam.findtext("bam:Emetteur", namespaces=NS) == ORG_CN
    lps = exchange.find("soap:Header/lps:ContexteLPS")
    assert lps.get("Version") == "01_00" and lps.find("lps:LPS/lps:IDAM", NS).get("R") == "4"
    assert lps.findtext("lps:LPS/lps:Nom", namespaces=NS) == "Cabinet Témoin"
    assert len(exchange.find("soap:Header/wsse:Security")) == 0  # organisation certificate: empty Security
    assert exchange.client_cn == ORG_CN
    assert exchange.find(".//rs:RECSANSVITALE/rs:LieuNaissance").text == "63220"

    qual = api.call("POST", f"/patients/{patient['id']}/identity-check", {"document_type": "CN"})
    assert qual["status"] == "QUAL"


def test_traits_search_tries_each_birth_first_name_while_not_found(api: Api, fake_insi: FakeInsi) -> None:
    fake_insi.people.append(person("PRENOMS", ("MARIE", "ODILE"), seq=2))
    patient = api.create("PRENOMS", ["ANNE", "ODILE"])
    result = api.search(patient["id"])
    assert result["code"] == "00" and result["patient"]["traits"]["first_names"] == ["MARIE", "ODILE"]
    sent = [e.find(".//rs:Prenom").text for e in fake_insi.exchanges]
    assert sent == ["ANNE", "ODILE"]
    assert [t["return_code"] for t in api.traces()] == ["01", "00"]


def test_cr_01_and_02_change_nothing(api: Api, fake_insi: FakeInsi) -> None:
    nobody = api.create("INCONNUE", ["ZOE"], document="CN")
    result = api.search(nobody["id"])
    assert (result["code"], result["outcome"]) == ("01", "not-found")
    assert result["patient"]["status"] == "VALI" and result["patient"]["ins"] is None
    fake_insi.special["HOMONYME"] = "02"
    several = api.create("HOMONYME", ["JEAN"], sex="M")
    result = api.search(several["id"])
    assert (result["code"], result["outcome"]) == ("02", "several")
    assert result["patient"]["status"] == "PROV" and result["patient"]["ins"] is None
    assert [t["return_code"] for t in api.traces()] == ["01", "02"]
    assert "returned" not in api.traces()[1]


def test_carte_vitale_search_sends_recvitale_with_couverture(api: Api, fake_insi: FakeInsi) -> None:
    beneficiary = person("VITALE", ("ROSE",), seq=3, card_od="180017505600112")
    fake_insi.people.append(beneficiary)
    patient = api.create("VITALE", ["ROSE"])
    result = api.search(patient["id"], mode="carte-vitale", matricule_od="180017505600112", rang=1)
    assert result["code"] == "00" and result["patient"]["ins"]["matricule"] == beneficiary.matricule
    [exchange] = fake_insi.exchanges
    assert exchange.headers["Content-Type"].endswith(
        'action="urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"'
    )
    assert exchange.find(".//rv:RECVITALE/rv:RangNaissance").text == "1"
    assert exchange.find(".//rv:RECVITALE/rv:DateNaissance").text == "1980-01-15"
    couverture = exchange.find("soap:Header/bam:ContexteBAM/bam:COUVERTURE")
    assert couverture.findtext("bam:ASSURE/bam:Id/bam:Num", namespaces=NS) == "180017505600112"
    assert couverture.find("bam:BENEFICIAIRE", NS) is not None
    [trace] = api.traces()
    assert trace["operation"] == "rechercherInsAvecCarteVitale" and trace["purpose"] == "retrieval"
    missing = requests.post(
        f"{api.ref.url}/patients/{patient['id']}/ins/search", json={"mode": "carte-vitale"}, timeout=10
    )
    assert missing.status_code == 422


def test_a_matricule_with_a_wrong_key_is_never_stored(api: Api, fake_insi: FakeInsi) -> None:
    fake_insi.people.append(person("MAUVAISECLE", bad_key=True))
    patient = api.create("MAUVAISECLE", ["JEANNE"])
    result = api.search(patient["id"])
    assert (result["code"], result["outcome"]) == ("error", "error") and "key" in result["detail"]
    assert result["patient"]["ins"] is None and result["patient"]["status"] == "PROV"
    [trace] = api.traces()
    assert trace["return_code"] == "00" and "rejected" in trace


def test_a_soap_fault_gives_code_fault(api: Api, fake_insi: FakeInsi) -> None:
    fake_insi.special["PANNE"] = "fault"
    patient = api.create("PANNE", ["JEANNE"])
    result = api.search(patient["id"])
    assert (result["code"], result["outcome"]) == ("fault", "error") and "Erreur technique" in result["detail"]
    assert api.traces()[0]["return_code"] == "fault"


def test_a_hanging_insi_gives_code_error_within_the_call_timeout(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(call_timeout=1)
    fake_insi.special["DORMEUR"] = "sleep"
    patient = api.create("DORMEUR", ["JEANNE"])
    started = time.monotonic()
    result = api.search(patient["id"])
    elapsed = time.monotonic() - started
    assert (result["code"], result["outcome"]) == ("error", "error") and elapsed < 2.5
    assert api.traces()[0]["return_code"] == "error"
    assert api.call("GET", "/capabilities")["sut"]["software"] == "Cabinet Témoin"  # still serving


def test_cps_mode_outside_health_centres_sends_a_signed_assertion(
    references: Factory, fake_insi: FakeInsi, pki: Pki
) -> None:
    api = references(profiles=("Médecin traitant",))
    fake_insi.people.append(person("CARTECPS", seq=4))
    patient = api.create("CARTECPS", ["JEANNE"])
    assert api.search(patient["id"])["code"] == "00"
    assert api.traces()[0]["auth_mode"] == "cps"
    [exchange] = fake_insi.exchanges
    assert exchange.client_cn == "DR TEMOIN"
    assertion = exchange.find("soap:Header/wsse:Security/saml:Assertion")
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == CPS_ID
    assert assertion.find("saml:AuthnStatement", NS) is not None
    assert assertion[1].tag == f"{{{NS['ds']}}}Signature"  # right after Issuer
    verified = XMLVerifier().verify(etree.tostring(assertion), x509_cert=pki.cps_cert_pem)
    assert etree.QName(verified.signed_xml).localname == "Assertion"


# -- verification and trait changes -----------------------------------------------------------------


def _retrieved(api: Api, fake_insi: FakeInsi, name: str, seq: int, document: str = "") -> tuple[dict[str, Any], Person]:
    someone = person(name, seq=seq)
    fake_insi.people.append(someone)
    patient = api.create(name, ["JEANNE"], document=document)
    assert api.search(patient["id"])["code"] == "00"
    return api.patient(patient["id"]), someone


def test_verification_ok_keeps_the_identity(api: Api, fake_insi: FakeInsi) -> None:
    patient, _ = _retrieved(api, fake_insi, "VERIFOK", 5)
    result = api.verify(patient["id"])
    assert (result["code"], result["outcome"]) == ("00", "OK") and result["patient"]["status"] == "RECUP"
    verification = api.traces()[-1]
    assert (
        verification["purpose"] == "verification"
        and verification["returned"]["matricule"] == patient["ins"]["matricule"]
    )
    assert api.worklist() == []


def test_verification_ko_drops_the_ins_downgrades_and_adds_a_worklist_item(api: Api, fake_insi: FakeInsi) -> None:
    recup, _ = _retrieved(api, fake_insi, "VERIFKO", 6)
    qual, other = _retrieved(api, fake_insi, "AUTREKO", 7, document="CN")
    assert qual["status"] == "QUAL"
    fake_insi.people.clear()  # now INSi finds nobody (CR 01)
    fake_insi.people.append(person("AUTREKO", seq=8))  # ... or a different INS
    ko = api.verify(recup["id"])
    assert (ko["code"], ko["outcome"]) == ("01", "KO")
    assert ko["patient"]["status"] == "PROV" and ko["patient"]["ins"] is None and ko["patient"]["ins_history"] == []
    ko = api.verify(qual["id"])
    assert (
        (ko["code"], ko["outcome"]) == ("00", "KO")
        and ko["patient"]["status"] == "VALI"
        and ko["patient"]["ins"] is None
    )
    items = api.worklist()
    assert [(i["patient_id"], i["reason"]) for i in items] == [
        (recup["id"], "INS verification KO"),
        (qual["id"], "INS verification KO"),
    ]
    assert items[1]["detail"]["invalidated_ins"]["matricule"] == other.matricule
    assert [t["return_code"] for t in api.traces() if t["purpose"] == "verification"] == ["01", "00"]


def test_changing_a_strict_trait_drops_the_ins_but_a_used_name_does_not(api: Api, fake_insi: FakeInsi) -> None:
    recup, _ = _retrieved(api, fake_insi, "TRAITS", 9)
    used = api.call("PATCH", f"/patients/{recup['id']}", {"traits": {"used_name": "EPOUSE"}})
    assert used["status"] == "RECUP" and used["ins"] is not None and used["traits"]["used_name"] == "EPOUSE"
    changed = api.call("PATCH", f"/patients/{recup['id']}", {"traits": {"birth_name": "TRAIT"}})
    assert changed["status"] == "PROV" and changed["ins"] is None and changed["traits"]["birth_name"] == "TRAIT"
    qual, _ = _retrieved(api, fake_insi, "QUALTRAITS", 10, document="CN")
    changed = api.call("PATCH", f"/patients/{qual['id']}", {"traits": {"birth_date": "1980-01-16"}})
    assert changed["status"] == "VALI" and changed["ins"] is None
    unknown = requests.patch(
        f"{api.ref.url}/patients/{qual['id']}", json={"traits": {"eye_colour": "blue"}}, timeout=10
    )
    assert unknown.status_code == 422


# -- identity feeds ---------------------------------------------------------------------------------


def test_mllp_feed_round_trip_verifies_the_ins_and_never_takes_over_qual(api: Api, fake_insi: FakeInsi) -> None:
    someone = person("FLUX", ("ALICE", "MARIE"), seq=11)
    fake_insi.people.append(someone)
    message = a28(
        "FLUX", "ALICE MARIE", control_id="CTRL-42", ins=someone.matricule, reliability="QUAL", used_name="EPOUSEFLUX"
    )
    ack = api.mllp(message.encode()).decode()
    assert ack.startswith("\x0bMSH|") and ack.endswith("\x1c\r")
    assert msa(ack)[1:3] == ["AA", "CTRL-42"]
    [patient] = api.call("GET", "/patients")["items"]
    assert patient["status"] == "RECUP" and patient["origin"] == "feed"
    assert patient["ins"] == {"matricule": someone.matricule, "oid": TEST_OID}
    assert patient["traits"]["first_names"] == ["ALICE", "MARIE"] and patient["traits"]["used_name"] == "EPOUSEFLUX"
    assert patient["external_ids"][0]["value"] == "000123"
    [trace] = api.traces()
    assert trace["purpose"] == "verification" and trace["patient_id"] == patient["id"]
    assert fake_insi.exchanges[0].find(".//rs:Prenom").text == "ALICE"
    assert api.worklist() == []


def test_feed_ok_for_a_locally_validated_identity_gives_qual(api: Api, fake_insi: FakeInsi) -> None:
    someone = person("VALIDEE", seq=12)
    fake_insi.people.append(someone)
    local = api.create("Validée", ["Jeanne"], document="CN")
    reply = api.call("POST", "/identity-feeds", {"message": a28("VALIDEE", "JEANNE", ins=someone.matricule)})
    assert msa(reply["ack"])[1] == "AA" and reply["patient_id"] == local["id"]
    assert api.patient(local["id"])["status"] == "QUAL"


def test_feed_ko_for_an_unknown_patient_creates_it_without_ins(api: Api, fake_insi: FakeInsi) -> None:
    wrong = person("ABSENT", seq=13).matricule
    reply = api.call("POST", "/identity-feeds", {"message": a28("ABSENT", "JEANNE", ins=wrong, control_id="K1")})
    assert msa(reply["ack"])[1:3] == ["AA", "K1"]
    created = api.patient(reply["patient_id"])
    assert created["status"] == "PROV" and created["ins"] is None and created["traits"]["birth_name"] == "ABSENT"
    [item] = api.worklist()
    assert item["patient_id"] == created["id"] and "KO" in item["reason"]
    assert item["detail"]["received"]["ins"]["matricule"] == wrong
    assert api.traces()[0]["return_code"] == "01"


def test_feed_ko_for_a_known_patient_changes_nothing(api: Api, fake_insi: FakeInsi) -> None:
    local = api.create("CONNUE", ["JEANNE"])
    fake_insi.people.append(person("CONNUE", seq=14))
    different = person("CONNUE", seq=15).matricule
    reply = api.call("POST", "/identity-feeds", {"message": a28("CONNUE", "JEANNE", ins=different, used_name="AUTRE")})
    assert reply["patient_id"] == local["id"]
    assert api.patient(local["id"]) == local
    assert [i["patient_id"] for i in api.worklist()] == [local["id"]]


def test_feed_for_an_identity_already_recup_is_not_verified_again(api: Api, fake_insi: FakeInsi) -> None:
    recup, someone = _retrieved(api, fake_insi, "DEJARECUP", 16)
    reply = api.call("POST", "/identity-feeds", {"message": a28("DEJARECUP", "JEANNE", ins=someone.matricule)})
    assert msa(reply["ack"])[1] == "AA" and reply["patient_id"] == recup["id"]
    assert len(fake_insi.exchanges) == 1  # the retrieval only


def test_feed_without_ins_creates_a_provisional_identity(api: Api) -> None:
    reply = api.call("POST", "/identity-feeds", {"message": a28("SANSINS", "LUC", sex="M", event="A31")})
    assert msa(reply["ack"])[1] == "AA"
    assert api.patient(reply["patient_id"])["status"] == "PROV"


def test_malformed_feeds_get_ae_or_ar_with_err(api: Api) -> None:
    no_date = a28("SANSDATE", "LUC", birth_date="", control_id="E1")
    reply = api.call("POST", "/identity-feeds", {"message": no_date})
    fields = msa(reply["ack"])
    assert fields[1:3] == ["AE", "E1"] and "\rERR|" in reply["ack"] and "PID-7" in reply["ack"]
    assert reply["patient_id"] == ""
    for garbage, code in (("hello", "AR"), ("MSH|^~\\&|A|B|C|D|x||ORU^R01|9|P|2.5", "AR"), ("\x00\xff" * 50, "AR")):
        reply = api.call("POST", "/identity-feeds", {"message": garbage})
        assert msa(reply["ack"])[1] == code and "ERR|" in reply["ack"]
    assert api.call("GET", "/patients")["items"] == []


def test_mllp_survives_garbage_binary_and_oversize_input(api: Api) -> None:
    # Bytes outside a frame: the connection is closed without an answer.
    assert api.mllp(b"GET / HTTP/1.0\r\n\r\n", framed=False) == b""
    # Binary garbage inside a frame: AR.
    assert msa(api.mllp(bytes(range(256)) * 4).decode("utf-8", "replace"))[1] == "AR"
    # A frame that never ends and grows past the limit: AR, then the connection is closed.
    with socket.create_connection(api.ref.mllp, timeout=10) as sock:
        sock.sendall(b"\x0b" + b"A" * (1024 * 1024 + 10))
        assert msa(_read_frame(sock).decode())[1] == "AR"
        assert sock.recv(10) == b""
    # Two messages on one connection still get two ACKs, and the listener still works.
    with socket.create_connection(api.ref.mllp, timeout=10) as sock:
        one = a28("PREMIER", "LUC", sex="M", control_id="M1").encode()
        two = a28("SECOND", "LUC", sex="M", control_id="M2").encode()
        sock.sendall(b"\x0b" + one + b"\x1c\x0d\x0b" + two + b"\x1c\x0d")
        assert msa(_read_frame(sock).decode())[2] == "M1"
        assert msa(_read_frame(sock).decode())[2] == "M2"


# -- defects ------------------------------------------------------------------------------------------


def test_defect_no_insi_trace(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("no-insi-trace",))
    fake_insi.people.append(person("SANSTRACE", seq=17))
    patient = api.create("SANSTRACE", ["JEANNE"])
    assert api.search(patient["id"])["code"] == "00" and len(fake_insi.exchanges) == 1
    assert api.traces() == []


def test_defect_incomplete_insi_trace(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("incomplete-insi-trace",))
    fake_insi.people.append(person("TRACEPAUVRE", seq=18))
    patient = api.create("TRACEPAUVRE", ["JEANNE"])
    assert api.search(patient["id"])["code"] == "00"
    [trace] = api.traces()
    assert trace["return_code"] == "00" and "returned" not in trace


def test_defect_keep_status_on_ko(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("keep-status-on-ko",))
    patient, _ = _retrieved(api, fake_insi, "GARDESTATUT", 19)
    fake_insi.people.clear()
    result = api.verify(patient["id"])
    assert result["outcome"] == "KO" and result["patient"]["status"] == "RECUP" and result["patient"]["ins"] is not None
    assert api.worklist() == []


def test_defect_no_worklist_on_ko(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("no-worklist-on-ko",))
    patient, _ = _retrieved(api, fake_insi, "SANSLISTE", 20)
    fake_insi.people.clear()
    result = api.verify(patient["id"])
    assert result["outcome"] == "KO" and result["patient"]["status"] == "PROV"
    api.call("POST", "/identity-feeds", {"message": a28("SANSLISTE2", "JEANNE", ins=person("X", seq=21).matricule)})
    assert api.worklist() == []


def test_defect_update_on_ko_feed(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("update-on-ko-feed",))
    local = api.create("ECRASEE", ["JEANNE"])
    received = person("ECRASEE", seq=22).matricule
    api.call("POST", "/identity-feeds", {"message": a28("ECRASEE", "JEANNE", ins=received, used_name="NOUVEAU")})
    after = api.patient(local["id"])
    assert after["ins"]["matricule"] == received and after["traits"]["used_name"] == "NOUVEAU"


def test_defect_keep_ins_on_ko_feed(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("keep-ins-on-ko-feed",))
    received = person("GARDEINS", seq=23).matricule
    reply = api.call("POST", "/identity-feeds", {"message": a28("GARDEINS", "JEANNE", ins=received)})
    assert api.patient(reply["patient_id"])["ins"]["matricule"] == received
    assert api.traces()[0]["return_code"] == "01"


def test_defect_no_auto_verify(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("no-auto-verify",))
    received = person("CONFIANTE", seq=24).matricule
    reply = api.call("POST", "/identity-feeds", {"message": a28("CONFIANTE", "JEANNE", ins=received)})
    created = api.patient(reply["patient_id"])
    assert created["status"] == "RECUP" and created["ins"]["matricule"] == received
    assert fake_insi.exchanges == [] and api.traces() == []


def test_defect_trust_received_status(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("trust-received-status",))
    someone = person("TRANSITIVE", seq=25)
    fake_insi.people.append(someone)
    reply = api.call(
        "POST", "/identity-feeds", {"message": a28("TRANSITIVE", "JEANNE", ins=someone.matricule, reliability="QUAL")}
    )
    assert api.patient(reply["patient_id"])["status"] == "QUAL"


def test_defect_keep_ins_on_trait_change(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("keep-ins-on-trait-change",))
    patient, _ = _retrieved(api, fake_insi, "IMMUABLE", 26)
    changed = api.call("PATCH", f"/patients/{patient['id']}", {"traits": {"first_names": ["JEANNETTE"]}})
    assert changed["status"] == "RECUP" and changed["ins"] == patient["ins"]


def test_defect_cps_assertion_in_centre(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("cps-assertion-in-centre",))
    assert "Centres de santé" in api.call("GET", "/capabilities")["profiles"]
    fake_insi.people.append(person("CENTRECPS", seq=27))
    patient = api.create("CENTRECPS", ["JEANNE"])
    api.search(patient["id"])
    assert api.traces()[0]["auth_mode"] == "cps"
    [exchange] = fake_insi.exchanges
    assert exchange.client_cn == "DR TEMOIN" and exchange.find(".//saml:Assertion") is not None


def test_defect_ignores_cr_02(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("ignores-cr-02",))
    fake_insi.special["PLUSIEURS"] = "02"
    patient = api.create("PLUSIEURS", ["JEANNE"])
    result = api.search(patient["id"])
    assert result["code"] == "02" and result["patient"]["status"] == "RECUP" and result["patient"]["ins"] is None


def test_defect_bad_lps_context(references: Factory, fake_insi: FakeInsi) -> None:
    api = references(defects=("bad-lps-context",))
    patient = api.create("SANSIDAM", ["JEANNE"])
    api.search(patient["id"])
    [exchange] = fake_insi.exchanges
    lps = exchange.find("soap:Header/lps:ContexteLPS")
    assert lps.find("lps:LPS", NS) is not None and lps.find("lps:LPS/lps:IDAM", NS) is None


def test_conforming_default_throughput(api: Api) -> None:
    """Not a benchmark: a guard that the control API answers in well under 10 ms per call."""
    patient = api.create("DEBIT", ["JEANNE"])
    started = time.perf_counter()
    for _ in range(100):
        api.patient(patient["id"])
    assert (time.perf_counter() - started) / 100 < 0.05
