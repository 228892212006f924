"""The SUT adapters under hostile conditions: refused connections, hangs, garbage, missing capabilities.

A conformance run must never hang or crash because the system under test
misbehaves: every such failure has to become a ``SutError`` (verdict ``error``)
naming the endpoint and the reason, a missing capability a ``NotSupported``
(verdict ``not-supported``), and the run must go on to the next scenario and
still finalise its evidence folder. These tests drive :class:`HttpSut` against
real sockets on 127.0.0.1 (a fake control API in a thread), :class:`PythonSut`
against small in-process targets, and the pytest plugin end to end with
``pytester``.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.evidence.journal import read_verdicts
from harness.sut.base import SutAdapter, SutError, SutRefused
from harness.sut.http import HttpSut
from harness.sut.model import (
    Capability,
    DmpEndpoint,
    DmpOutcome,
    EndpointConfig,
    IdentityStatus,
    PatientTraits,
    ProducedDocument,
    StoredDocument,
    SutDescription,
)
from harness.sut.python import PythonSut, load_object
from harness.verdicts import NotSupported, Verdict

TIMEOUT_S = 0.5
#: Generous correctness bound for "gave up around the timeout" (not a performance target).
HANG_BOUND_S = 5.0

CAPABILITIES: dict[str, Any] = {
    "sut": {"publisher": "Fake", "software": "Fake SUT", "version": "0.0.1"},
    "capabilities": ["identity", "traces"],
    "profiles": [],
}

PATIENT: dict[str, Any] = {
    "id": "p-1",
    "traits": {"birth_name": "DUPONT", "first_names": ["MARIE", "ANNE"], "sex": "F", "birth_date": "1979-03-28"},
    "status": "PROV",
    "identity_document": "",
    "origin": "local",
}

TRAITS = PatientTraits("DUPONT", ("MARIE", "ANNE"), "F", "1979-03-28")


# -- a fake control API on loopback --------------------------------------------------------
@dataclass
class Answer:
    """What the fake SUT answers to one route; ``hang`` holds the request until released."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    hang: bool = False


def json_answer(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode("utf-8"))


def problem(status: int, title: str, detail: str) -> Answer:
    return Answer(status, json.dumps({"title": title, "detail": detail}).encode(), "application/problem+json")


@dataclass
class FakeSut:
    """A ThreadingHTTPServer answering canned routes and logging every request it sees."""

    routes: dict[tuple[str, str], Answer] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def paths(self) -> list[str]:
        return [path for _, path in self.seen]

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake.bodies.append(self.rfile.read(length) if length else b"")
                fake.seen.append((self.command, self.path))
                route = self.path.partition("?")[0]
                answer = fake.routes.get((self.command, route)) or problem(404, "Not Found", route)
                if answer.hang:
                    fake.release.wait(HANG_BOUND_S * 2)
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), name="fake-sut", daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests honours *_proxy variables; loopback fakes must be reached directly."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def fake() -> Iterator[FakeSut]:
    server = FakeSut(routes={("GET", "/capabilities"): json_answer(CAPABILITIES)})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_sut(fake: FakeSut) -> Iterator[HttpSut]:
    sut = HttpSut(fake.url, timeout_s=TIMEOUT_S)
    try:
        yield sut
    finally:
        sut.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused, and nobody can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose kernel completes the handshake but where nothing ever answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# -- HttpSut: transport failures -------------------------------------------------------------
def test_http_connection_refused_is_a_sut_error(refused_port: int) -> None:
    sut = HttpSut(f"http://127.0.0.1:{refused_port}", timeout_s=TIMEOUT_S)
    with pytest.raises(SutError) as info:
        sut.describe()
    assert not isinstance(info.value, SutRefused)
    assert str(info.value).startswith("GET /capabilities: cannot connect to the SUT")


