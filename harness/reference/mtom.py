"""MTOM/XOP packaging of SOAP 1.2 messages: the envelope as the root part, documents as binary parts.

An ITI-41 request carries each document as its own MIME part, referenced from the
envelope by ``<xop:Include href="cid:..."/>`` (W3C XOP, SOAP 1.2 MTOM). The package
is written here byte for byte, because the document bytes must reach the DMP exactly
as they were hashed: the standard library's MIME generator rewrites line endings in
a non-base64 part, which would change a CDA and its SHA-1. Answers (a plain SOAP
envelope or an MTOM package) are read with the standard library's MIME parser, which
keeps part bytes as they are.
"""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from dataclasses import dataclass

XOP = "http://www.w3.org/2004/08/xop/include"
ROOT_TYPE = 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'


class NotSoap(ValueError):
    """An answer that is neither a SOAP envelope nor an MTOM package holding one."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One binary part: the content id the envelope's ``xop:Include`` names, its type and bytes."""

    content_id: str
    content_type: str
    content: bytes

    @property
    def href(self) -> str:
        """The ``xop:Include/@href`` that points at this part."""
        return f"cid:{self.content_id}"


def new_content_id(name: str) -> str:
    """A globally unique Content-ID (``<name>.<uuid>@cabinet-temoin``), without angle brackets."""
    return f"{name}.{uuid.uuid4().hex}@cabinet-temoin"


def package(envelope: bytes, attachments: list[Attachment], action: str) -> tuple[str, bytes]:
    """The HTTP Content-Type and body of an MTOM message: ``envelope`` as root part, then each attachment."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = new_content_id("root")
    parts = [_part(f'{ROOT_TYPE}; action="{action}"', root_id, envelope, "8bit")]
    parts += [_part(a.content_type, a.content_id, a.content, "binary") for a in attachments]
    delimiter = f"--{boundary}\r\n".encode("ascii")
    body = b"".join(delimiter + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode("ascii")
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
        f'start="<{root_id}>"; start-info="application/soap+xml"; action="{action}"'
    )
    return content_type, body


def _part(content_type: str, content_id: str, content: bytes, encoding: str) -> bytes:
    headers = (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\nContent-ID: <{content_id}>\r\n\r\n"
    )
    return headers.encode("ascii") + content


def soap_part(content_type: str, body: bytes) -> bytes:
    """The SOAP envelope of an answer: the body itself, or the root part of an MTOM package; raises NotSoap."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/soap+xml", "text/xml", "application/xml"):
        return body
    if media != "multipart/related":
        raise NotSoap(f"answer of type {media or 'none'!r}, not SOAP")
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    parts = list(message.iter_parts())
    if not parts:
        raise NotSoap("MTOM answer without any part")
    start = str(message.get_param("start") or "").strip()
    root = next((p for p in parts if str(p.get("Content-ID", "")).strip() == start), parts[0]) if start else parts[0]
    payload = root.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise NotSoap("MTOM answer whose root part is empty")
    return payload
