"""MTOM/XOP on the wire: splitting a ``multipart/related`` body into parts, and building one.

DMP documents travel as MTOM attachments (``docs/dmp-wire.md`` § ITI-41): the HTTP body is
a MIME ``multipart/related`` whose root part is the SOAP envelope and whose other parts
are the documents, referenced from ``xop:Include href="cid:..."``. The body has already
been bounded by the server; this parser works on those bytes with ``bytes.find`` (no
copy of the whole body per part beyond the part itself), caps the number of parts and
the header size, and turns every malformation into a :class:`MtomError` with a reason a
client can act on. Part headers are read with the standard library's header parser.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from urllib.parse import unquote

MAX_PARTS = 256
"""More parts than this is refused: a submission carries a handful of documents."""
MAX_PART_HEADERS = 16 * 1024
XOP_MEDIA_TYPE = "application/xop+xml"


class MtomError(Exception):
    """A multipart body that cannot be read; ``reason`` is a short machine name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME part: its ``Content-ID`` (without angle brackets), type, headers and decoded content."""

    content_id: str
    content_type: str
    headers: dict[str, str]
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class MtomMessage:
    """A parsed ``multipart/related`` body: the root part (the SOAP envelope) and the others by Content-ID."""

    content_type: str
    root: Part
    attachments: dict[str, Part] = field(default_factory=dict)

    def resolve(self, href: str) -> Part | None:
        """The part an ``xop:Include/@href`` (``cid:...``, percent-encoded) points at."""
        if not href.lower().startswith("cid:"):
            return None
        return self.attachments.get(unquote(href[4:]).strip("<>"))


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    """``(media type, parameters)`` of a Content-Type header value, parameters lower-cased by name."""
    message = Message()
    message["Content-Type"] = value
    media = message.get_content_type()
    params: dict[str, str] = {}
    for name, param in message.get_params(header="Content-Type", failobj=[])[1:]:
        params[name.lower()] = param if isinstance(param, str) else str(param)
    return media, params


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "multipart/related"


def parse(content_type: str, body: bytes, *, max_part_bytes: int | None = None) -> MtomMessage:
    """Split ``body`` (with its HTTP ``Content-Type``) into the root part and the attachments.

    Raises:
        MtomError: no boundary, no delimiter, an unterminated body or part, a part without a
            header block, duplicate Content-IDs, too many parts, an attachment above
            ``max_part_bytes`` (reason ``attachment-too-large``), an undecodable base64 part,
            or no root part.
    """
    media, params = content_type_params(content_type)
    if media != "multipart/related":
        raise MtomError("not-multipart", f"Content-Type {media!r} is not multipart/related")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise MtomError("no-boundary", "multipart/related without a usable boundary parameter")
    parts = _split(body, boundary.encode("latin-1", "replace"), max_part_bytes)
    if not parts:
        raise MtomError("no-parts", "multipart body with no part")
    start = params.get("start", "").strip().strip("<>")
    by_id: dict[str, Part] = {}
    for part in parts:
        if part.content_id and part.content_id in by_id:
            raise MtomError("duplicate-content-id", f"two parts carry Content-ID <{part.content_id}>")
        if part.content_id:
            by_id[part.content_id] = part
    if start:
        root = by_id.get(start)
        if root is None:
            raise MtomError("no-root", f"the start parameter names <{start}> but no part has that Content-ID")
    else:
        root = parts[0]
    attachments = {cid: p for cid, p in by_id.items() if p is not root}
    return MtomMessage(content_type=content_type, root=root, attachments=attachments)


def _split(body: bytes, boundary: bytes, max_part_bytes: int | None) -> list[Part]:
    delimiter = b"--" + boundary
    position = body.find(delimiter)
    if position < 0 or (position > 0 and body[position - 1 : position] != b"\n"):
        raise MtomError("no-delimiter", "the boundary given in Content-Type never opens a part")
    parts: list[Part] = []
    cursor = position + len(delimiter)
    while True:
        if body[cursor : cursor + 2] == b"--":
            return parts
        line_end = body.find(b"\n", cursor)
        if line_end < 0:
            raise MtomError("unterminated", "multipart body ends right after a delimiter")
        start = line_end + 1
        following = body.find(b"\n" + delimiter, start)
        if following < 0:
            raise MtomError("unterminated", "multipart body not closed by its final delimiter")
        end = following - 1 if body[following - 1 : following] == b"\r" else following
        if len(parts) >= MAX_PARTS:
            raise MtomError("too-many-parts", f"more than {MAX_PARTS} parts")
        parts.append(_part(body, start, max(start, end), max_part_bytes, len(parts)))
        cursor = following + 1 + len(delimiter)


def _part(body: bytes, start: int, end: int, max_part_bytes: int | None, index: int) -> Part:
    head = body[start : min(end, start + MAX_PART_HEADERS)]
    crlf, lf = head.find(b"\r\n\r\n"), head.find(b"\n\n")
    if head.startswith(b"\r\n"):
        header_end, content_start = start, start + 2
    elif head.startswith(b"\n"):
        header_end, content_start = start, start + 1
    elif crlf >= 0 and (lf < 0 or crlf <= lf):
        header_end, content_start = start + crlf, start + crlf + 4
    elif lf >= 0:
        header_end, content_start = start + lf, start + lf + 2
    else:
        raise MtomError("part-headers", f"part {index + 1} has no header block ending in an empty line")
    headers = BytesHeaderParser().parsebytes(body[start:header_end] + b"\r\n\r\n")
    content_id = str(headers.get("Content-ID") or "").strip().strip("<>")
    content_type = str(headers.get("Content-Type") or "application/octet-stream").strip()
    encoding = str(headers.get("Content-Transfer-Encoding") or "binary").strip().lower()
    size = end - content_start
    if encoding == "base64":
        size = size * 3 // 4
    is_root = content_type.lower().startswith(XOP_MEDIA_TYPE)
    if max_part_bytes is not None and not is_root and size > max_part_bytes:
        raise MtomError(
            "attachment-too-large",
            f"part <{content_id}> holds {size} bytes, above the {max_part_bytes}-byte attachment limit",
        )
    content = body[content_start:end]
    if encoding == "base64":
        try:
            content = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            raise MtomError("bad-base64", f"part <{content_id}> is not valid base64") from None
    return Part(
        content_id=content_id,
        content_type=content_type,
        headers={name: str(value) for name, value in headers.items()},
        content=content,
    )


# -- building ------------------------------------------------------------------------------------


def build(
    envelope: bytes, attachments: list[Part], *, action: str = "", soap_type: str = "application/soap+xml"
) -> tuple[str, bytes]:
    """An MTOM body: ``envelope`` as the XOP root part, then ``attachments`` in binary.

    Returns the HTTP ``Content-Type`` value and the body.
    """
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = f"root.{uuid.uuid4().hex}@dmp.simulator"
    action_param = f'; action="{action}"' if action else ""
    root_type = f'{XOP_MEDIA_TYPE}; charset=UTF-8; type="{soap_type}"{action_param}'
    chunks: list[bytes] = [
        f"--{boundary}\r\nContent-Type: {root_type}\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{root_id}>\r\n\r\n".encode("ascii"),
        envelope,
    ]
    for part in attachments:
        chunks.append(
            f"\r\n--{boundary}\r\nContent-Type: {part.content_type}\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{part.content_id}>\r\n\r\n".encode("ascii")
        )
        chunks.append(part.content)
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    content_type = (
        f'multipart/related; type="{XOP_MEDIA_TYPE}"; boundary="{boundary}"; '
        f'start="<{root_id}>"; start-info="{soap_type}"{action_param}'
    )
    return content_type, b"".join(chunks)


def new_content_id() -> str:
    """A fresh Content-ID for an attachment."""
    return f"{uuid.uuid4().hex}@dmp.simulator"