def test_http_silent_server_times_out_within_the_timeout(silent_port: int) -> None:
    sut = HttpSut(f"http://127.0.0.1:{silent_port}", timeout_s=TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(SutError, match=r"^GET /capabilities: no answer within 0\.5 s$"):
        sut.describe()
    elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.8 <= elapsed < HANG_BOUND_S


def test_http_hang_on_one_endpoint_does_not_poison_the_next_call(fake: FakeSut, http_sut: HttpSut) -> None:
    fake.routes[("GET", "/traces")] = Answer(hang=True)
    fake.routes[("GET", "/patients")] = json_answer({"items": [PATIENT]})
    started = time.monotonic()
    with pytest.raises(SutError, match=r"^GET /traces: no answer within 0\.5 s$"):
        http_sut.traces()
    assert time.monotonic() - started < HANG_BOUND_S
    assert [p.id for p in http_sut.list_patients()] == ["p-1"]


# -- HttpSut: garbage and HTTP statuses ---------------------------------------------------------
def test_http_non_json_body_is_a_sut_error(fake: FakeSut, http_sut: HttpSut) -> None:
    fake.routes[("GET", "/patients")] = Answer(200, b"<html>Oops</html>", "text/html")
    with pytest.raises(SutError) as info:
        http_sut.list_patients()
    assert str(info.value) == "GET /patients: the answer is not JSON: '<html>Oops</html>'"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param({"capabilities": ["identity"]}, "'sut'", id="sut-missing"),
        pytest.param({**CAPABILITIES, "capabilities": "identity"}, "must be arrays", id="capabilities-a-string"),
        pytest.param(["identity", "traces"], "", id="a-list"),
        pytest.param({**CAPABILITIES, "mllp": {"host": "h", "port": "not-a-port"}}, "invalid literal", id="bad-port"),
    ],
)
def test_http_malformed_capabilities_is_a_sut_error(fake: FakeSut, http_sut: HttpSut, answer: Any, reason: str) -> None:
    fake.routes[("GET", "/capabilities")] = json_answer(answer)
    with pytest.raises(SutError) as info:
        http_sut.describe()
    message = str(info.value)
    assert message.startswith("GET /capabilities: malformed answer (")
    assert reason in message


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param({k: v for k, v in PATIENT.items() if k != "traits"}, "'traits'", id="traits-missing"),
        pytest.param({**PATIENT, "status": "BOGUS"}, "'BOGUS' is not a valid IdentityStatus", id="bad-status"),
        pytest.param([PATIENT], "'list' object", id="a-list"),
        pytest.param("p-1", "'str' object", id="a-string"),
    ],
)
def test_http_malformed_patient_is_a_sut_error(fake: FakeSut, http_sut: HttpSut, answer: Any, reason: str) -> None:
    fake.routes[("POST", "/patients")] = json_answer(answer, status=201)
    with pytest.raises(SutError) as info:
        http_sut.create_patient(TRAITS)
    message = str(info.value)
    assert message.startswith("POST /patients: malformed patient in the answer (")
    assert reason in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"entries": []}, "GET /traces: expected an object with an 'items' list", id="items-missing"),
        pytest.param({"items": "none"}, "GET /traces: expected an object with an 'items' list", id="items-not-list"),
        pytest.param({"items": [["not", "an", "object"]]}, "GET /traces: malformed answer (", id="item-not-object"),
    ],
)
def test_http_malformed_traces_is_a_sut_error(fake: FakeSut, http_sut: HttpSut, answer: Any, expected: str) -> None:
    fake.routes[("GET", "/traces")] = json_answer(answer)
    with pytest.raises(SutError) as info:
        http_sut.traces()
    assert str(info.value).startswith(expected)


def test_http_500_is_a_sut_error_naming_the_endpoint(fake: FakeSut, http_sut: HttpSut) -> None:
    fake.routes[("GET", "/patients/p-1")] = problem(500, "Internal Server Error", "database is locked")
    with pytest.raises(SutError) as info:
        http_sut.get_patient("p-1")
    assert not isinstance(info.value, SutRefused)
    assert str(info.value) == "GET /patients/p-1: HTTP 500: database is locked"


def test_http_501_is_not_supported(fake: FakeSut, http_sut: HttpSut) -> None:
    fake.routes[("GET", "/patients")] = problem(501, "Not Implemented", "no listing")
    with pytest.raises(NotSupported) as info:
        http_sut.list_patients()
    assert info.value.reason == "GET /patients answered 501 Not Implemented"


def test_http_422_is_a_refusal_with_the_problem_detail(fake: FakeSut, http_sut: HttpSut) -> None:
    fake.routes[("GET", "/patients")] = problem(422, "Unprocessable", "the control key of the matricule is wrong")
    with pytest.raises(SutRefused) as info:
        http_sut.find_patients_by_ins("279035121518990")
    assert str(info.value) == "GET /patients: refused (422): the control key of the matricule is wrong"
    assert fake.seen[-1] == ("GET", "/patients?ins=279035121518990")


