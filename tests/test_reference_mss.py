"""The reference system's MSSanté and Annuaire Santé side: what it composes, sends, reads, integrates, answers.

The practice talks to a tiny operator stub written here (SMTP and IMAP with STARTTLS,
a client certificate asked for, a DST entry point over mutual TLS, the test PKI's RSA
server certificate), not to the MSSanté simulator, and to the real Annuaire Santé
simulator. What it sends is judged by the harness's own validators
(:func:`harness.validators.mss.check_message`, :func:`~harness.validators.mss.check_mdn`,
:func:`harness.validators.xdm.check_xdm`). Each MSSanté and Annuaire defect is shown to
change what it says; hostile XDM packages are refused with 906, never a crash. A last
group drives the running reference system through the HTTP adapter.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import ssl
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from harness.findings import Finding
from harness.pki import CertBundle, TestPki
from harness.plugin.fixtures import insi_endpoint_config
from harness.reference import DEFAULT_PROFILES
from harness.reference.annuaire_client import AnnuaireClient, AnnuaireEndpoint, AnnuaireUnavailable
from harness.reference.documents import DocumentService
from harness.reference.identity import Conflict, IdentityService
from harness.reference.launcher import start_reference
from harness.reference.model import Ins, InvalidInput, Patient, Status, Traits
from harness.reference.mss import (
    PRODUCT_REFERENCE,
    MssService,
    OperatorUnavailable,
    Sender,
    UnknownMessage,
    UnreadableXdm,
    compose_mdn,
    compose_message,
    compose_reply,
    open_xdm,
    parse_ins_cx,
    sender_label,
    xdm_subject,
)
from harness.reference.mss_transport import TLS12_CIPHERS, MssanteEndpoint, tls_context
from harness.reference.settings import Clock, EndpointSettings
from harness.reference.soap import LpsIdentity
from harness.reference.store import Store, UnknownDocument
from harness.simulators.annuaire import AnnuaireSimulator
from harness.simulators.insi import InsiSimulator
from harness.sut.http import HttpSut
from harness.sut.model import AnnuaireEndpoint as AnnuaireConfig
from harness.sut.model import EndpointConfig, MssSendRequest, PatientTraits
from harness.sut.model import MssanteEndpoint as MssanteConfig
from harness.sut.python import PythonSut
from harness.validators.mss import check_mdn, check_message, xdm_attachment
from harness.validators.xdm import check_xdm

MATRICULE, INS_OID = "279035121518989", "1.2.250.1.213.1.4.10"
OTHER_MATRICULE = "180012B00700145"
INS_CX = f"{MATRICULE}^^^&{INS_OID}&ISO^NH"
TRAITS = Traits("PAT-TROIS", ("DOMINIQUE", "MARIE-LOUISE"), "F", "1979-03-28", "63220")
OTHER_TRAITS = Traits("MARTIN", ("PAUL",), "M", "1980-01-15", "75056")
BAL, PASSWORD = "cabinet.temoin@cabinet-temoin.mssante.fr", "bal-secret"
PEER = "sophie.martin@cabinet-lilas.mssante.fr"
PATIENT_BAL = f"{MATRICULE}@patient.mssante.fr"
LABEL = "Dr Camille TEMOIN Cabinet Témoin"
SUITES_12 = set(TLS12_CIPHERS.split(":"))
SOPHIE_BALS = ("sophie.martin@cabinet-lilas.mssante.fr", "cabinet.martin@cabinet-lilas.mssante.fr")
"""Her own BAL first, then her situation d'exercice's (a PractitionerRole telecom)."""


# -- the operator stub ---------------------------------------------------------------------------------
@dataclass
class SmtpSession:
    """One SMTP connection as the stub saw it."""

    commands: list[tuple[bool, str]] = field(default_factory=list)
    """(under TLS, command line with AUTH secrets hidden) in order."""
    tls_version: str = ""
    cipher: str = ""
    client_certificate: bool = False
    login: str = ""
    password: str = ""
    mail_from: str = ""
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""
    tls_error: str = ""


@dataclass
class ImapSession:
    commands: list[tuple[bool, str]] = field(default_factory=list)
    tls_version: str = ""
    login: str = ""
    tls_error: str = ""


@dataclass
class StoredMail:
    uid: int
    raw: bytes
    seen: bool = False


class OperatorStub:
    """SMTP submission, IMAP and a DST entry point on loopback, one thread per connection."""

    def __init__(self, pki: TestPki, server: CertBundle | None = None) -> None:
        self.pki = pki
        self.server = server or pki.mss_server
        self.sessions: list[SmtpSession] = []
        self.imap_sessions: list[ImapSession] = []
        self.inbox: list[StoredMail] = []
        self.dst: list[tuple[str, str, bytes, bool]] = []
        self.refused_recipients: set[str] = set()
        self.silent = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._dst_server: ThreadingHTTPServer | None = None

    # life cycle
    def __enter__(self) -> OperatorStub:
        self.smtp_port = self._listen(self._smtp)
        self.imap_port = self._listen(self._imap)
        self._start_dst()
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self._sockets:
            sock.close()
        if self._dst_server is not None:
            self._dst_server.shutdown()
            self._dst_server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.sessions.clear()
            self.imap_sessions.clear()
            self.inbox.clear()
            self.dst.clear()
            self.refused_recipients.clear()
            self.silent = False

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.server.chain_path), str(self.server.key_path))
        context.load_verify_locations(cafile=str(self.pki.ca_bundle_path))
        context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def deliver(self, raw: bytes) -> int:
        with self._lock:
            uid = len(self.inbox) + 1
            self.inbox.append(StoredMail(uid, raw))
        return uid

    @property
    def sent(self) -> list[SmtpSession]:
        """The sessions that delivered a message."""
        return [s for s in self.sessions if s.data]

    def config(self, dst: bool = True) -> dict[str, Any]:
        urls = {"igc-sante": f"{self.dst_url}/igc-sante", "internet": f"{self.dst_url}/internet"} if dst else {}
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp_port,
            "imap_host": "127.0.0.1",
            "imap_port": self.imap_port,
            "ca_pem": self.pki.ca_bundle_pem.decode("ascii"),
            "client_cert_pem": self.pki.organisation.chain_pem.decode("ascii"),
            "client_key_pem": self.pki.organisation.key_pem.decode("ascii"),
            "address": BAL,
            "password": PASSWORD,
            "dst_urls": urls,
        }

    def _listen(self, handler: Callable[[socket.socket], None]) -> int:
        sock = socket.create_server(("127.0.0.1", 0))
        self._sockets.append(sock)

        def accept() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                conn.settimeout(5)
                threading.Thread(target=self._serve, args=(handler, conn), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return int(sock.getsockname()[1])

    def _serve(self, handler: Callable[[socket.socket], None], conn: socket.socket) -> None:
        try:
            if self.silent:
                conn.recv(1)  # never answers: the client's timeout must end it
                return
            handler(conn)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    # SMTP
    def _smtp(self, conn: socket.socket) -> None:
        session = SmtpSession()
        with self._lock:
            self.sessions.append(session)
        stream: socket.socket = conn
        reader = stream.makefile("rb")
        tls = False

        def say(line: str) -> None:
            stream.sendall(line.encode() + b"\r\n")

        say("220 stub.mssante.fr ESMTP")
        while True:
            line = reader.readline(4096)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = text.split(" ", 1)[0].upper()
            session.commands.append((tls, "AUTH ***" if verb == "AUTH" else text))
            if verb in ("EHLO", "HELO"):
                features = ["AUTH PLAIN LOGIN"] if tls else ["STARTTLS"]
                for feature in ["stub.mssante.fr", *features, "8BITMIME"][:-1]:
                    say(f"250-{feature}")
                say("250 8BITMIME")
            elif verb == "STARTTLS":
                say("220 ready to start TLS")
                try:
                    stream = self.context().wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    session.tls_error = str(exc)
                    return
                tls = True
                session.tls_version = str(stream.version())
                session.cipher = str((stream.cipher() or ("",))[0])
                session.client_certificate = bool(stream.getpeercert())
                reader = stream.makefile("rb")
            elif verb == "AUTH":
                _, login, password = base64.b64decode(text.split()[2]).decode().split("\0")
                session.login, session.password = login, password
                say("235 ok" if (login, password) == (BAL, PASSWORD) else "535 bad credentials")
            elif verb == "MAIL":
                session.mail_from = text.split(":", 1)[1].split()[0].strip("<>")
                say("250 ok")
            elif verb == "RCPT":
                recipient = text.split(":", 1)[1].strip().strip("<>")
                if recipient in self.refused_recipients:
                    say("550 no such BAL")
                else:
                    session.recipients.append(recipient)
                    say("250 ok")
            elif verb == "DATA":
                say("354 go ahead")
                lines = []
                while (chunk := reader.readline(1 << 20)) not in (b".\r\n", b""):
                    lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                session.data = b"".join(lines)
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("250 ok")

    # IMAP
    def _imap(self, conn: socket.socket) -> None:
        session = ImapSession()
        with self._lock:
            self.imap_sessions.append(session)
        stream: socket.socket = conn
        reader = stream.makefile("rb")
        tls = False

        def say(line: bytes | str) -> None:
            stream.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")

        say("* OK stub IMAP4rev1 ready")
        while True:
            line = reader.readline(4096)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            tag, _, rest = text.partition(" ")
            command = rest.split(" ", 1)[0].upper()
            session.commands.append((tls, f"{tag} LOGIN ***" if command == "LOGIN" else text))
            if command == "CAPABILITY":
                say("* CAPABILITY IMAP4rev1" + ("" if tls else " STARTTLS"))
                say(f"{tag} OK done")
            elif command == "STARTTLS":
                say(f"{tag} OK begin TLS")
                try:
                    stream = self.context().wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    session.tls_error = str(exc)
                    return
                tls, session.tls_version = True, str(stream.version())
                reader = stream.makefile("rb")
            elif command == "LOGIN":
                login, password = [w.strip('"') for w in rest.split(" ", 2)[1:]]
                session.login = login
                say(f"{tag} OK logged in" if (login, password) == (BAL, PASSWORD) else f"{tag} NO refused")
            elif command == "SELECT":
                say(f"* {len(self.inbox)} EXISTS")
                say(f"{tag} OK [READ-WRITE] selected")
            elif command == "UID":
                self._imap_uid(tag, rest.split(" ", 1)[1], say)
            elif command == "LOGOUT":
                say("* BYE")
                say(f"{tag} OK bye")
                return
            else:
                say(f"{tag} OK")

    def _imap_uid(self, tag: str, args: str, say: Callable[[bytes | str], None]) -> None:
        verb, _, rest = args.partition(" ")
        verb = verb.upper()
        if verb == "SEARCH":
            say("* SEARCH " + " ".join(str(m.uid) for m in self.inbox if not m.seen))
        elif verb == "FETCH":
            uid = int(rest.split()[0])
            mail = next(m for m in self.inbox if m.uid == uid)
            say(f"* {uid} FETCH (UID {uid} RFC822 {{{len(mail.raw)}}}".encode() + b"\r\n" + mail.raw + b")")
        elif verb == "STORE":
            uid = int(rest.split()[0])
            next(m for m in self.inbox if m.uid == uid).seen = True
            say(f"* {uid} FETCH (UID {uid} FLAGS (\\Seen))")
        say(f"{tag} OK done")

    # DST
    def _start_dst(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                certificate = (
                    bool(self.connection.getpeercert()) if isinstance(self.connection, ssl.SSLSocket) else False
                )
                stub.dst.append((self.path, self.headers.get("Content-Type", ""), body, certificate))
                answer = json.dumps({"message_id": "dst-0001"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = self.context().wrap_socket(server.socket, server_side=True)
        self._dst_server = server
        self.dst_url = f"https://127.0.0.1:{server.server_port}/dst"
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


# -- building blocks ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def module_operator(pki: TestPki) -> Iterator[OperatorStub]:
    with OperatorStub(pki) as stub:
        yield stub


@pytest.fixture
def operator(module_operator: OperatorStub) -> OperatorStub:
    module_operator.reset()
    return module_operator


Practice = Callable[..., MssService]


@pytest.fixture
def practice(tmp_path: Path, operator: OperatorStub) -> Practice:
    """A factory: the practice's MSSanté service (with defects), its BAL at the stub unless told otherwise."""

    def make(
        *defects: str,
        configured: bool = True,
        config: dict[str, Any] | None = None,
        profiles: tuple[str, ...] = DEFAULT_PROFILES,
        timeout_s: float = 5.0,
    ) -> MssService:
        store = Store(tmp_path / f"reference-{uuid.uuid4().hex}.sqlite")
        settings = EndpointSettings(store, tmp_path / uuid.uuid4().hex)
        if configured:
            settings.apply({"mssante": config or operator.config()})
        lps = LpsIdentity("Cabinet Témoin", "test", "instance", "IDAM")
        identities = IdentityService(
            store, Clock(store), settings, lps, profiles, frozenset(defects), call_timeout_s=timeout_s
        )
        return MssService(DocumentService(identities))

    return make


