"""The practice's Pro Santé Connect transport: discovery, JWKS, authorization URL, token, userinfo, CIBA.

PSC is an OpenID Connect provider (``shared/docs/protocols.md`` §4). The practice is a
confidential client: authlib's ``OAuth2Session`` builds the authorization request (with
PKCE ``S256``) and makes the token requests, authenticated with ``client_secret_basic``.
Every request goes over HTTPS with the server checked against the configured CA bundle,
ignores proxies from the environment, follows no redirect, reads at most
:data:`MAX_ANSWER_BYTES` of the answer and is abandoned after the call timeout (a worker
thread per call, as for INSi): a silent, trickling or flooding provider gives a
:class:`PscUnavailable`, never a blocked control API. The provider's own refusals
(an OAuth ``error``) are :class:`PscRefused`. What the tokens say is judged in
:mod:`harness.reference.psc`, not here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]

from harness.reference.http_body import bounded_body

MAX_ANSWER_BYTES = 1024 * 1024
"""The most the practice reads of any PSC answer (discovery, JWKS, token, userinfo, CIBA)."""
CIBA_GRANT = "urn:openid:params:grant-type:ciba"
SCOPE = "openid scope_all"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PscEndpoint:
    """The discovery document's URL, the client registration, and the file of the CA bundle to trust."""

    discovery_url: str
    client_id: str
    client_secret: str
    ca_file: Path


class PscUnavailable(RuntimeError):
    """PSC could not be used: unreachable, too slow, an answer too large or unreadable."""