# -- HttpSut: capabilities ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operation", "capability", "forbidden_path"),
    [
        pytest.param(lambda s: s.verify_ins("p-1"), "insi", "/ins/verify", id="insi"),
        pytest.param(lambda s: s.worklist(), "worklist", "/worklist", id="worklist"),
        pytest.param(lambda s: s.reset(), "reset", "/reset", id="reset"),
        pytest.param(
            lambda s: s.produce_document("p-1", "11488-4"), "documents", "/patients/p-1/documents", id="produce"
        ),
        pytest.param(lambda s: s.list_documents("p-1"), "documents", "/patients/p-1/documents", id="list"),
        pytest.param(
            lambda s: s.import_document("p-1", b"<x/>"), "documents", "/patients/p-1/documents/import", id="import"
        ),
        pytest.param(
            lambda s: s.set_document_visibility("p-1", "d-1", True, True, True),
            "dmp",
            "/patients/p-1/documents/d-1/visibility",
            id="visibility",
        ),
        pytest.param(
            lambda s: s.validate_document("p-1", "d-1"), "dmp", "/patients/p-1/documents/d-1/validate", id="validate"
        ),
        pytest.param(
            lambda s: s.dmp_action("p-1", "d-1", "delete"), "dmp", "/patients/p-1/documents/d-1/dmp", id="dmp-action"
        ),
        pytest.param(
            lambda s: s.set_dmp_consent("p-1", True, False), "dmp", "/patients/p-1/dmp-consent", id="dmp-consent"
        ),
    ],
)
def test_http_undeclared_capability_is_not_supported_without_calling(
    fake: FakeSut,
    http_sut: HttpSut,
    operation: Callable[[HttpSut], Any],
    capability: str,
    forbidden_path: str,
) -> None:
    for method in ("GET", "POST", "PUT"):
        fake.routes[(method, forbidden_path)] = json_answer({"items": []})
    with pytest.raises(NotSupported) as info:
        operation(http_sut)
    assert info.value.reason == f"the SUT does not declare the '{capability}' capability"
    assert fake.paths() == ["/capabilities"]


def test_http_unknown_capability_names_are_ignored(fake: FakeSut, http_sut: HttpSut) -> None:
    fake.routes[("GET", "/capabilities")] = json_answer({**CAPABILITIES, "capabilities": ["identity", "teleport"]})
    assert http_sut.describe().capabilities == frozenset({Capability.IDENTITY})


# -- HttpSut: happy path --------------------------------------------------------------------------
def test_http_happy_path_creates_a_patient(fake: FakeSut, http_sut: HttpSut) -> None:
    created = {**PATIENT, "status": "VALI", "identity_document": "CN"}
    fake.routes[("POST", "/patients")] = json_answer(created, status=201)
    description = http_sut.describe()
    assert description == SutDescription(
        "Fake", "Fake SUT", "0.0.1", frozenset({Capability.IDENTITY, Capability.TRACES}), ()
    )
    record = http_sut.create_patient(TRAITS, identity_document="CN")
    assert record.id == "p-1"
    assert record.traits == TRAITS
    assert record.status is IdentityStatus.VALI
    assert record.ins is None
    assert record.identity_document == "CN"
    assert record.origin == "local"
    assert fake.seen == [("GET", "/capabilities"), ("POST", "/patients")]


# -- documents ------------------------------------------------------------------------------------
CDA = b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>'
PDF = b"%PDF-1.4\n%\xbf\xf7\xa2\xfe\n"
STYLESHEET = b'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/>'


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


PRODUCED: dict[str, Any] = {
    "document_id": "1.2.250.1.999.1",
    "type_code": "11488-4",
    "cda_base64": b64(CDA),
    "pdf_base64": b64(PDF),
    "pdf_file_name": "20240305_11488-4_DUPONT_Marie.pdf",
}
STORED: dict[str, Any] = {
    "document_id": "1.2.3.4",
    "type_code": "11502-2",
    "title": "CR de biologie",
    "creation_time": "2024-01-02T08:30:00+01:00",
    "origin": "imported",
    "has_stylesheet": True,
    "stylesheet_sha256": "ab" * 32,
}
STORED_RECORD = StoredDocument(
    "1.2.3.4", "11502-2", "CR de biologie", "2024-01-02T08:30:00+01:00", "imported", True, "ab" * 32
)


@pytest.fixture
def documents_sut(fake: FakeSut, http_sut: HttpSut) -> HttpSut:
    fake.routes[("GET", "/capabilities")] = json_answer({**CAPABILITIES, "capabilities": ["identity", "documents"]})
    return http_sut


def test_document_records_round_trip_through_json() -> None:
    produced = ProducedDocument.from_json(PRODUCED)
    assert produced == ProducedDocument("1.2.250.1.999.1", "11488-4", CDA, PDF, PRODUCED["pdf_file_name"])
    assert produced.to_json() == PRODUCED
    assert ProducedDocument.from_json({**PRODUCED, "cda_base64": None, "pdf_base64": None}).cda is None
    assert StoredDocument.from_json(STORED) == STORED_RECORD and STORED_RECORD.to_json() == STORED


