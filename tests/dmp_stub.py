"""A tiny HTTPS SOAP endpoint standing in for the DMP in the reference system's own tests.

It is not the DMP simulator: it checks nothing, records every request (headers, body,
the TLS client certificate, the SOAP envelope and the MTOM parts, split with
requests-toolbelt's decoder, independent of the reference's own MIME code) and answers
a canned ``rs:RegistryResponse`` (or a TD0.3 answer), Success unless told to fail.
TLS asks for a client certificate chained to the test PKI, as the DMP does.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from lxml import etree
from requests_toolbelt.multipart.decoder import MultipartDecoder
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from harness.pki import TestPki

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
TD = "urn:segur-harness:dmp:td"
NS = {
    "soap": SOAP12,
    "wsa": WSA,
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xdsb": "urn:ihe:iti:xds-b:2007",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "rs": RS,
    "xop": "http://www.w3.org/2004/08/xop/include",
    "hl7": "urn:hl7-org:v3",
    "td": TD,
}


@dataclass
class Received:
    """One request as the stub saw it."""

    content_type: str
    body: bytes
    client_cert_pem: str
    envelope: etree._Element
    root_content_type: str = ""
    parts: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Content-ID (no angle brackets) → (Content-Type, bytes) of every non-root MTOM part."""

    @property
    def action(self) -> str:
        return (self.envelope.findtext("soap:Header/wsa:Action", namespaces=NS) or "").strip()

    @property
    def assertion(self) -> etree._Element:
        found = self.envelope.find("soap:Header/wsse:Security/saml:Assertion", NS)
        assert found is not None, "no VIHF in wsse:Security"
        return found

    def find(self, path: str) -> etree._Element | None:
        return self.envelope.find(path, NS)

    def findall(self, path: str) -> list[etree._Element]:
        return self.envelope.findall(path, NS)

    def document(self, entry_id: str) -> bytes:
        """The bytes the ``xdsb:Document`` of ``entry_id`` points at (through its xop:Include)."""
        document = self.envelope.find(f".//xdsb:Document[@id='{entry_id}']", NS)
        assert document is not None, f"no xdsb:Document for {entry_id}"
        include = document.find("xop:Include", NS)
        assert include is not None, "the document is not an xop:Include"
        href = include.get("href", "")
        assert href.startswith("cid:"), href
        return self.parts[href.removeprefix("cid:")][1]


class DmpStub:
    """An HTTPS endpoint on 127.0.0.1 recording DMP requests and answering Success (or ``failure``)."""

    def __init__(self, pki: TestPki) -> None:
        self.pki = pki
        self.received: list[Received] = []
        self.failure: tuple[str, str] | None = None
        """(errorCode, codeContext) to answer Failure with, instead of Success."""
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_port}/dmp"

    def reset(self) -> None:
        self.received.clear()
        self.failure = None

    def actions(self) -> list[str]:
        return [r.action for r in self.received]

    def start(self) -> DmpStub:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pki.server.chain_path), str(self.pki.server.key_path))
        context.load_verify_locations(cafile=str(self.pki.ca_bundle_path))
        context.verify_mode = ssl.CERT_REQUIRED
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, ssl_context=context)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> DmpStub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- WSGI ------------------------------------------------------------------------------------
    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        content_type = request.headers.get("Content-Type", "")
        root_type, root, parts = content_type, body, {}
        if content_type.startswith("multipart/related"):
            decoded = MultipartDecoder(body, content_type)
            for index, part in enumerate(decoded.parts):
                headers = {k.decode().lower(): v.decode() for k, v in part.headers.items()}
                content_id = headers.get("content-id", "").strip().strip("<>")
                if index == 0:
                    root_type, root = headers.get("content-type", ""), part.content
                else:
                    parts[content_id] = (headers.get("content-type", ""), part.content)
        envelope = etree.fromstring(root)
        received = Received(content_type, body, str(environ.get("SSL_CLIENT_CERT", "")), envelope, root_type, parts)
        self.received.append(received)
        response = Response(self._answer(received), content_type="application/soap+xml; charset=UTF-8")
        return response(environ, start_response)

    def _answer(self, received: Received) -> bytes:
        envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
        header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
        etree.SubElement(header, f"{{{WSA}}}Action").text = received.action + "Response"
        relates = received.envelope.findtext("soap:Header/wsa:MessageID", namespaces=NS) or ""
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates
        body = etree.SubElement(envelope, f"{{{SOAP12}}}Body")
        if received.action.endswith("td0.3"):
            answer = etree.SubElement(body, f"{{{TD}}}AddAuthorizationResponse", nsmap={"td": TD})
            etree.SubElement(answer, f"{{{TD}}}status").text = "OK"
        else:
            status = "Failure" if self.failure else "Success"
            response = etree.SubElement(
                body, f"{{{RS}}}RegistryResponse", status=f"urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:{status}"
            )
            if self.failure:
                errors = etree.SubElement(response, f"{{{RS}}}RegistryErrorList")
                etree.SubElement(
                    errors,
                    f"{{{RS}}}RegistryError",
                    errorCode=self.failure[0],
                    codeContext=self.failure[1],
                    severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error",
                    location="",
                )
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