class PscRefused(RuntimeError):
    """PSC answered an OAuth error (``error`` and its description)."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the practice reads of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    end_session_endpoint: str = ""
    backchannel_authentication_endpoint: str = ""

    @classmethod
    def from_json(cls, data: Any) -> Discovery:
        """The checked document; raises PscUnavailable naming what is missing or not https."""
        if not isinstance(data, dict):
            raise PscUnavailable("the discovery document is not a JSON object")
        required = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")
        optional = ("end_session_endpoint", "backchannel_authentication_endpoint")
        values: dict[str, str] = {}
        for name in (*required, *optional):
            value = data.get(name)
            if value is None and name in optional:
                values[name] = ""
                continue
            if not isinstance(value, str) or not _is_https(value):
                raise PscUnavailable(f"the discovery document's '{name}' is not an https URL")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Answer:
    """A bounded answer: status, content type, body."""

    status: int
    content_type: str
    body: bytes

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise PscUnavailable(f"{what} is not JSON (HTTP {self.status})") from None


class PscTransport:
    """Talks to one configured PSC for the practice."""

    def __init__(self, endpoint: PscEndpoint, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s

    # -- plain reads ----------------------------------------------------------------------------
    def discovery(self) -> Discovery:
        answer = self._get(self.endpoint.discovery_url, "the discovery document")
        if answer.status != 200:
            raise PscUnavailable(f"the discovery document answered HTTP {answer.status}")
        return Discovery.from_json(answer.json("the discovery document"))

    def jwks(self, discovery: Discovery) -> Any:
        """The provider's JWKS as JSON (judged by the caller)."""
        answer = self._get(discovery.jwks_uri, "the JWKS")
        if answer.status != 200:
            raise PscUnavailable(f"the JWKS answered HTTP {answer.status}")
        return answer.json("the JWKS")

    def userinfo(self, discovery: Discovery, access_token: str) -> Answer:
        """The userinfo answer (JSON or ``application/jwt``), the access token as Bearer."""
        answer = self._get(
            discovery.userinfo_endpoint, "the userinfo answer", {"Authorization": f"Bearer {access_token}"}
        )
        if answer.status != 200:
            raise PscUnavailable(f"userinfo answered HTTP {answer.status}")
        return answer

    # -- OAuth ----------------------------------------------------------------------------------
    def authorization_url(
        self,
        discovery: Discovery,
        redirect_uri: str,
        state: str,
        nonce: str | None,
        code_verifier: str | None,
        acr_values: str | None,
    ) -> str:
        """The authorization request (``response_type=code``), PKCE S256 when a verifier is given."""
        extra: dict[str, str] = {}
        if nonce is not None:
            extra["nonce"] = nonce
        if acr_values is not None:
            extra["acr_values"] = acr_values
        with self._session(redirect_uri) as session:
            url, _ = session.create_authorization_url(
                discovery.authorization_endpoint, state=state, code_verifier=code_verifier, scope=SCOPE, **extra
            )
        return str(url)

    def exchange_code(
        self, discovery: Discovery, code: str, redirect_uri: str, code_verifier: str | None
    ) -> dict[str, Any]:
        """The token answer for an authorization code (``code_verifier`` sent when given)."""
        extra = {"code_verifier": code_verifier} if code_verifier is not None else {}

        def call() -> dict[str, Any]:
            with self._session(redirect_uri) as session:
                return _token(
                    session,
                    discovery.token_endpoint,
                    self.timeout_s,
                    grant_type="authorization_code",
                    code=code,
                    **extra,
                )

        return self._within("the token endpoint", call)

    def backchannel_authentication(
        self, discovery: Discovery, login_hint: str, binding_message: str, acr_values: str | None
    ) -> dict[str, Any]:
        """The CIBA authentication request; the provider's answer (``auth_req_id``, ``expires_in``, ``interval``)."""
        form = {"scope": SCOPE, "login_hint": login_hint, "binding_message": binding_message}
        if acr_values is not None:
            form["acr_values"] = acr_values

        def call() -> dict[str, Any]:
            with self._session("") as session:
                response = session.post(
                    discovery.backchannel_authentication_endpoint,
                    data=form,
                    auth=session.client_auth("client_secret_basic"),
                    withhold_token=True,
                    timeout=(self.timeout_s, self.timeout_s),
                    stream=True,
                    allow_redirects=False,
                )
                with response:
                    answer = _bounded(response, "the CIBA answer")
            data = answer.json("the CIBA answer")
            if not isinstance(data, dict):
                raise PscUnavailable("the CIBA answer is not a JSON object")
            if "error" in data:
                raise PscRefused(str(data["error"]), str(data.get("error_description") or ""))
            if answer.status != 200:
                raise PscUnavailable(f"the CIBA endpoint answered HTTP {answer.status}")
            return data

        return self._within("the CIBA endpoint", call)

    def poll_ciba(self, discovery: Discovery, auth_req_id: str) -> dict[str, Any]:
        """One CIBA token request; PscRefused (``authorization_pending``, ``access_denied``...) until it succeeds."""

        def call() -> dict[str, Any]:
            with self._session("") as session:
                return _token(
                    session, discovery.token_endpoint, self.timeout_s, grant_type=CIBA_GRANT, auth_req_id=auth_req_id
                )

        return self._within("the token endpoint", call)

    # -- plumbing -------------------------------------------------------------------------------
    def _session(self, redirect_uri: str) -> Any:
        session = OAuth2Session(
            client_id=self.endpoint.client_id,
            client_secret=self.endpoint.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            redirect_uri=redirect_uri or None,
            code_challenge_method="S256",
        )
        session.trust_env = False
        session.verify = str(self.endpoint.ca_file)
        session.register_compliance_hook("access_token_response", _read_token_answer)
        return session

    def _get(self, url: str, what: str, headers: dict[str, str] | None = None) -> Answer:
        def call() -> Answer:
            with requests.Session() as session:
                session.trust_env = False
                response = session.get(
                    url,
                    headers=headers or {},
                    verify=str(self.endpoint.ca_file),
                    timeout=(self.timeout_s, self.timeout_s),
                    stream=True,
                    allow_redirects=False,
                )
                with response:
                    return _bounded(response, what)

        return self._within(what, call)

    def _within(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` in a worker thread, abandoned after the timeout; transport errors become PscUnavailable."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(call())
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)

        worker = threading.Thread(target=run, name="psc-call", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            raise PscUnavailable(f"no complete answer from {what} within {self.timeout_s:g} s")
        if failure:
            exc = failure[0]
            if isinstance(exc, PscUnavailable | PscRefused):
                raise exc
            if isinstance(exc, OAuthError):
                raise PscRefused(str(exc.error or "error"), str(exc.description or "")) from None
            if isinstance(exc, requests.Timeout):
                raise PscUnavailable(f"no answer from {what} within {self.timeout_s:g} s") from None
            if isinstance(exc, requests.RequestException):
                raise PscUnavailable(f"{what} unreachable: {_short(exc)}") from None
            if isinstance(exc, ValueError):  # authlib: a token answer that is not a JSON object
                raise PscUnavailable(f"{what}: {_short(exc)}") from None
            raise exc
        return outcome[0]


def _token(session: Any, url: str, timeout_s: float, **params: str) -> dict[str, Any]:
    token = session.fetch_token(url, timeout=(timeout_s, timeout_s), stream=True, allow_redirects=False, **params)
    return dict(token)


def _read_token_answer(response: requests.Response) -> requests.Response:
    """authlib's hook on a token answer: read the streamed body within the cap before authlib parses it."""
    with response:
        body = bounded_body(response, MAX_ANSWER_BYTES)
    if body is None:
        raise PscUnavailable(f"the token answer is larger than {MAX_ANSWER_BYTES // 1024} KiB")
    response._content = body
    return response


def _bounded(response: requests.Response, what: str) -> Answer:
    body = bounded_body(response, MAX_ANSWER_BYTES)
    if body is None:
        raise PscUnavailable(f"{what} is larger than {MAX_ANSWER_BYTES // 1024} KiB")
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return Answer(response.status_code, content_type, body)


def _is_https(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