def test_http_documents_happy_path(fake: FakeSut, documents_sut: HttpSut) -> None:
    fake.routes[("POST", "/patients/p-1/documents")] = json_answer(PRODUCED, status=201)
    fake.routes[("POST", "/patients/p-1/documents/import")] = json_answer(STORED, status=201)
    fake.routes[("GET", "/patients/p-1/documents")] = json_answer({"items": [STORED, {**STORED, "document_id": "5"}]})
    produced = documents_sut.produce_document("p-1", "60591-5", structure="N3")
    assert (produced.cda, produced.pdf, produced.type_code) == (CDA, PDF, "11488-4")
    assert json.loads(fake.bodies[-1]) == {"type_code": "60591-5", "structure": "N3"}
    assert documents_sut.import_document("p-1", CDA, STYLESHEET) == STORED_RECORD
    assert json.loads(fake.bodies[-1]) == {"cda_base64": b64(CDA), "stylesheet_base64": b64(STYLESHEET)}
    documents_sut.import_document("p-1", CDA)
    assert json.loads(fake.bodies[-1]) == {"cda_base64": b64(CDA)}
    listed = documents_sut.list_documents("p-1", sort="type-code")
    assert [d.document_id for d in listed] == ["1.2.3.4", "5"]
    assert fake.seen[-1] == ("GET", "/patients/p-1/documents?sort=type-code")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param({**PRODUCED, "cda_base64": "not base64!"}, "'cda_base64' is not valid base64", id="bad-base64"),
        pytest.param({**PRODUCED, "pdf_base64": "QUJ"}, "'pdf_base64' is not valid base64", id="bad-padding"),
        pytest.param({**PRODUCED, "pdf_base64": 12}, "'pdf_base64' must be a base64 string or null", id="pdf-number"),
        pytest.param({k: v for k, v in PRODUCED.items() if k != "document_id"}, "'document_id'", id="id-missing"),
        pytest.param({**PRODUCED, "type_code": ["11488-4"]}, "'type_code' must be a string", id="code-a-list"),
        pytest.param([PRODUCED], "list indices must be integers", id="a-list"),
    ],
)
def test_http_malformed_produced_document_is_a_sut_error(
    fake: FakeSut, documents_sut: HttpSut, answer: Any, reason: str
) -> None:
    fake.routes[("POST", "/patients/p-1/documents")] = json_answer(answer, status=201)
    with pytest.raises(SutError) as info:
        documents_sut.produce_document("p-1", "11488-4")
    message = str(info.value)
    assert message.startswith("POST /patients/{id}/documents: malformed document in the answer (")
    assert reason in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"documents": []}, "expected an object with an 'items' list", id="items-missing"),
        pytest.param({"items": [{**STORED, "has_stylesheet": "yes"}]}, "'has_stylesheet' must be a boolean", id="bool"),
        pytest.param({"items": [{**STORED, "creation_time": None}]}, "'creation_time' must be a string", id="time"),
        pytest.param({"items": ["1.2.3"]}, "malformed document in the answer", id="item-a-string"),
    ],
)
def test_http_malformed_document_list_is_a_sut_error(
    fake: FakeSut, documents_sut: HttpSut, answer: Any, expected: str
) -> None:
    fake.routes[("GET", "/patients/p-1/documents")] = json_answer(answer)
    with pytest.raises(SutError) as info:
        documents_sut.list_documents("p-1")
    assert str(info.value).startswith("GET /patients/{id}/documents: ")
    assert expected in str(info.value)


def test_http_malformed_imported_document_is_a_sut_error(fake: FakeSut, documents_sut: HttpSut) -> None:
    fake.routes[("POST", "/patients/p-1/documents/import")] = json_answer({"document_id": "1"}, status=201)
    with pytest.raises(SutError, match=r"^POST /patients/\{id\}/documents/import: malformed document in the answer"):
        documents_sut.import_document("p-1", CDA)


def test_http_document_refusal_is_a_sut_refused(fake: FakeSut, documents_sut: HttpSut) -> None:
    fake.routes[("POST", "/patients/p-1/documents")] = problem(422, "Refused", "type code 99999-9 is not produced")
    with pytest.raises(SutRefused, match="type code 99999-9 is not produced"):
        documents_sut.produce_document("p-1", "99999-9")


class DocumentTarget:
    """A Python SUT producing documents, whose import answers the wrong type."""

    def describe(self) -> SutDescription:
        return SutDescription("Py", "Python SUT", "1", frozenset({Capability.DOCUMENTS}), ())

    def produce_document(self, patient_id: str, type_code: str, structure: str) -> ProducedDocument:
        return ProducedDocument(f"{patient_id}-doc", type_code, CDA if structure == "N1" else None, PDF, "x.pdf")

    def import_document(self, patient_id: str, cda: bytes, stylesheet: bytes | None) -> Any:
        return STORED

    def list_documents(self, patient_id: str, sort: str) -> list[StoredDocument]:
        return [STORED_RECORD] if sort == "creation-date" else []


def test_python_documents_happy_path_and_wrong_types() -> None:
    sut = PythonSut(DocumentTarget(), timeout_s=TIMEOUT_S)
    assert sut.produce_document("p-1", "11488-4") == ProducedDocument("p-1-doc", "11488-4", CDA, PDF, "x.pdf")
    assert sut.produce_document("p-1", "SYNTH", "N3").cda is None
    assert sut.list_documents("p-1") == [STORED_RECORD] and sut.list_documents("p-1", "type-code") == []
    with pytest.raises(SutError, match=r"^import_document\(\) returned dict, expected StoredDocument$"):
        sut.import_document("p-1", CDA)


