"""Reading an HTTP answer's body without letting the server decide how much memory it takes.

The practice's HTTPS clients (INSi in :mod:`harness.reference.insi`, the DMP in
:mod:`harness.reference.dmp_client`, the Annuaire Santé in
:mod:`harness.reference.annuaire_client`) talk to servers they do not control, which a
test may make hostile: each asks ``requests`` for a streamed answer and reads it here,
chunk by chunk, up to a cap. INSi and the DMP also share the same mutual-TLS SOAP POST
(no proxy from the environment, no redirect followed). What a too-large answer or a
transport error means (an error answer, an exception) and how it is worded stays with
each client.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

CHUNK_BYTES = 16384


@dataclass(frozen=True, slots=True)
class BoundedAnswer:
    """An HTTP answer read up to a cap: ``body`` is None when the server sent more."""

    status: int
    content_type: str
    body: bytes | None


def bounded_body(response: requests.Response, limit: int, chunk_bytes: int = CHUNK_BYTES) -> bytes | None:
    """The body of a ``stream=True`` response, or None as soon as more than ``limit`` bytes came.

    Transport errors while reading (``requests.RequestException``) reach the caller.
    """
    payload = bytearray()
    for chunk in response.iter_content(chunk_bytes):
        payload += chunk
        if len(payload) > limit:
            return None
    return bytes(payload)


def post_bounded(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    cert: tuple[Path, Path],
    ca_file: Path,
    timeout_s: float,
    limit: int,
) -> BoundedAnswer:
    """POST ``body`` with the client certificate ``cert`` (certificate, key), the server checked against ``ca_file``.

    ``timeout_s`` bounds the connection and each read; ``requests`` exceptions reach the caller.
    """
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(
            url,
            data=body,
            headers=headers,
            cert=(str(cert[0]), str(cert[1])),
            verify=str(ca_file),
            timeout=(timeout_s, timeout_s),
            stream=True,
            allow_redirects=False,
        )
        with response:
            payload = bounded_body(response, limit)
            return BoundedAnswer(response.status_code, response.headers.get("Content-Type", ""), payload)
