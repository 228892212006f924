"""The practice's INSi client: authentication mode, TLS, and a call that never hangs.

It sends the envelopes of :mod:`harness.reference.soap` over HTTPS, always checking the
server against the configured CA bundle, with either the organisation certificate
(mutual TLS, empty ``wsse:Security``) or the CPS certificate plus a signed assertion.
In a Pro Santé Connect session (mode ``PSC``, inferred from INS/PSC.01: no public wire
detail was read) the request carries the PSC access token as ``Authorization: Bearer``,
over mutual TLS with the organisation certificate (the CPS one when it is the only one
configured) and an empty ``wsse:Security``: the professional is authenticated by PSC,
not by a CPS assertion.
A call runs in a worker thread and is abandoned after ``timeout_s``: a silent or
trickling server gives code ``error``, never a blocked control API.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import requests
from lxml import etree

from harness.reference import saml
from harness.reference.http_body import post_bounded
from harness.reference.soap import (
    CARD_OPERATION,
    MAX_ANSWER_BYTES,
    TRAITS_OPERATION,
    CallContext,
    CardQuery,
    InsiAnswer,
    LpsIdentity,
    TraitsQuery,
    card_search_envelope,
    parse_answer,
    traits_search_envelope,
)


class AuthMode(enum.StrEnum):
    """How the practice authenticates to INSi."""

    ORGANISATION = "organisation-certificate"
    CPS = "cps"
    PSC = "PSC"


class InsiNotConfigured(RuntimeError):
    """INSi cannot be called: no endpoint, or no certificate for the authentication mode."""


@dataclass(frozen=True, slots=True)
class InsiEndpoint:
    """Where INSi is and the files (under the database folder) holding the PEMs to use."""

    url: str
    ca_file: Path
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    cps_cert_file: Path | None = None
    cps_key_file: Path | None = None


class InsiClient:
    """Calls INSi for one authentication mode."""

    def __init__(
        self,
        endpoint: InsiEndpoint,
        auth_mode: AuthMode,
        lps: LpsIdentity,
        timeout_s: float,
        with_idam: bool = True,
        psc_token: str = "",
        psc_subject: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.auth_mode = auth_mode
        self.lps = lps
        self.timeout_s = timeout_s
        self.with_idam = with_idam
        self.psc_token = psc_token
        self.psc_subject = psc_subject
        """The PSC professional's SubjectNameID in PSC mode (the call log names them)."""
        if auth_mode is AuthMode.ORGANISATION:
            cert, key = endpoint.client_cert_file, endpoint.client_key_file
            missing = "organisation certificate and key"
        elif auth_mode is AuthMode.PSC:
            if endpoint.client_cert_file is not None and endpoint.client_key_file is not None:
                cert, key = endpoint.client_cert_file, endpoint.client_key_file
            else:
                cert, key = endpoint.cps_cert_file, endpoint.cps_key_file
            missing = "organisation (or CPS) certificate and key"
        else:
            cert, key = endpoint.cps_cert_file, endpoint.cps_key_file
            missing = "CPS certificate and key"
        if cert is None or key is None:
            raise InsiNotConfigured(f"INSi {auth_mode.value} mode needs the {missing} (PUT /config/endpoints)")
        self._cert_file, self._key_file = cert, key
        self._cert_pem = cert.read_bytes()
        self._emitter = saml.holder_id(self._cert_pem)

    def search_by_traits(self, query: TraitsQuery, now: datetime) -> InsiAnswer:
        ctx = self._context(TRAITS_OPERATION, now)
        return self._post(ctx, traits_search_envelope(ctx, query, self._security(now)))

    def search_by_card(self, query: CardQuery, now: datetime) -> InsiAnswer:
        ctx = self._context(CARD_OPERATION, now)
        return self._post(ctx, card_search_envelope(ctx, query, self._security(now)))

    def _context(self, operation: str, now: datetime) -> CallContext:
        return CallContext(
            operation=operation,
            to=self.endpoint.url,
            emitter=self._emitter,
            now=now,
            lps=self.lps,
            with_idam=self.with_idam,
        )

    def _security(self, now: datetime) -> etree._Element | None:
        if self.auth_mode is not AuthMode.CPS:
            return None
        return saml.cps_assertion(
            self._cert_pem, self._key_file.read_bytes(), self._emitter, now, self.lps.name, self.lps.version
        )

    def _post(self, ctx: CallContext, envelope: bytes) -> InsiAnswer:
        return replace(self._post_within_timeout(ctx, envelope), message_id=ctx.message_id)

    def _post_within_timeout(self, ctx: CallContext, envelope: bytes) -> InsiAnswer:
        outcome: list[InsiAnswer] = []
        worker = threading.Thread(target=lambda: outcome.append(self._exchange(ctx, envelope)), daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(self.timeout_s)
        if not outcome:
            return InsiAnswer("error", detail=f"no complete answer from INSi within {self.timeout_s:g} s")
        answer = outcome[0]
        if answer.code == "error" and time.monotonic() - started >= self.timeout_s:
            return InsiAnswer("error", detail=f"no complete answer from INSi within {self.timeout_s:g} s")
        return answer

    def _exchange(self, ctx: CallContext, envelope: bytes) -> InsiAnswer:
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{ctx.action}"'}
        if self.auth_mode is AuthMode.PSC:
            headers["Authorization"] = f"Bearer {self.psc_token}"
        try:
            reply = post_bounded(
                self.endpoint.url,
                envelope,
                headers,
                cert=(self._cert_file, self._key_file),
                ca_file=self.endpoint.ca_file,
                timeout_s=self.timeout_s,
                limit=MAX_ANSWER_BYTES,
            )
        except requests.Timeout:
            return InsiAnswer("error", detail=f"no answer from INSi within {self.timeout_s:g} s")
        except requests.RequestException as exc:
            return InsiAnswer("error", detail=f"INSi unreachable: {_short(exc)}")
        if reply.body is None:
            return InsiAnswer("error", detail="INSi answer larger than 2 MiB")
        status = reply.status
        answer = parse_answer(reply.body)
        if status != 200 and answer.code != "fault":
            return InsiAnswer("error", detail=f"INSi answered HTTP {status}: {answer.detail or answer.code}")
        return answer


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