def test_python_sut_without_document_operations_is_not_supported(python_target: HangingTarget) -> None:
    sut = PythonSut(python_target, timeout_s=TIMEOUT_S)
    for call, name in [
        (lambda: sut.produce_document("p-1", "11488-4"), "produce_document"),
        (lambda: sut.import_document("p-1", CDA), "import_document"),
        (lambda: sut.list_documents("p-1"), "list_documents"),
    ]:
        with pytest.raises(NotSupported) as info:
            call()
        assert info.value.reason == f"the Python SUT has no '{name}' operation"


# -- DMP ------------------------------------------------------------------------------------------
DMP_ENDPOINT = DmpEndpoint("https://127.0.0.1:1/dmp", "CA", "CERT", "KEY")
DOCUMENT = "1.2.250.1.999.1^A-7"
"""A document id with an extension: the caret travels percent-encoded in the path."""
DOCUMENT_PATH = "/patients/p-1/documents/1.2.250.1.999.1%5EA-7"


@pytest.fixture
def dmp_sut(fake: FakeSut, http_sut: HttpSut) -> HttpSut:
    fake.routes[("GET", "/capabilities")] = json_answer(
        {**CAPABILITIES, "capabilities": ["identity", "documents", "dmp"]}
    )
    return http_sut


def test_dmp_records_round_trip_through_json() -> None:
    assert DmpOutcome.from_json({"dmp": "failed", "detail": "XDSRegistryError"}) == DmpOutcome(
        "failed", "XDSRegistryError"
    )
    assert DmpOutcome("sent", "ok").to_json() == {"dmp": "sent", "detail": "ok"}
    assert EndpointConfig(dmp=DMP_ENDPOINT).to_json() == {
        "dmp": {"url": DMP_ENDPOINT.url, "ca_pem": "CA", "client_cert_pem": "CERT", "client_key_pem": "KEY"}
    }


def test_http_dmp_happy_path(fake: FakeSut, dmp_sut: HttpSut) -> None:
    fake.routes[("POST", "/patients/p-1/documents")] = json_answer(PRODUCED, status=201)
    fake.routes[("PUT", f"{DOCUMENT_PATH}/visibility")] = Answer(204)
    fake.routes[("POST", f"{DOCUMENT_PATH}/validate")] = json_answer({"dmp": "sent", "detail": "entry urn:uuid:1"})
    fake.routes[("POST", f"{DOCUMENT_PATH}/dmp")] = json_answer({"dmp": "not-sent", "detail": "opposition"})
    fake.routes[("PUT", "/patients/p-1/dmp-consent")] = Answer(204)
    fake.routes[("PUT", "/config/endpoints")] = Answer(204)
    dmp_sut.configure_endpoints(EndpointConfig(dmp=DMP_ENDPOINT))
    assert json.loads(fake.bodies[-1]) == {"dmp": DMP_ENDPOINT.to_json()}
    dmp_sut.produce_document("p-1", "11488-4", act_date="2021-06-14")
    assert json.loads(fake.bodies[-1]) == {"type_code": "11488-4", "structure": "N1", "act_date": "2021-06-14"}
    dmp_sut.set_document_visibility("p-1", DOCUMENT, True, False, True)
    assert json.loads(fake.bodies[-1]) == {
        "masked_to_ps": True,
        "invisible_to_patient": False,
        "invisible_to_legal_representatives": True,
    }
    assert dmp_sut.validate_document("p-1", DOCUMENT) == DmpOutcome("sent", "entry urn:uuid:1")
    assert fake.bodies[-1] == b""
    assert dmp_sut.dmp_action("p-1", DOCUMENT, "send") == DmpOutcome("not-sent", "opposition")
    assert json.loads(fake.bodies[-1]) == {"action": "send"}
    dmp_sut.set_dmp_consent("p-1", feed_opposition=True, consultation_opposition=False)
    assert json.loads(fake.bodies[-1]) == {"feed_opposition": True, "consultation_opposition": False}
    assert fake.seen[2:] == [
        ("POST", "/patients/p-1/documents"),
        ("PUT", f"{DOCUMENT_PATH}/visibility"),
        ("POST", f"{DOCUMENT_PATH}/validate"),
        ("POST", f"{DOCUMENT_PATH}/dmp"),
        ("PUT", "/patients/p-1/dmp-consent"),
    ]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param({"dmp": "maybe", "detail": ""}, "'dmp' must be one of sent, not-sent, failed", id="bad-result"),
        pytest.param({"detail": "x"}, "'dmp'", id="result-missing"),
        pytest.param({"dmp": "sent", "detail": 3}, "'detail' must be a string", id="detail-a-number"),
        pytest.param({"dmp": True, "detail": ""}, "'dmp' must be a string", id="result-a-boolean"),
        pytest.param(["sent"], "list indices must be integers", id="a-list"),
    ],
)
def test_http_malformed_dmp_outcome_is_a_sut_error(fake: FakeSut, dmp_sut: HttpSut, answer: Any, reason: str) -> None:
    fake.routes[("POST", f"{DOCUMENT_PATH}/validate")] = json_answer(answer)
    fake.routes[("POST", f"{DOCUMENT_PATH}/dmp")] = json_answer(answer)
    for call, where in (
        (lambda: dmp_sut.validate_document("p-1", DOCUMENT), "POST /patients/{id}/documents/{document_id}/validate"),
        (lambda: dmp_sut.dmp_action("p-1", DOCUMENT, "replace"), "POST /patients/{id}/documents/{document_id}/dmp"),
    ):
        with pytest.raises(SutError) as info:
            call()
        assert str(info.value).startswith(f"{where}: malformed answer (")
        assert reason in str(info.value)