def add_patient(
    service: MssService, status: Status = Status.QUAL, traits: Traits = TRAITS, matricule: str = MATRICULE
) -> Patient:
    ins = Ins(matricule, INS_OID) if status.has_insi else None
    document = "CN" if status in (Status.QUAL, Status.VALI) else ""
    return service.store.create_patient(lambda pid: Patient(pid, traits, status, ins, document))


def produce(service: MssService, patient: Patient, type_code: str = "11488-4") -> tuple[str, bytes]:
    document = service.documents.produce(patient.id, {"type_code": type_code})
    return document.document_id, document.cda


def send(service: MssService, patient: Patient, *documents: str, **body: Any) -> tuple[str, str]:
    """Ask the practice to send (to the peer unless told otherwise); the outcome's result and detail."""
    request = {"document_ids": list(documents), "recipients": [PEER], **body}
    outcome = service.send(patient.id, request)
    return outcome.result, outcome.detail


def last_message(operator: OperatorStub) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(operator.sent[-1].data)
    assert isinstance(message, EmailMessage)
    return message


def errors(findings: list[Finding]) -> list[str]:
    return [f"{f.rule}: {f.message}" for f in findings if f.severity.value == "error"]


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity.value == "error"}


def sent_with(practice: Practice, operator: OperatorStub, *defects: str, **body: Any) -> tuple[bytes, MssService]:
    """The raw message the practice (with ``defects``) sends for one document of a qualified patient."""
    service = practice(*defects)
    patient = add_patient(service)
    document_id, _ = produce(service, patient)
    result, detail = send(service, patient, document_id, **body)
    assert result == "sent", detail
    return operator.sent[-1].data, service