@pytest.mark.parametrize(
    ("route", "operation"),
    [
        pytest.param(
            ("PUT", f"{DOCUMENT_PATH}/visibility"),
            lambda s: s.set_document_visibility("p-1", DOCUMENT, False, False, False),
            id="visibility",
        ),
        pytest.param(
            ("PUT", "/patients/p-1/dmp-consent"), lambda s: s.set_dmp_consent("p-1", False, False), id="consent"
        ),
    ],
)
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(Answer(200, b"<html>ok</html>", "text/html"), "the answer is not JSON", id="html"),
        pytest.param(problem(500, "Internal Server Error", "boom"), "HTTP 500: boom", id="500"),
        pytest.param(problem(404, "Not Found", "no document"), "HTTP 404: no document", id="404"),
    ],
)
def test_http_dmp_settings_answering_garbage_are_a_sut_error(
    fake: FakeSut,
    dmp_sut: HttpSut,
    route: tuple[str, str],
    operation: Callable[[HttpSut], Any],
    answer: Answer,
    expected: str,
) -> None:
    fake.routes[route] = answer
    with pytest.raises(SutError, match=expected) as info:
        operation(dmp_sut)
    assert not isinstance(info.value, SutRefused)


def test_http_dmp_refusals_and_conflicts(fake: FakeSut, dmp_sut: HttpSut) -> None:
    fake.routes[("POST", f"{DOCUMENT_PATH}/dmp")] = problem(422, "Refused", "unknown action 'archive'")
    fake.routes[("POST", f"{DOCUMENT_PATH}/validate")] = problem(409, "Not applicable now", "no DMP endpoint")
    with pytest.raises(SutRefused, match="unknown action"):
        dmp_sut.dmp_action("p-1", DOCUMENT, "archive")
    with pytest.raises(SutError, match="HTTP 409: no DMP endpoint") as info:
        dmp_sut.validate_document("p-1", DOCUMENT)
    assert not isinstance(info.value, SutRefused)


class DmpTarget:
    """A Python SUT with the DMP operations; its consent answers garbage and its produce_document knows act_date."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def describe(self) -> SutDescription:
        return SutDescription("Py", "Python SUT", "1", frozenset({Capability.DOCUMENTS, Capability.DMP}), ())

    def produce_document(
        self, patient_id: str, type_code: str, structure: str, act_date: str | None = None
    ) -> ProducedDocument:
        self.calls.append(("produce_document", act_date))
        return ProducedDocument("d-1", type_code, CDA, PDF, "x.pdf")

    def set_document_visibility(self, patient_id: str, document_id: str, *flags: bool) -> None:
        self.calls.append(("set_document_visibility", document_id, *flags))

    def validate_document(self, patient_id: str, document_id: str) -> DmpOutcome:
        return DmpOutcome("sent", document_id)

    def dmp_action(self, patient_id: str, document_id: str, action: str) -> Any:
        return {"dmp": "sent"}

    def set_dmp_consent(self, patient_id: str, feed_opposition: bool, consultation_opposition: bool) -> None:
        raise RuntimeError("consent register unavailable")


def test_python_dmp_happy_path_and_garbage() -> None:
    target = DmpTarget()
    sut = PythonSut(target, timeout_s=TIMEOUT_S)
    sut.produce_document("p-1", "11488-4", act_date="2021-06-14")
    sut.set_document_visibility("p-1", "d-1", True, False, False)
    assert target.calls == [("produce_document", "2021-06-14"), ("set_document_visibility", "d-1", True, False, False)]
    assert sut.validate_document("p-1", "d-1") == DmpOutcome("sent", "d-1")
    with pytest.raises(SutError, match=r"^dmp_action\(\) returned dict, expected DmpOutcome$"):
        sut.dmp_action("p-1", "d-1", "delete")
    with pytest.raises(SutError, match=r"^set_dmp_consent: the SUT raised RuntimeError: consent register unavailable$"):
        sut.set_dmp_consent("p-1", True, True)


def test_python_sut_without_dmp_operations_is_not_supported(python_target: HangingTarget) -> None:
    sut = PythonSut(python_target, timeout_s=TIMEOUT_S)
    for call, name in [
        (lambda: sut.set_document_visibility("p-1", "d-1", True, True, True), "set_document_visibility"),
        (lambda: sut.validate_document("p-1", "d-1"), "validate_document"),
        (lambda: sut.dmp_action("p-1", "d-1", "send"), "dmp_action"),
        (lambda: sut.set_dmp_consent("p-1", False, False), "set_dmp_consent"),
    ]:
        with pytest.raises(NotSupported) as info:
            call()
        assert info.value.reason == f"the Python SUT has no '{name}' operation"


def test_a_python_sut_written_before_act_date_still_produces_documents() -> None:
    sut = PythonSut(DocumentTarget(), timeout_s=TIMEOUT_S)  # produce_document(patient_id, type_code, structure)
    assert sut.produce_document("p-1", "11488-4").document_id == "p-1-doc"
    with pytest.raises(SutError, match="unexpected keyword argument 'act_date'"):
        sut.produce_document("p-1", "11488-4", act_date="2021-06-14")


def test_the_base_adapter_offers_no_dmp_operation() -> None:
    class Bare(SutAdapter):
        def describe(self) -> SutDescription:
            return SutDescription("B", "Bare", "1", frozenset(), ())

    bare = Bare()
    for call in (
        lambda: bare.set_document_visibility("p", "d", True, True, True),
        lambda: bare.validate_document("p", "d"),
        lambda: bare.dmp_action("p", "d", "send"),
        lambda: bare.set_dmp_consent("p", True, True),
    ):
        with pytest.raises(NotSupported, match="DMP operations are not offered"):
            call()


# -- PythonSut ------------------------------------------------------------------------------------
class HangingTarget:
    """A Python SUT whose reset never returns until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def describe(self) -> SutDescription:
        return SutDescription("Py", "Python SUT", "1", frozenset({Capability.RESET}), ())

    def reset(self) -> None:
        # Same as a long time.sleep, but releasable so no stuck thread outlives the test
        # (a ThreadPoolExecutor worker still running would delay interpreter exit).
        self.release.wait(HANG_BOUND_S * 2)

    def verify_ins(self, patient_id: str) -> Any:
        raise ValueError(f"no INS for {patient_id}")

    def get_patient(self, patient_id: str) -> Any:
        return {"id": patient_id}


@pytest.fixture
def python_target() -> Iterator[HangingTarget]:
    target = HangingTarget()
    try:
        yield target
    finally:
        target.release.set()


def test_python_hanging_method_is_a_sut_error_within_the_timeout(python_target: HangingTarget) -> None:
    sut = PythonSut(python_target, timeout_s=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(SutError, match=r"^reset: no answer within 0\.3 s$"):
            sut.reset()
        assert time.monotonic() - started < HANG_BOUND_S
        # The stuck worker is abandoned: the next call gets a fresh one and answers.
        assert sut.describe().software == "Python SUT"
    finally:
        python_target.release.set()
        sut.close()


def test_python_missing_method_is_not_supported(python_target: HangingTarget) -> None:
    sut = PythonSut(python_target, timeout_s=TIMEOUT_S)
    with pytest.raises(NotSupported) as info:
        sut.worklist()
    assert info.value.reason == "the Python SUT has no 'worklist' operation"
    sut.close()


def test_python_exception_is_a_sut_error_naming_it(python_target: HangingTarget) -> None:
    sut = PythonSut(python_target, timeout_s=TIMEOUT_S)
    with pytest.raises(SutError) as info:
        sut.verify_ins("p-9")
    assert str(info.value) == "verify_ins: the SUT raised ValueError: no INS for p-9"
    assert isinstance(info.value.__cause__, ValueError)
    sut.close()


def test_python_wrong_return_type_is_a_sut_error(python_target: HangingTarget) -> None:
    sut = PythonSut(python_target, timeout_s=TIMEOUT_S)
    with pytest.raises(SutError, match=r"^get_patient\(\) returned dict, expected PatientRecord$"):
        sut.get_patient("p-1")
    sut.close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(
            "no_such_module_xyz:Sut",
            "cannot load 'no_such_module_xyz:Sut': ModuleNotFoundError: No module named",
            id="module",
        ),
        pytest.param("harness.sut.model:NoSuchClass", "cannot load 'harness.sut.model:NoSuchClass'", id="attribute"),
        pytest.param(
            "harness.sut.model", "expected 'package.module:ClassName', got 'harness.sut.model'", id="no-colon"
        ),
    ],
)
def test_load_object_bad_import_path_is_a_sut_error(path: str, expected: str) -> None:
    with pytest.raises(SutError) as info:
        load_object(path)
    assert str(info.value).startswith(expected)