def foreign_cda(cda: bytes) -> bytes:
    """The same document as another producer would send it: a new ClinicalDocument/id."""
    root = etree.fromstring(cda)
    identifier = root.find("{urn:hl7-org:v3}id")
    assert identifier is not None
    identifier.set("root", f"2.25.{uuid.uuid4().int}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def message_with_xdm(
    xdm: bytes, subject: str = "XDM/1.0/DDM+CR PAT-TROIS DOMINIQUE 28/03/1979", **headers: str
) -> bytes:
    """A message from a peer carrying ``xdm``."""
    message = compose_message(
        Sender(PEER, "Dr Sophie MARTIN Cabinet des Lilas"),
        [BAL],
        subject,
        "Bonjour, ci-joint.",
        _now(),
        message_id=f"<{uuid.uuid4().hex}@cabinet-lilas.mssante.fr>",
        headers=list(headers.items()),
    )
    message.add_attachment(xdm, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return message.as_bytes()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


# -- composition --------------------------------------------------------------------------------------
def test_a_document_message_passes_the_harness_message_and_xdm_validators(
    practice: Practice, operator: OperatorStub
) -> None:
    raw, _ = sent_with(practice, operator, to_patient=True, read_receipt=True, delivery_receipt=True, no_reply=True)
    assert errors(check_message(raw, patient=True, expected_ins=MATRICULE, cda_codes=["11488-4"])) == []
    xdm = xdm_attachment(raw)
    assert xdm is not None
    report = check_xdm(xdm, expected_ins=(MATRICULE, INS_OID))
    assert [f"{f.rule}: {f.message}" for f in report.findings] == []  # not even a warning
    message = last_message(operator)
    assert message["From"].addresses[0].display_name == LABEL
    assert message["From"].addresses[0].addr_spec == BAL
    assert [a.addr_spec for a in message["To"].addresses] == [PEER, PATIENT_BAL]
    assert sorted(operator.sent[-1].recipients) == sorted([PEER, PATIENT_BAL])
    assert operator.sent[-1].mail_from == BAL
    assert message["Subject"] == "XDM/1.0/DDM+Compte rendu de consultation PAT-TROIS DOMINIQUE 28/03/1979"
    assert (message["X-MSS-NIL"], message["X-MSS-INS"], message["X-MSS-MES"]) == (PRODUCT_REFERENCE, "O", "FIN")
    assert message.get_all("X-MSS-CODECDA") == ["11488-4"]
    assert message["Return-Receipt-To"] == message["Disposition-Notification-To"] == BAL
    assert re.fullmatch(r"<[^@<>]+@cabinet-temoin\.mssante\.fr>", message["Message-ID"])
    assert message["Date"].datetime is not None
    names = [part.get_filename() for part in message.iter_attachments()]
    assert names[0] == "IHE_XDM.ZIP" and len(names) == 2 and str(names[1]).endswith(".pdf")
    assert message.get_body(("plain",)) is not None


def test_the_xdm_layout_and_metadata(practice: Practice, operator: OperatorStub) -> None:
    service = practice()
    patient = add_patient(service)
    first, first_cda = produce(service, patient)
    second, second_cda = produce(service, patient, "57833-6")
    assert send(service, patient, first, second)[0] == "sent"
    message = last_message(operator)
    assert message.get_all("X-MSS-CODECDA") == ["11488-4", "57833-6"]
    assert message["Subject"].startswith("XDM/1.0/DDM+Compte rendu de consultation, Ordonnance PAT-TROIS")
    xdm = xdm_attachment(operator.sent[-1].data)
    assert xdm is not None
    with zipfile.ZipFile(io.BytesIO(xdm)) as archive:
        names = archive.namelist()
        metadata = etree.fromstring(archive.read("IHE_XDM/SUBSET01/METADATA.XML"))
        assert archive.read("IHE_XDM/SUBSET01/DOC0001.XML") == first_cda
        assert archive.read("IHE_XDM/SUBSET01/DOC0002.XML") == second_cda
    assert names[:3] == ["INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"]
    assert {"IHE_XDM/SUBSET01/DOC0001.PDF", "IHE_XDM/SUBSET01/DOC0002.PDF"} <= set(names)
    rim = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    assert etree.QName(metadata).localname == "SubmitObjectsRequest"
    uris = [v.text for v in metadata.iterfind(f".//{{{rim}}}Slot[@name='URI']/{{{rim}}}ValueList/{{{rim}}}Value")]
    assert uris == ["DOC0001.XML", "DOC0002.XML"]
    patient_ids = {
        e.get("value") for e in metadata.iterfind(f".//{{{rim}}}ExternalIdentifier") if "^" in e.get("value", "")
    }
    assert patient_ids == {INS_CX}
    assert [a.get_filename() for a in message.iter_attachments()][1:] == [
        service.documents.produced_record(patient.id, d)["pdf_file_name"] for d in (first, second)
    ]
    assert errors(check_xdm(xdm, expected_ins=(MATRICULE, INS_OID)).findings) == []


def test_a_plain_message_has_no_xdm_and_no_document_headers(practice: Practice, operator: OperatorStub) -> None:
    service = practice()
    patient = add_patient(service, Status.VALI)  # no INS: professionals may still be written to
    assert send(service, patient, text="Pouvez-vous recevoir ce patient ?")[0] == "sent"
    message = last_message(operator)
    assert [a.get_filename() for a in message.iter_attachments()] == []
    assert message["X-MSS-INS"] is None and message["X-MSS-CODECDA"] is None
    assert message["X-MSS-NIL"] == PRODUCT_REFERENCE
    assert message.get_content_type() == "text/plain" and "Pouvez-vous" in message.get_content()
    assert errors(check_message(operator.sent[-1].data)) == []


def test_a_document_of_a_non_qualified_patient_goes_to_professionals_with_x_mss_ins_n(
    practice: Practice, operator: OperatorStub
) -> None:
    service = practice()
    patient = add_patient(service, Status.RECUP)
    document_id, _ = produce(service, patient)
    assert send(service, patient, document_id)[0] == "sent"
    assert last_message(operator)["X-MSS-INS"] == "N"
    assert errors(check_message(operator.sent[-1].data, expected_ins=MATRICULE)) == []


@pytest.mark.parametrize("status", [Status.PROV, Status.RECUP, Status.VALI])
def test_only_a_qualified_identity_is_written_to_at_its_patient_bal(
    practice: Practice, operator: OperatorStub, status: Status
) -> None:
    service = practice()
    patient = add_patient(service, status)
    document_id, _ = produce(service, patient)
    result, detail = send(service, patient, document_id, to_patient=True)
    assert result == "not-sent" and "not qualified" in detail
    assert operator.sessions == []
    trace = service.store.list_traces()[-1]
    assert (trace["service"], trace["operation"], trace["return_code"]) == ("MSSanté", "send", "not-sent")


def test_the_sender_label_and_subject_helpers() -> None:
    from harness.reference.doctypes import load_catalog

    catalog = load_catalog()
    assert sender_label(catalog.author, catalog.practice) == LABEL
    patient = Patient("P1", Traits("de la Tour", ("Jean", "Pierre"), "M", "1950-07-04"), Status.QUAL)
    assert xdm_subject(["Lettre"], patient) == "XDM/1.0/DDM+Lettre DE LA TOUR Jean 04/07/1950"
    assert xdm_subject(["Lettre"], patient, prefix=False) == "Lettre DE LA TOUR Jean 04/07/1950"
    assert parse_ins_cx(INS_CX) == (MATRICULE, INS_OID)
    for cx in ("P000001^^^&1.2.3&ISO^PI", f"{MATRICULE}^^^&1.2.250.1.213.1.4.2&ISO^NH", "garbage"):
        assert parse_ins_cx(cx) is None


def test_mdn_composition_passes_the_harness_mdn_validator(practice: Practice, operator: OperatorStub) -> None:
    raw, _ = sent_with(practice, operator, read_receipt=True)
    original = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(original, EmailMessage)
    reporter = Sender(PEER, "Dr Sophie MARTIN")
    processed = compose_mdn(original, reporter, _now(), message_id="<mdn1@cabinet-lilas.mssante.fr>")
    assert errors(check_mdn(processed.as_bytes())) == []
    assert processed.get_content_type() == "multipart/report"
    assert processed.get_param("report-type") == "disposition-notification"
    parts = list(processed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/disposition-notification", "message/rfc822"]
    reread = BytesParser(policy=policy.default).parsebytes(processed.as_bytes())
    fields = list(reread.iter_parts())[1].get_payload()[0]  # type: ignore[attr-defined, index]
    assert fields["Original-Message-ID"] == original["Message-ID"]
    assert fields["Final-Recipient"] == f"rfc822;{PEER}"
    assert fields["Disposition"] == "automatic-action/MDN-sent-automatically; processed"
    assert processed["To"] == BAL
    failed = compose_mdn(original, reporter, _now(), error_code="902")
    findings = check_mdn(failed.as_bytes())
    assert errors(findings) == [] and "mss.mdn.integration-error" in {f.rule for f in findings}
    assert str(failed["Subject"]).startswith("[KO Intégration système !][902] XDM/1.0/DDM+")
    assert "processed/Error: 902^Patient inconnu" in failed.as_string()


def test_reply_composition_threads_the_conversation() -> None:
    original = compose_message(
        Sender(PEER, "Dr Sophie MARTIN"),
        [BAL],
        "Avis",
        "Question ?",
        _now(),
        message_id="<q2@cabinet-lilas.mssante.fr>",
        headers=[("References", "<q1@cabinet-lilas.mssante.fr>"), ("Reply-To", "secretariat@cabinet-lilas.mssante.fr")],
    )
    reply = compose_reply(original, Sender(BAL, LABEL), "Réponse.", _now(), message_id="<r1@cabinet-temoin.mssante.fr>")
    assert reply["Subject"] == "RE: Avis"
    assert reply["In-Reply-To"] == "<q2@cabinet-lilas.mssante.fr>"
    assert reply["References"] == "<q1@cabinet-lilas.mssante.fr> <q2@cabinet-lilas.mssante.fr>"
    assert reply["To"] == "secretariat@cabinet-lilas.mssante.fr" and reply["X-MSS-NIL"] == PRODUCT_REFERENCE
    findings = check_message(reply.as_bytes(), in_reply_to_expected="<q2@cabinet-lilas.mssante.fr>")
    assert errors(findings) == []
    again = compose_reply(reply, Sender(PEER), "ok", _now(), threaded=False)
    assert again["Subject"] == "RE: Avis" and again["In-Reply-To"] is None and again["References"] is None


def test_requests_that_are_refused(practice: Practice) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produce(service, patient)
    for body in (
        [],
        {"recipients": ["not an address"]},
        {"recipients": [PEER], "to_patient": "yes"},
        {"recipients": [PEER], "transport": "pigeon"},
        {"document_ids": [document_id]},  # nobody to send to
        {"recipients": [PEER], "document_ids": [3]},
    ):
        with pytest.raises(InvalidInput):
            service.send(patient.id, body)
    with pytest.raises(UnknownDocument):
        service.send(patient.id, {"recipients": [PEER], "document_ids": ["1.2.3"]})
    received = service.documents.import_document(
        patient.id, {"cda_base64": base64.b64encode(foreign_cda(produce(service, patient)[1])).decode()}
    )
    with pytest.raises(Conflict):  # only documents the practice produced are its to send
        service.send(patient.id, {"recipients": [PEER], "document_ids": [received["document_id"]]})
    unconfigured = practice(configured=False)
    with pytest.raises(Conflict):
        unconfigured.send(add_patient(unconfigured).id, {"recipients": [PEER]})


# -- defects on the composed message -------------------------------------------------------------------
DEFECT_RULES = {
    "mss-no-nil": "mss.x-mss-nil",
    "mss-wrong-ins": "mss.x-mss-ins.consistency",
    "mss-no-codecda": "mss.x-mss-codecda",
    "mss-subject-no-prefix": "mss.subject",
    "mss-no-message-id": "mss.message-id",
}


@pytest.mark.parametrize("defect", sorted(DEFECT_RULES))
def test_a_header_defect_is_what_the_message_validator_finds(
    practice: Practice, operator: OperatorStub, defect: str
) -> None:
    raw, _ = sent_with(practice, operator, defect)
    found = rules(check_message(raw, expected_ins=MATRICULE, cda_codes=["11488-4"]))
    assert DEFECT_RULES[defect] in found
    conforming, _ = sent_with(practice, operator)
    assert DEFECT_RULES[defect] not in rules(check_message(conforming, expected_ins=MATRICULE, cda_codes=["11488-4"]))


def test_defect_mss_no_message_id_leaves_the_outcome_without_one(practice: Practice, operator: OperatorStub) -> None:
    service = practice("mss-no-message-id")
    patient = add_patient(service)
    outcome = service.send(patient.id, {"recipients": [PEER]})
    assert outcome.result == "sent" and outcome.message_id == ""
    assert last_message(operator)["Message-ID"] is None


def test_defect_mss_xdm_no_metadata(practice: Practice, operator: OperatorStub) -> None:
    raw, _ = sent_with(practice, operator, "mss-xdm-no-metadata")
    xdm = xdm_attachment(raw)
    assert xdm is not None
    assert "xdm.layout.metadata" in rules(check_xdm(xdm).findings)
    assert "IHE_XDM/SUBSET01/DOC0001.XML" in zipfile.ZipFile(io.BytesIO(xdm)).namelist()


def test_defect_mss_two_patients(practice: Practice, operator: OperatorStub) -> None:
    service = practice("mss-two-patients")
    patient = add_patient(service)
    alone_id, _ = produce(service, patient)
    assert send(service, patient, alone_id)[0] == "sent"  # no other patient yet: one document
    xdm = xdm_attachment(operator.sent[-1].data)
    assert xdm is not None and len([n for n in zipfile.ZipFile(io.BytesIO(xdm)).namelist() if n.endswith(".XML")]) == 2
    other = add_patient(service, traits=OTHER_TRAITS, matricule=OTHER_MATRICULE)
    _, other_cda = produce(service, other, "57833-6")
    assert send(service, patient, alone_id)[0] == "sent"
    xdm = xdm_attachment(operator.sent[-1].data)
    assert xdm is not None
    archive = zipfile.ZipFile(io.BytesIO(xdm))
    assert archive.read("IHE_XDM/SUBSET01/DOC0002.XML") == other_cda
    assert OTHER_MATRICULE.encode() in archive.read("IHE_XDM/SUBSET01/METADATA.XML")
    assert errors(check_xdm(xdm, expected_ins=(MATRICULE, INS_OID)).findings)
    assert last_message(operator).get_all("X-MSS-CODECDA") == ["11488-4"]


def test_defect_mss_bare_from(practice: Practice, operator: OperatorStub) -> None:
    sent_with(practice, operator, "mss-bare-from")
    message = last_message(operator)
    assert message["From"] == BAL and message["From"].addresses[0].display_name == ""


def test_defect_mss_no_fin_and_mss_no_return_receipt(practice: Practice, operator: OperatorStub) -> None:
    raw, _ = sent_with(
        practice, operator, "mss-no-fin", "mss-no-return-receipt", to_patient=True, no_reply=True, delivery_receipt=True
    )
    message = last_message(operator)
    assert message["X-MSS-MES"] is None and message["Return-Receipt-To"] is None
    findings = check_message(raw, patient=True, expected_ins=MATRICULE)
    assert "mss.patient.x-mss-mes" in {f.rule for f in findings}
    sent_with(practice, operator, "mss-no-fin", read_receipt=True)
    assert last_message(operator)["Disposition-Notification-To"] == BAL  # the read receipt is another rule


def test_defect_mss_unqualified_patient(practice: Practice, operator: OperatorStub) -> None:
    service = practice("mss-unqualified-patient")
    recup = add_patient(service, Status.RECUP)
    assert send(service, recup, to_patient=True)[0] == "sent"
    assert PATIENT_BAL in operator.sent[-1].recipients
    provisional = add_patient(service, Status.PROV, OTHER_TRAITS)
    assert send(service, provisional, to_patient=True)[0] == "not-sent"  # no INS at all: no address to build


# -- transport --------------------------------------------------------------------------------------------
def test_smtp_uses_starttls_before_any_credential_with_the_organisation_certificate(
    practice: Practice, operator: OperatorStub
) -> None:
    sent_with(practice, operator)
    [session] = operator.sessions
    commands = [c.upper() for _, c in session.commands]
    assert commands[:2] == ["EHLO CABINET-TEMOIN.LOCALDOMAIN", "STARTTLS"]
    assert all(tls for tls, c in session.commands[2:]) and not any(tls for tls, _ in session.commands[:2])
    assert session.tls_version in ("TLSv1.2", "TLSv1.3") and session.client_certificate
    assert (session.login, session.password) == (BAL, PASSWORD)


def test_tls12_is_limited_to_the_six_suites(practice: Practice, operator: OperatorStub, pki: TestPki) -> None:
    endpoint = practice().identities.endpoints.mssante()
    assert endpoint is not None
    context = tls_context(endpoint)
    offered_12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert offered_12 == SUITES_12
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    weak = {c["name"] for c in tls_context(endpoint, frozenset({"mss-weak-ciphers"})).get_ciphers()}
    assert weak > SUITES_12 and len(weak) > len(SUITES_12) + 10
    legacy = tls_context(endpoint, frozenset({"mss-accepts-tls10"}))
    assert legacy.minimum_version == ssl.TLSVersion.TLSv1
    expired = tls_context(endpoint, frozenset({"mss-accepts-expired-cert"}))
    assert expired.verify_flags & 0x200000 and expired.verify_mode == ssl.CERT_REQUIRED
    anything = tls_context(endpoint, frozenset({"mss-accepts-any-cert"}))
    assert anything.verify_mode == ssl.CERT_NONE and not anything.check_hostname


@pytest.mark.parametrize(
    ("server", "defect"),
    [("mss_expired_server", "mss-accepts-expired-cert"), ("mss_rogue_server", "mss-accepts-any-cert")],
)
def test_a_bad_server_certificate_is_refused_unless_the_defect_accepts_it(
    practice: Practice, pki: TestPki, server: str, defect: str
) -> None:
    with OperatorStub(pki, getattr(pki, server)) as bad:
        for defects, expected in (((), "failed"), ((defect,), "sent")):
            service = practice(*defects, config=bad.config())
            result, detail = send(service, add_patient(service))
            assert result == expected, detail
        refusing = practice(config=bad.config())
        assert "certificate" in send(refusing, add_patient(refusing))[1]


def test_defect_mss_system_ca_only_cannot_reach_the_operator(practice: Practice, operator: OperatorStub) -> None:
    service = practice("mss-system-ca-only")
    result, detail = send(service, add_patient(service))
    assert result == "failed" and "certificate" in detail
    assert operator.sent == []


def test_defect_mss_smtp_plaintext(practice: Practice, operator: OperatorStub) -> None:
    sent_with(practice, operator, "mss-smtp-plaintext")
    [session] = operator.sessions
    assert "STARTTLS" not in [c for _, c in session.commands]
    assert not any(tls for tls, _ in session.commands) and session.login == BAL


def test_recipients_refused_by_the_operator(practice: Practice, operator: OperatorStub) -> None:
    service = practice()
    patient = add_patient(service)
    operator.refused_recipients.add(PEER)
    result, detail = send(service, patient)
    assert result == "failed" and "550" in detail
    other = "jean-pierre.martin@ch-test.mssante.fr"
    result, detail = send(service, patient, recipients=[PEER, other])
    assert result == "sent" and f"refused: {PEER}: 550" in detail


def test_a_silent_or_absent_operator_is_a_failure_not_a_hang(practice: Practice, operator: OperatorStub) -> None:
    operator.silent = True
    service = practice(timeout_s=0.5)
    result, detail = send(service, add_patient(service))
    assert result == "failed" and "no answer in time" in detail
    with pytest.raises(OperatorUnavailable):
        service.fetch()
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    config = {**operator.config(), "smtp_port": port, "imap_port": port}
    unreachable = practice(config=config)
    result, detail = send(unreachable, add_patient(unreachable))
    assert result == "failed" and "connection refused" in detail


def test_dst_submission_goes_to_the_igc_sante_entry_point(practice: Practice, operator: OperatorStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produce(service, patient)
    result, detail = send(service, patient, document_id, transport="dst")
    assert result == "sent" and "dst-0001" in detail, detail
    [(path, content_type, body, certificate)] = operator.dst
    assert (path, content_type, certificate) == ("/dst/igc-sante/messages", "message/rfc822", True)
    assert errors(check_message(body, expected_ins=MATRICULE)) == [] and operator.sessions == []
    defective = practice("mss-dst-internet-entry")
    assert send(defective, add_patient(defective), transport="dst")[0] == "sent"
    assert operator.dst[-1][0] == "/dst/internet/messages"
    without_mailiz = practice(profiles=("Médecin traitant",))
    assert send(without_mailiz, add_patient(without_mailiz), transport="dst")[0] == "not-sent"


# -- reading the BAL --------------------------------------------------------------------------------------
def test_an_xdm_for_a_known_patient_is_integrated_and_an_mdn_returned(
    practice: Practice, operator: OperatorStub
) -> None:
    peer = practice()
    peer_patient = add_patient(peer)
    _, cda = produce(peer, peer_patient)
    xdm = _xdm_for(peer, peer_patient, foreign_cda(cda))
    operator.deliver(message_with_xdm(xdm, **{"Disposition-Notification-To": PEER}))
    service = practice()
    patient = add_patient(service)
    [received] = service.fetch()
    assert (received.status, received.patient_id, received.receipt_sent) == ("integrated", patient.id, True)
    [document] = service.documents.list_documents(patient.id, None)
    assert document["origin"] == "imported" and [document["document_id"]] == list(received.document_ids)
    assert operator.inbox[0].seen
    [imap] = operator.imap_sessions
    assert [c.split(" ", 1)[1] for tls, c in imap.commands if not tls] == ["CAPABILITY", "STARTTLS"]
    assert imap.login == BAL and imap.tls_version in ("TLSv1.2", "TLSv1.3")
    mdn = operator.sent[-1]
    assert mdn.recipients == [PEER]
    assert errors(check_mdn(mdn.data)) == [] and b"; processed\r\n" in mdn.data
    assert service.fetch() == []  # seen: not read again
    assert [t["operation"] for t in service.store.list_traces()] == ["receipt", "read"]


def _xdm_for(service: MssService, patient: Patient, cda: bytes) -> bytes:
    """An IHE_XDM.ZIP with one CDA as the practice itself would pack it."""
    from harness.reference.mss import XdmDocument, build_xdm

    record = {"document_id": "x", "kind": "11488-4", "structure": "N1"}
    entry = service._entry(patient, record, cda)
    submission = service._submission(service._patient_cx(patient), _now())
    return build_xdm(submission, [XdmDocument("DOC0001.XML", cda, entry)])


@pytest.mark.parametrize(
    ("matricule", "code"),
    [(OTHER_MATRICULE, "902"), ("", "903")],
)
def test_an_xdm_for_an_unknown_patient_or_without_ins_is_rejected(
    practice: Practice, operator: OperatorStub, matricule: str, code: str
) -> None:
    peer = practice()
    if matricule:
        someone = add_patient(peer, traits=OTHER_TRAITS, matricule=matricule)
    else:
        someone = add_patient(peer, Status.VALI)
    _, cda = produce(peer, someone)
    operator.deliver(
        message_with_xdm(_xdm_for(peer, someone, foreign_cda(cda)), **{"Disposition-Notification-To": PEER})
    )
    service = practice()
    patient = add_patient(service)
    [received] = service.fetch()
    assert (received.status, received.error_code, received.receipt_sent) == ("rejected", code, True)
    assert service.documents.list_documents(patient.id, None) == []
    mdn = operator.sent[-1].data
    assert f"processed/Error: {code}^".encode() in mdn and errors(check_mdn(mdn)) == []


def test_defect_mss_integrate_by_traits(practice: Practice, operator: OperatorStub) -> None:
    peer = practice()
    someone = add_patient(peer, traits=OTHER_TRAITS, matricule=OTHER_MATRICULE)
    _, cda = produce(peer, someone)
    xdm = _xdm_for(peer, someone, foreign_cda(cda))
    for defects, expected in (((), "rejected"), (("mss-integrate-by-traits",), "integrated")):
        operator.reset()
        operator.deliver(message_with_xdm(xdm))  # the subject names PAT-TROIS, the METADATA the other INS
        service = practice(*defects)
        patient = add_patient(service)
        [received] = service.fetch()
        assert received.status == expected
        assert received.patient_id == ("" if expected == "rejected" else patient.id)


def test_receipts_and_messages_without_document(practice: Practice, operator: OperatorStub) -> None:
    raw, _ = sent_with(practice, operator, read_receipt=True)
    original = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(original, EmailMessage)
    operator.reset()
    operator.deliver(compose_mdn(original, Sender(PEER), _now(), message_id="<m@x.mssante.fr>").as_bytes())
    plain = compose_message(Sender(PEER), [BAL], "Bonjour", "Texte", _now(), message_id="<p@x.mssante.fr>")
    plain["Disposition-Notification-To"] = PEER
    operator.deliver(plain.as_bytes())
    service = practice()
    receipt, message = service.fetch()
    assert (receipt.status, receipt.receipt_sent) == ("receipt", False)  # never an MDN for an MDN
    assert (message.status, message.receipt_sent, message.sender) == ("no-document", True, PEER)
    assert len(operator.sent) == 1


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        pytest.param({"INDEX.HTM": b"", "../../etc/passwd": b"x"}, "climbs out", id="zip-slip"),
        pytest.param({"INDEX.HTM": b"", "/abs/METADATA.XML": b"x"}, "absolute", id="absolute"),
        pytest.param({"IHE_XDM\\SUBSET01\\METADATA.XML": b"x"}, "backslash", id="backslash"),
        pytest.param({"IHE_XDM/SUBSET01/METADATA.XML": b"\0" * (60 * 1024 * 1024)}, "uncompressed", id="bomb"),
        pytest.param({"IHE_XDM/SUBSET01/DOC0001.XML": b"\0" * (5 * 1024 * 1024)}, "inflates", id="ratio"),
        pytest.param({f"f{i}.txt": b"" for i in range(200)}, "members", id="too-many-members"),
        pytest.param({"README.TXT": b"no metadata"}, "no IHE_XDM", id="no-metadata"),
        pytest.param(
            {
                "IHE_XDM/SUBSET01/METADATA.XML": (
                    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b'<r xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&x;</r>'
                )
            },
            "DOCTYPE",
            id="xxe",
        ),
        pytest.param({"IHE_XDM/SUBSET01/METADATA.XML": b"<not xml"}, "well-formed", id="malformed-metadata"),
        pytest.param(
            {"IHE_XDM/SUBSET01/METADATA.XML": b"<a/>", "IHE_XDM/SUBSET02/METADATA.XML": b"<a/>"},
            "submission sets",
            id="two-subsets",
        ),
    ],
)
def test_hostile_xdm_packages_are_rejected_with_906(
    practice: Practice, operator: OperatorStub, members: dict[str, bytes], reason: str
) -> None:
    xdm = zip_of(members)
    with pytest.raises(UnreadableXdm, match=reason):
        open_xdm(xdm)
    operator.deliver(message_with_xdm(xdm, **{"Disposition-Notification-To": PEER}))
    service = practice()
    add_patient(service)
    [received] = service.fetch()
    assert (received.status, received.error_code, received.receipt_sent) == ("rejected", "906", True)
    assert b"processed/Error: 906^" in operator.sent[-1].data


def test_a_zip_that_is_not_a_zip_and_a_uri_that_climbs_out_are_refused() -> None:
    with pytest.raises(UnreadableXdm):
        open_xdm(b"PK\x03\x04 not really a zip")
    metadata = (
        b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" '
        b'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList>'
        b'<rim:ExtrinsicObject id="e" mimeType="text/xml"><rim:Slot name="URI"><rim:ValueList>'
        b"<rim:Value>../../../etc/passwd</rim:Value></rim:ValueList></rim:Slot></rim:ExtrinsicObject>"
        b"</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    )
    with pytest.raises(UnreadableXdm, match="URI"):
        open_xdm(zip_of({"IHE_XDM/SUBSET01/METADATA.XML": metadata}))


def test_defect_mss_imap_plaintext(practice: Practice, operator: OperatorStub) -> None:
    practice("mss-imap-plaintext").fetch()
    [imap] = operator.imap_sessions
    assert imap.login == BAL and not any(tls for tls, _ in imap.commands)


def test_reply_to_a_message_read(practice: Practice, operator: OperatorStub) -> None:
    question = compose_message(
        Sender(PEER, "Dr Sophie MARTIN"), [BAL], "Avis", "?", _now(), message_id="<q@cabinet-lilas.mssante.fr>"
    )
    operator.deliver(question.as_bytes())
    service = practice()
    [read] = service.fetch()
    outcome = service.reply({"message_id": read.message_id, "text": "Oui."})
    assert outcome.result == "sent"
    reply = last_message(operator)
    assert (reply["In-Reply-To"], reply["References"], reply["Subject"]) == (
        read.message_id,
        read.message_id,
        "RE: Avis",
    )
    assert reply["Message-ID"] == outcome.message_id and operator.sent[-1].recipients == [PEER]
    assert errors(check_message(operator.sent[-1].data, in_reply_to_expected=read.message_id)) == []
    with pytest.raises(UnknownMessage):
        service.reply({"message_id": "<nobody@x>", "text": ""})
    with pytest.raises(InvalidInput):
        service.reply({"text": "no id"})
    defective = practice("mss-reply-no-in-reply-to")
    operator.deliver(question.as_bytes())
    [again] = defective.fetch()
    assert defective.reply({"message_id": again.message_id}).result == "sent"
    reply = last_message(operator)
    assert reply["In-Reply-To"] is None and reply["References"] is None
    assert "mss.in-reply-to" in rules(check_message(operator.sent[-1].data, in_reply_to_expected=again.message_id))


# -- the Annuaire Santé --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def annuaire(pki: TestPki) -> Iterator[AnnuaireSimulator]:
    with AnnuaireSimulator(pki, api_key="key-for-tests", page_size=1) as simulator:
        yield simulator


def directory_client(annuaire: AnnuaireSimulator, pki: TestPki, *defects: str, key: str = "") -> AnnuaireClient:
    endpoint = AnnuaireEndpoint(annuaire.url, key or annuaire.api_key, pki.ca_bundle_path)
    return AnnuaireClient(endpoint, 5.0, frozenset(defects))


def test_correspondents_by_idnps_and_by_name(annuaire: AnnuaireSimulator, pki: TestPki) -> None:
    annuaire.reset()
    [sophie] = directory_client(annuaire, pki).find(idnps="810000000001")
    assert (sophie.idnps, sophie.family, sophie.given, sophie.mailboxes) == (
        "810000000001",
        "MARTIN",
        "Sophie",
        SOPHIE_BALS,
    )
    [search] = annuaire.recorder.all()
    assert ["identifier", "urn:oid:1.2.250.1.71.4.2.1|810000000001"] in search.meta["parameters"]
    assert ["_revinclude", "PractitionerRole:practitioner"] in search.meta["parameters"]
    assert search.meta["api_key"] == "valid"
    mark = annuaire.recorder.mark()
    martins = directory_client(annuaire, pki).find(family="MARTIN")  # page size 1: the next link is followed
    assert {m.idnps for m in martins} >= {"810000000001", "810000000002"}
    assert [e.meta.get("interaction") for e in annuaire.recorder.since(mark)][:2] == ["search-type", "search-page"]
    [helene] = directory_client(annuaire, pki).find(idnps="810000000003")
    assert len(helene.mailboxes) == 2  # both her BALs, none of her phone numbers
    assert directory_client(annuaire, pki).find(family="NOBODY-IN-THE-DIRECTORY") == []


def test_a_mailbox_is_an_email_typed_mssante(annuaire: AnnuaireSimulator, pki: TestPki) -> None:
    annuaire.reset()
    practitioner = dict(annuaire.directory.get("Practitioner", "pra-0004") or {})
    plain_email = {"system": "email", "value": "emile.durand@gmail.example"}
    practitioner["telecom"] = [plain_email, *practitioner["telecom"]]
    annuaire.add_resource(practitioner)
    [emile] = directory_client(annuaire, pki).find(idnps="810000000004")
    assert emile.mailboxes == ("emile.durand@pro.mssante.fr",)
    [wrong] = directory_client(annuaire, pki, "ann-wrong-mailbox").find(idnps="810000000004")
    assert wrong.mailboxes == ("emile.durand@gmail.example",)
    annuaire.reset()


def test_the_api_key_is_sent_and_errors_are_reported(annuaire: AnnuaireSimulator, pki: TestPki) -> None:
    annuaire.reset()
    with pytest.raises(AnnuaireUnavailable, match="401"):
        directory_client(annuaire, pki, "ann-no-api-key").find(idnps="810000000001")
    assert annuaire.recorder.all()[-1].meta["api_key"] == "missing"
    with pytest.raises(AnnuaireUnavailable, match="403"):
        directory_client(annuaire, pki, key="wrong-key").find(idnps="810000000001")
    other_ca = AnnuaireEndpoint(annuaire.url, annuaire.api_key, pki.organisation.cert_path)
    with pytest.raises(AnnuaireUnavailable, match="unreachable"):
        AnnuaireClient(other_ca, 5.0).find(idnps="810000000001")
    with pytest.raises(ValueError):
        directory_client(annuaire, pki).find()


# -- settings -------------------------------------------------------------------------------------------
def test_the_mssante_and_annuaire_settings_are_checked_and_survive_a_restart(
    tmp_path: Path, operator: OperatorStub, pki: TestPki
) -> None:
    store = Store(tmp_path / "settings.sqlite")
    settings = EndpointSettings(store, tmp_path)
    good = operator.config()
    annuaire = {"url": "https://127.0.0.1:9/fhir/v2/", "api_key": "k", "ca_pem": good["ca_pem"]}
    for wrong in (
        {"mssante": {**good, "smtp_port": "25"}},
        {"mssante": {**good, "imap_host": "bad host!"}},
        {"mssante": {**good, "address": "nobody"}},
        {"mssante": {**good, "client_key_pem": ""}},
        {"mssante": {**good, "ca_pem": "not a pem"}},
        {"mssante": {**good, "dst_urls": {"igc-sante": "http://plain"}}},
        {"annuaire": {**annuaire, "url": "http://x"}},
        {"annuaire": {**annuaire, "api_key": ""}},
        {"mssante": good, "annuaire": {**annuaire, "ca_pem": ""}},  # nothing stored when one section is wrong
    ):
        with pytest.raises(InvalidInput):
            settings.apply(wrong)
    assert settings.mssante() is None and settings.annuaire() is None
    settings.apply({"mssante": good, "annuaire": annuaire})
    store.close()
    reopened = EndpointSettings(Store(tmp_path / "settings.sqlite"), tmp_path)
    endpoint = reopened.mssante()
    assert isinstance(endpoint, MssanteEndpoint)
    assert (endpoint.smtp_port, endpoint.imap_port, endpoint.address, endpoint.password) == (
        operator.smtp_port,
        operator.imap_port,
        BAL,
        PASSWORD,
    )
    assert endpoint.client_key_file.stat().st_mode & 0o077 == 0
    assert endpoint.dst_urls["igc-sante"].endswith("/igc-sante")
    directory = reopened.annuaire()
    assert directory is not None and directory.url == "https://127.0.0.1:9/fhir/v2" and directory.ca_file.exists()


# -- through the control API ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="reference-mss-") as folder, start_reference(Path(folder)) as ref:
        yield ref.url


def test_send_fetch_reply_and_find_through_the_http_adapter(
    reference: str, operator: OperatorStub, annuaire: AnnuaireSimulator, pki: TestPki
) -> None:
    annuaire.reset()
    sut = HttpSut(reference, timeout_s=30)
    try:
        description = sut.describe()
        assert {"mssante", "annuaire"} <= {c.value for c in description.capabilities}
        with InsiSimulator(pki) as insi:
            config = EndpointConfig(
                insi=insi_endpoint_config(insi.url, pki).insi,
                mssante=MssanteConfig(**operator.config()),
                annuaire=AnnuaireConfig(annuaire.url, annuaire.api_key, pki.ca_bundle_pem.decode("ascii")),
            )
            sut.configure_endpoints(config)
            identity = insi.base.named("with-history")
            traits = PatientTraits(
                identity.birth_name, tuple(identity.first_names), identity.sex, identity.birth_date, identity.birthplace
            )
            patient = sut.create_patient(traits, identity_document="CN")
            assert sut.search_ins(patient.id).patient.status.value == "QUAL"
        document = sut.produce_document(patient.id, "11488-4")
        outcome = sut.send_mss(
            MssSendRequest(
                patient.id, (document.document_id,), (PEER,), to_patient=True, read_receipt=True, no_reply=True
            )
        )
        assert outcome.result == "sent", outcome
        raw = operator.sent[-1].data
        assert errors(check_message(raw, patient=True, expected_ins=identity.matricule)) == []
        assert f"{identity.matricule}@patient.mssante.fr" in operator.sent[-1].recipients
        assert outcome.message_id == BytesParser(policy=policy.default).parsebytes(raw)["Message-ID"]

        question = compose_message(
            Sender(PEER), [BAL], "Avis", "?", _now(), message_id="<api-q@cabinet-lilas.mssante.fr>"
        )
        question["Disposition-Notification-To"] = PEER
        operator.deliver(question.as_bytes())
        [received] = sut.fetch_mss()
        assert (received.message_id, received.status, received.receipt_sent) == (
            "<api-q@cabinet-lilas.mssante.fr>",
            "no-document",
            True,
        )
        reply = sut.reply_mss(received.message_id, "Oui")
        assert reply.result == "sent" and reply.message_id
        [sophie] = sut.find_correspondents(idnps="810000000001")
        assert sophie.mailboxes == SOPHIE_BALS
        assert {t.service for t in sut.traces()} >= {"MSSanté", "Annuaire Santé"}
        # the error conventions
        for method, path, body, status in (
            ("POST", "/mss/replies", {"message_id": "<unknown@x>"}, 404),
            ("POST", "/mss/replies", {}, 422),
            ("POST", f"/patients/{patient.id}/mss-messages", {"recipients": ["bad"]}, 422),
            ("POST", "/patients/nobody/mss-messages", {"recipients": [PEER]}, 404),
            ("GET", "/annuaire/practitioners", None, 422),
        ):
            answer = sut._session.request(method, f"{reference}{path}", json=body, timeout=30)
            assert answer.status_code == status, (path, answer.text)
            assert answer.headers["Content-Type"].startswith("application/problem+json")
        closed = socket.create_server(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        sut.configure_endpoints(EndpointConfig(mssante=MssanteConfig(**{**operator.config(), "imap_port": port})))
        answer = sut._session.post(f"{reference}/mss/fetch", json={}, timeout=30)
        assert answer.status_code == 502 and "connection refused" in answer.json()["detail"]
    finally:
        sut.close()


def test_the_python_adapter_checks_what_a_python_sut_returns() -> None:
    from harness.sut.base import SutError
    from harness.sut.model import Correspondent, MssOutcome, ReceivedMessage

    class Target:
        def send_mss(self, request: MssSendRequest) -> MssOutcome:
            return MssOutcome("sent", "ok", "<a@b>")

        def fetch_mss(self) -> list[ReceivedMessage]:
            return [ReceivedMessage("<a@b>", PEER, "s", "no-document")]

        def reply_mss(self, message_id: str, text: str) -> object:
            return {"mss": "sent"}

        def find_correspondents(self, idnps: str = "", family: str = "", given: str = "") -> list[Correspondent]:
            return [Correspondent(idnps, family, given)]

    sut = PythonSut(Target(), timeout_s=5)
    assert sut.send_mss(MssSendRequest("P1")).result == "sent"
    assert sut.fetch_mss()[0].status == "no-document"
    assert sut.find_correspondents("810000000001")[0].idnps == "810000000001"
    with pytest.raises(SutError, match="MssOutcome"):
        sut.reply_mss("<a@b>", "x")