def test_load_object_whose_constructor_raises_is_a_sut_error() -> None:
    with pytest.raises(SutError, match=r"^cannot create 'harness.sut.model:PatientTraits': TypeError"):
        load_object("harness.sut.model:PatientTraits")  # needs arguments


def test_a_list_operation_answering_none_is_a_sut_error() -> None:
    class Broken:
        def traces(self) -> None:
            return None

    sut = PythonSut(Broken(), timeout_s=1.0)
    with pytest.raises(SutError, match=r"^traces\(\) must return a list of TraceEntry, got NoneType$"):
        sut.traces()


def test_a_stuck_python_sut_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(
        "import threading\n"
        "from harness.sut.python import PythonSut\n"
        "from harness.sut.base import SutError\n"
        "class Stuck:\n"
        "    def reset(self):\n"
        "        threading.Event().wait()\n"
        "try:\n"
        "    PythonSut(Stuck(), timeout_s=0.2).reset()\n"
        "except SutError as exc:\n"
        "    print(exc)\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "reset: no answer within 0.2 s" in done.stdout, done.stderr


# -- end to end through the plugin ------------------------------------------------------------
CATALOG = """
[[requirement]]
ref = "DEMO/va1.01"
wave = "va1"
section_id = "DEMO"
section = "Démonstration"
nature = "EXIGENCE"
profile = "Général"
status = "Approuvée"
statement = "The system keeps identities and traces."

[[requirement.scenario]]
ref = "DEMO/va1.01.01"
summary = "Drive the SUT."
steps = ["Call it"]
"""

SCENARIOS = """
import pytest
from harness.sut.model import PatientTraits

@pytest.mark.requirement("DEMO/va1.01")
def test_a_hangs(sut):
    sut.traces()

@pytest.mark.requirement("DEMO/va1.01")
def test_b_garbage(sut):
    sut.list_patients()

@pytest.mark.requirement("DEMO/va1.01")
def test_c_works(sut):
    record = sut.create_patient(PatientTraits("DUPONT", ("MARIE", "ANNE"), "F", "1979-03-28"))
    assert record.id == "p-1"
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    data = pytester.path / "catalog"
    (data / "lgc").mkdir(parents=True)
    (data / "profiles.toml").write_text('[[profile]]\nname = "Général"\n', encoding="utf-8")
    (data / "lgc" / "demo.toml").write_text(CATALOG, encoding="utf-8")
    pytester.makepyfile(test_e2e=SCENARIOS)
    return data


def _run(pytester: pytest.Pytester, data: Path, sut_url: str) -> tuple[pytest.RunResult, Path]:
    run_dir = pytester.path / "run"
    result = pytester.runpytest_inprocess(
        f"--sut={sut_url}",
        f"--sut-timeout={TIMEOUT_S}",
        f"--catalog-dir={data}",
        f"--run-dir={run_dir}",
        "-p",
        "no:cacheprovider",
    )
    return result, run_dir


def _by_test(run_dir: Path) -> dict[str, Verdict]:
    return {v.nodeid.split("::")[-1]: v for v in read_verdicts(run_dir) if v.nodeid}


def test_plugin_run_survives_a_hanging_and_a_garbage_sut(
    pytester: pytest.Pytester, project: Path, fake: FakeSut
) -> None:
    fake.routes[("GET", "/traces")] = Answer(hang=True)
    fake.routes[("GET", "/patients")] = Answer(200, b"not json at all", "text/plain")
    fake.routes[("POST", "/patients")] = json_answer(PATIENT, status=201)
    started = time.monotonic()
    result, run_dir = _run(pytester, project, fake.url)
    assert time.monotonic() - started < HANG_BOUND_S * 2
    verdicts = _by_test(run_dir)
    assert {name: v.status.value for name, v in verdicts.items()} == {
        "test_a_hangs": "error",
        "test_b_garbage": "error",
        "test_c_works": "passed",
    }
    assert verdicts["test_a_hangs"].reason == "SUT error: GET /traces: no answer within 0.5 s"
    assert verdicts["test_b_garbage"].reason == "SUT error: GET /patients: the answer is not JSON: 'not json at all'"
    assert ("POST", "/patients") in fake.seen  # the scenario after the hang really ran
    assert result.parseoutcomes()["passed"] == 1
    assert (run_dir / "manifest.json").is_file()


def test_plugin_unreachable_sut_gives_error_verdicts_and_a_finalised_run(
    pytester: pytest.Pytester, project: Path, refused_port: int
) -> None:
    url = f"http://127.0.0.1:{refused_port}"
    result, run_dir = _run(pytester, project, url)
    verdicts = _by_test(run_dir)
    assert sorted(verdicts) == ["test_a_hangs", "test_b_garbage", "test_c_works"]
    for verdict in verdicts.values():
        assert verdict.status.value == "error"
        assert f"cannot open the SUT '{url}'" in verdict.reason
        assert "GET /capabilities: cannot connect to the SUT" in verdict.reason
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (run_dir / "manifest.json").is_file()
