"""Pro Santé Connect as the simulator answers it: the Keycloak realm ``esante-wallet``'s OpenID Connect endpoints.

One request in, one :class:`HttpAnswer` out, never an exception. The service maps method and
path to the endpoint (discovery, authorization with its login page, token, userinfo, JWKS,
introspection, end-session, CIBA backchannel authentication), checks what the client sent
against what PSC expects (state, nonce, PKCE S256, ``acr_values=eidas1``, registered redirect
URIs, client authentication) and writes each call into a typed record with its findings
(:mod:`harness.simulators.psc.records`). Tokens are RS256 JWTs (:mod:`harness.simulators.psc.tokens`);
misbehaviours and faults (:mod:`harness.simulators.psc.faults`) make them or the endpoints wrong.

All lifetimes and intervals read one clock (wall seconds, injectable so tests need not sleep).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urlsplit

from harness.findings import Finding, error
from harness.simulators.https import HttpAnswer, HttpRequest
from harness.simulators.psc.answers import (
    HTML_TYPE,
    JSON_TYPE,
    NO_STORE,
    OAuthError,
    PageError,
    allow,
    base_meta,
    json_body,
    oauth_error,
    page,
    parameters,
)
from harness.simulators.psc.faults import (
    TOKEN_MISBEHAVIOURS,
    FaultSwitch,
    MisbehaviourSwitch,
    PscFaultKind,
    PscMisbehaviourKind,
)
from harness.simulators.psc.professionals import Professional
from harness.simulators.psc.records import (
    AuthorizationRecord,
    CibaRequestRecord,
    IntrospectionRecord,
    LogoutRecord,
    PscRecords,
    TokenRequestRecord,
    UserinfoRequestRecord,
)
from harness.simulators.psc.tokens import SigningKeys

REALM = "esante-wallet"
PATH = f"/auth/realms/{REALM}"
"""The issuer's path, as Keycloak names the PSC realm."""
OIDC = "/protocol/openid-connect"
WALLET_DISCOVERY = "/.well-known/wallet-openid-configuration"
"""PSC's own discovery path (protocols.md §4); the standard one serves the same document."""
STANDARD_DISCOVERY = "/.well-known/openid-configuration"
ENDPOINTS = {
    WALLET_DISCOVERY: "discovery",
    STANDARD_DISCOVERY: "discovery",
    f"{OIDC}/auth": "authorization",
    f"{OIDC}/token": "token",
    f"{OIDC}/userinfo": "userinfo",
    f"{OIDC}/certs": "jwks",
    f"{OIDC}/token/introspect": "introspection",
    f"{OIDC}/logout": "logout",
    f"{OIDC}/ext/ciba/auth": "ciba-auth",
}
"""Path under the issuer → endpoint name (the recorded exchange's ``action``)."""

CIBA_GRANT = "urn:openid:params:grant-type:ciba"
ACR = "eidas1"
LOW_ACR = "eidas0"
ACCESS_TOKEN_S = 300
ID_TOKEN_S = 300
REFRESH_TOKEN_S = 1800
CODE_S = 60
LOGIN_PAGE_S = 600
"""How long a login page stays usable after its authorization request."""
MIN_STATE = 16
MAX_KEPT = 10_000
"""The most codes, sessions, refresh tokens, CIBA requests (each) kept in memory; the oldest go first."""
HUGE_USERINFO_BYTES = 4 * 1024 * 1024
SLOW_DOWN_S = 5
SOURCE = "psc"
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


@dataclass(frozen=True, slots=True)
class ClientRegistration:
    """A relying party registered at the simulator (the SUT, or a test client)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    userinfo_signed: bool = False
    """Userinfo answered as a signed JWT (``application/jwt``) instead of JSON."""


@dataclass(slots=True)
class _Pending:
    """An authorization request waiting for the professional to pick themselves on the login page."""

    request_id: str
    client_id: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    scope: str
    challenge: str | None
    method: str | None
    created: float
    record: AuthorizationRecord


@dataclass(slots=True)
class _Session:
    sid: str
    professional: Professional
    client_id: str
    auth_time: int
    nonce: str | None
    scope: str
    ended: bool = False


@dataclass(slots=True)
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str | None
    created: float
    session: _Session
    used: bool = False


@dataclass(slots=True)
class _Refresh:
    token: str
    session: _Session
    client_id: str
    scope: str
    expires: float


@dataclass(slots=True)
class _Ciba:
    auth_req_id: str
    client_id: str
    professional: Professional
    scope: str
    created: float
    expires: float
    interval: float
    record: CibaRequestRecord
    last_poll: float | None = None
    status: str = "pending"


@dataclass(slots=True)
class _ClientAuth:
    """How a client authenticated at the token, introspection or CIBA endpoint."""

    method: str
    client_id: str
    client: ClientRegistration | None
    ok: bool
    problem: str = ""


KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")


def _keep(store: OrderedDict[KeyT, ValueT], key: KeyT, value: ValueT) -> None:
    store[key] = value
    while len(store) > MAX_KEPT:
        store.popitem(last=False)


def _finding(rule: str, message: str, location: str = "") -> Finding:
    return error(rule, message, location, source=SOURCE)


def _now_utc() -> datetime:
    return datetime.now(UTC)


class PscService:
    """Answers the PSC endpoints for the registered clients and the test professionals.

    Args:
        professionals: who can log in (by ``SubjectNameID``).
        issuer: the issuer URL (known once the server is bound).
        records: where each call's record goes.
        clock: wall time in seconds (``time.time``), for token times and every expiry.
    """

    def __init__(
        self,
        professionals: Iterable[Professional],
        issuer: Callable[[], str],
        records: PscRecords,
        misbehaviours: MisbehaviourSwitch,
        faults: FaultSwitch,
        clock: Callable[[], float],
        *,
        ciba_interval_s: int = 5,
        ciba_expires_in_s: int = 120,
        auto_approve_ciba: bool = False,
    ) -> None:
        if ciba_interval_s < 1 or ciba_expires_in_s < 1:
            raise ValueError("the CIBA interval and lifetime must be at least 1 s")
        self.professionals = {p.subject_name_id: p for p in professionals}
        self.issuer = issuer
        self.records = records
        self.misbehaviours = misbehaviours
        self.faults = faults
        self.clock = clock
        self.ciba_interval_s = ciba_interval_s
        self.ciba_expires_in_s = ciba_expires_in_s
        self.auto_approve_ciba = auto_approve_ciba
        self.keys = SigningKeys()
        self.clients: dict[str, ClientRegistration] = {}
        self._lock = threading.RLock()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._codes: OrderedDict[str, _Code] = OrderedDict()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._refresh: OrderedDict[str, _Refresh] = OrderedDict()
        self._ciba: OrderedDict[str, _Ciba] = OrderedDict()
        self._nonces: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- steering (the simulator's) -------------------------------------------------------------
    def register(self, client: ClientRegistration) -> None:
        with self._lock:
            self.clients[client.client_id] = client

    def forget(self) -> None:
        """Drop every pending login, code, session, refresh token, CIBA request and seen nonce."""
        with self._lock:
            for store in (self._pending, self._codes, self._sessions, self._refresh, self._ciba, self._nonces):
                store.clear()

    def decide_ciba(self, auth_req_id: str, approve: bool) -> None:
        """Approve or deny a pending CIBA request (the professional answering on their phone).

        Raises:
            KeyError: no such request.
            ValueError: it is no longer pending.
        """
        with self._lock:
            request = self._ciba.get(auth_req_id)
            if request is None:
                raise KeyError(f"no CIBA request {auth_req_id!r}")
            if request.status != "pending":
                raise ValueError(f"CIBA request {auth_req_id!r} is {request.status}, not pending")
            request.status = request.record.status = "approved" if approve else "denied"
        self.records.changed()

    # -- entry point -----------------------------------------------------------------------------
    def handle(self, request: HttpRequest) -> HttpAnswer:
        meta = base_meta()
        path = urlsplit(request.target).path
        endpoint = ENDPOINTS.get(path[len(PATH) :]) if path.startswith(PATH) else None
        meta["endpoint"] = endpoint
        try:
            if endpoint is None:
                raise OAuthError(404, "not_found", f"aucun point d'accès PSC à {path[:200]!r}")
            with self._lock:
                answer = self._dispatch(endpoint, request, meta)
        except OAuthError as refused:
            answer = oauth_error(refused.status, refused.code, refused.description, meta)
            answer.headers.extend(refused.headers)
        except PageError as refused:
            meta["error"] = "page"
            answer = HttpAnswer(
                refused.status, page("Erreur", f"<p>{html.escape(refused.message)}</p>"), HTML_TYPE, meta=meta
            )
        answer.action = str(meta["endpoint"] or "unknown")
        return answer

    def _dispatch(self, endpoint: str, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        if endpoint == "discovery":
            allow(request, "GET")
            return HttpAnswer(200, json_body(self.discovery()), meta=meta)
        if endpoint == "jwks":
            allow(request, "GET")
            return self._jwks(meta)
        if endpoint == "authorization":
            allow(request, "GET", "POST")
            return self._authorization(request, meta)
        if endpoint == "token":
            allow(request, "POST")
            return self._token(request, meta)
        if endpoint == "userinfo":
            allow(request, "GET", "POST")
            return self._userinfo(request, meta)
        if endpoint == "introspection":
            allow(request, "POST")
            return self._introspection(request, meta)
        if endpoint == "logout":
            allow(request, "GET", "POST")
            return self._logout(request, meta)
        allow(request, "POST")
        return self._ciba_auth(request, meta)

    # -- discovery and keys ----------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        issuer = self.issuer()
        base = issuer + OIDC
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/certs",
            "introspection_endpoint": f"{base}/token/introspect",
            "end_session_endpoint": f"{base}/logout",
            "backchannel_authentication_endpoint": f"{base}/ext/ciba/auth",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", CIBA_GRANT],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": [ACR],
            "scopes_supported": ["openid", "scope_all"],
            "claims_supported": sorted({"sub", "iss", "aud", "acr", "nonce", "auth_time", "sid", *self._claim_names()}),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "backchannel_token_delivery_modes_supported": ["poll"],
            "backchannel_authentication_request_signing_alg_values_supported": [],
            "backchannel_user_code_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
        }

    def _claim_names(self) -> set[str]:
        return {name for p in self.professionals.values() for name in p.claims}

    def _jwks(self, meta: dict[str, Any]) -> HttpAnswer:
        if self.faults.take(PscFaultKind.MALFORMED_JWKS) is not None:
            meta["fault"] = PscFaultKind.MALFORMED_JWKS.value
            return HttpAnswer(
                200, b'{"keys": [{"kty": "RSA", "kid": "' + self.keys.kid.encode() + b'", "n": ', meta=meta
            )
        return HttpAnswer(200, json_body(self.keys.jwks()), meta=meta)

    # -- authorization ---------------------------------------------------------------------------
    def _authorization(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        try:
            params, repeated = parameters(request, query=request.method == "GET", form=request.method == "POST")
        except OAuthError as bad:
            raise PageError(400, bad.description) from None
        if request.method == "POST" and "request_id" in params:
            return self._login(params, meta)
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        client = self.clients.get(client_id)
        registered = client is not None and redirect_uri in client.redirect_uris
        record = AuthorizationRecord(
            seq=self.records.next_seq(),
            received=_now_utc(),
            method=request.method,
            params=dict(params),
            client_id=client_id,
            redirect_uri=redirect_uri,
            client_known=client is not None,
            redirect_uri_registered=registered,
        )
        self.records.add("authorization", record)
        meta["client_id"] = client_id or None
        meta["record"] = {"kind": "authorization", "seq": record.seq}
        record.findings.extend(self._authorization_findings(params, client, registered))
        if client is None:
            record.outcome = "error:unknown-client"
            raise PageError(400, f"client {client_id[:100]!r} inconnu de Pro Santé Connect")
        if not registered:
            record.outcome = "error:redirect-uri"
            raise PageError(400, f"redirect_uri {redirect_uri[:300]!r} non enregistrée pour le client {client_id!r}")
        state = params.get("state")
        problem = self._authorization_refusal(params, repeated)
        if problem is not None:
            code, description = problem
            record.outcome = f"error:{code}"
            meta["error"] = code
            return self._redirect(redirect_uri, {"error": code, "error_description": description, "state": state}, meta)
        challenge = params.get("code_challenge") or None
        pending = _Pending(
            request_id=secrets.token_urlsafe(24),
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            nonce=params.get("nonce") or None,
            scope=params.get("scope", ""),
            challenge=challenge,
            method=(params.get("code_challenge_method") or "plain") if challenge else None,
            created=self.clock(),
            record=record,
        )
        record.request_id = pending.request_id
        _keep(self._pending, pending.request_id, pending)
        return HttpAnswer(200, self._login_page(pending), HTML_TYPE, headers=list(NO_STORE), meta=meta)

    def _authorization_findings(
        self, params: Mapping[str, str], client: ClientRegistration | None, registered: bool
    ) -> list[Finding]:
        found: list[Finding] = []
        client_id = params.get("client_id", "")
        if client is None:
            found.append(_finding("psc.client-id", f"client_id {client_id[:100]!r} n'est pas un client enregistré"))
        elif not registered:
            found.append(
                _finding(
                    "psc.redirect-uri",
                    f"redirect_uri {params.get('redirect_uri', '')[:300]!r} n'est pas une URI enregistrée du client",
                    "redirect_uri",
                )
            )
        if params.get("response_type") != "code":
            found.append(
                _finding(
                    "psc.response-type",
                    f"response_type {params.get('response_type', '')!r}: le flux code est attendu",
                    "response_type",
                )
            )
        if "openid" not in params.get("scope", "").split():
            found.append(_finding("psc.scope", "le scope ne contient pas openid", "scope"))
        state = params.get("state", "")
        if len(state) < MIN_STATE:
            message = "state absent" if not state else f"state de {len(state)} caractères (moins de {MIN_STATE})"
            found.append(_finding("psc.state", message, "state"))
        nonce = params.get("nonce", "")
        if not nonce:
            found.append(_finding("psc.nonce", "nonce absent", "nonce"))
        elif (client_id, nonce) in self._nonces:
            found.append(_finding("psc.nonce", "nonce déjà utilisé dans une demande précédente du client", "nonce"))
        else:
            _keep(self._nonces, (client_id, nonce), None)
        challenge = params.get("code_challenge", "")
        method = params.get("code_challenge_method", "")
        if not challenge:
            found.append(_finding("psc.pkce", "pas de PKCE (code_challenge absent)", "code_challenge"))
        elif method != "S256":
            found.append(
                _finding(
                    "psc.pkce",
                    f"code_challenge_method {method or '(absent: plain)'!r}: S256 est attendu",
                    "code_challenge_method",
                )
            )
        acr_values = params.get("acr_values", "")
        if acr_values.split() != [ACR]:
            found.append(
                _finding("psc.acr-values", f"acr_values {acr_values[:100]!r}: {ACR} est attendu", "acr_values")
            )
        return found

    @staticmethod
    def _authorization_refusal(params: Mapping[str, str], repeated: list[str]) -> tuple[str, str] | None:
        """The RFC 6749 error sent back to the client, when the request cannot go on to the login page."""
        if repeated:
            return "invalid_request", f"paramètre répété: {repeated[0][:64]}"
        if params.get("response_type") != "code":
            return "unsupported_response_type", "seul response_type=code est servi"
        if "openid" not in params.get("scope", "").split():
            return "invalid_scope", "le scope doit contenir openid"
        if params.get("code_challenge") and params.get("code_challenge_method", "plain") not in ("S256", "plain"):
            return "invalid_request", "code_challenge_method inconnu"
        if params.get("prompt") == "none":
            return "login_required", "aucune session Pro Santé Connect: une connexion est nécessaire"
        if params.get("request") or params.get("request_uri"):
            return "request_not_supported", "les objets de requête ne sont pas servis"
        return None

    def _login_page(self, pending: _Pending) -> bytes:
        buttons = "\n".join(
            f'<li><button type="submit" name="subject_name_id" value="{html.escape(p.subject_name_id)}">'
            f"{html.escape(p.display_name)} ({html.escape(p.subject_name_id)})</button></li>"
            for p in self.professionals.values()
        )
        form = (
            f'<form method="post" action="{html.escape(PATH + OIDC)}/auth">\n'
            f'<input type="hidden" name="request_id" value="{html.escape(pending.request_id)}">\n'
            f"<ul>\n{buttons}\n</ul>\n"
            '<p><button type="submit" name="action" value="deny">Refuser</button></p>\n</form>'
        )
        intro = f"<p>Le service <b>{html.escape(pending.client_id)}</b> demande votre identité. Qui êtes-vous ?</p>"
        return page("Pro Santé Connect (simulateur)", intro + "\n" + form)

    def _login(self, params: Mapping[str, str], meta: dict[str, Any]) -> HttpAnswer:
        meta["endpoint"] = "login"
        pending = self._pending.pop(params.get("request_id", ""), None)
        if pending is None or self.clock() - pending.created > LOGIN_PAGE_S:
            raise PageError(400, "page de connexion inconnue ou expirée: reprendre depuis le logiciel")
        record = pending.record
        meta["client_id"] = pending.client_id
        meta["record"] = {"kind": "authorization", "seq": record.seq}
        if params.get("action") == "deny":
            record.outcome = "denied"
            self.records.changed()
            meta["error"] = "access_denied"
            refused = {"error": "access_denied", "error_description": "connexion refusée", "state": pending.state}
            return self._redirect(pending.redirect_uri, refused, meta)
        professional = self.professionals.get(params.get("subject_name_id", ""))
        if professional is None:
            self._pending[pending.request_id] = pending  # the page stays usable
            raise PageError(400, f"professionnel {params.get('subject_name_id', '')[:32]!r} inconnu")
        session = self._new_session(professional, pending.client_id, pending.nonce, pending.scope)
        code = _Code(
            code=secrets.token_urlsafe(32),
            client_id=pending.client_id,
            redirect_uri=pending.redirect_uri,
            challenge=pending.challenge,
            method=pending.method,
            created=self.clock(),
            session=session,
        )
        _keep(self._codes, code.code, code)
        record.outcome = "code-issued"
        record.subject_name_id = professional.subject_name_id
        self.records.changed()
        answer = {"code": code.code, "state": pending.state, "session_state": session.sid, "iss": self.issuer()}
        return self._redirect(pending.redirect_uri, answer, meta)

    def _new_session(self, professional: Professional, client_id: str, nonce: str | None, scope: str) -> _Session:
        session = _Session(str(uuid.uuid4()), professional, client_id, int(self.clock()), nonce, scope)
        _keep(self._sessions, session.sid, session)
        return session

    @staticmethod
    def _redirect(uri: str, params: Mapping[str, str | None], meta: dict[str, Any]) -> HttpAnswer:
        query = urlencode([(k, v) for k, v in params.items() if v is not None])
        location = uri + ("&" if "?" in uri else "?") + query if query else uri
        return HttpAnswer(302, b"", HTML_TYPE, headers=[("Location", location), *NO_STORE], meta=meta)

    # -- client authentication -------------------------------------------------------------------
    def _authenticate(self, request: HttpRequest, params: Mapping[str, str]) -> _ClientAuth:
        header = request.headers.get("Authorization", "")
        basic = header[:6].lower() == "basic "
        posted = "client_secret" in params
        if basic and posted:
            return _ClientAuth("several", params.get("client_id", ""), None, False, "deux méthodes d'authentification")
        if basic:
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
                raw_id, _, raw_secret = decoded.partition(":")
                client_id, secret = unquote(raw_id), unquote(raw_secret)
            except (ValueError, UnicodeDecodeError):
                return _ClientAuth("client_secret_basic", "", None, False, "en-tête Basic illisible")
            if params.get("client_id", client_id) != client_id:
                return _ClientAuth("client_secret_basic", client_id, None, False, "client_id différent du Basic")
            method = "client_secret_basic"
        elif posted:
            client_id, secret, method = params.get("client_id", ""), params["client_secret"], "client_secret_post"
        else:
            return _ClientAuth("none", params.get("client_id", ""), None, False, "aucune authentification du client")
        client = self.clients.get(client_id)
        if client is None:
            return _ClientAuth(method, client_id, None, False, f"client {client_id[:100]!r} inconnu")
        if not hmac.compare_digest(secret.encode("utf-8"), client.client_secret.encode("utf-8")):
            return _ClientAuth(method, client_id, client, False, "secret du client refusé")
        return _ClientAuth(method, client_id, client, True)

    @staticmethod
    def _auth_refusal(auth: _ClientAuth) -> OAuthError:
        headers = [("WWW-Authenticate", f'Basic realm="{REALM}"')] if auth.method == "client_secret_basic" else []
        return OAuthError(401, "invalid_client", auth.problem, headers)

    # -- token -----------------------------------------------------------------------------------
    def _token(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        params, repeated = parameters(request, query=False, form=True)
        auth = self._authenticate(request, params)
        grant_type = params.get("grant_type", "")
        record = TokenRequestRecord(
            seq=self.records.next_seq(),
            received=_now_utc(),
            grant_type=grant_type,
            client_id=auth.client_id,
            client_auth=auth.method,
            client_authenticated=auth.ok,
        )
        self.records.add("token", record)
        meta.update(grant_type=grant_type or None, client_id=auth.client_id or None)
        meta["record"] = {"kind": "token", "seq": record.seq}
        fault = self.faults.take(PscFaultKind.TOKEN_TIMEOUT)
        if fault is not None:
            meta["fault"] = record.fault = fault.kind.value
        try:
            if not auth.ok:
                record.findings.append(_finding("psc.client-auth", auth.problem, "Authorization"))
                raise self._auth_refusal(auth)
            assert auth.client is not None
            if repeated:
                raise OAuthError(400, "invalid_request", f"paramètre répété: {repeated[0][:64]}")
            if grant_type == "authorization_code":
                answer = self._code_grant(auth.client, params, record, meta)
            elif grant_type == "refresh_token":
                answer = self._refresh_grant(auth.client, params, record, meta)
            elif grant_type == CIBA_GRANT:
                answer = self._ciba_grant(auth.client, params, record, meta)
            else:
                raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant_type[:64]!r} non servi")
        except OAuthError as refused:
            record.status, record.error = refused.status, refused.code
            answer = oauth_error(refused.status, refused.code, refused.description, meta)
            answer.headers.extend(refused.headers)
        else:
            record.status = answer.status
        if fault is not None:
            answer.delay_s = fault.delay_s
        return answer

    def _code_grant(
        self, client: ClientRegistration, params: Mapping[str, str], record: TokenRequestRecord, meta: dict[str, Any]
    ) -> HttpAnswer:
        code = self._codes.get(params.get("code", ""))
        if code is None or code.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "code inconnu")
        record.subject_name_id = code.session.professional.subject_name_id
        if code.used:
            record.findings.append(_finding("psc.code.reused", "code d'autorisation présenté une seconde fois", "code"))
            code.session.ended = True  # RFC 6749 §4.1.2: what the code gave is revoked
            raise OAuthError(400, "invalid_grant", "code déjà utilisé")
        code.used = True
        if self.clock() - code.created > CODE_S:
            raise OAuthError(400, "invalid_grant", f"code expiré (valable {CODE_S} s)")
        if params.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri différente de celle de la demande d'autorisation")
        if code.challenge is not None:
            verifier = params.get("code_verifier", "")
            record.pkce_verified = _pkce_matches(verifier, code.challenge, code.method or "plain")
            if not record.pkce_verified:
                message = (
                    "code_verifier absent" if not verifier else "code_verifier ne correspond pas au code_challenge"
                )
                record.findings.append(_finding("psc.pkce.verifier", message, "code_verifier"))
                raise OAuthError(400, "invalid_grant", "PKCE: " + message)
        return self._tokens(client, code.session, record, meta)

    def _refresh_grant(
        self, client: ClientRegistration, params: Mapping[str, str], record: TokenRequestRecord, meta: dict[str, Any]
    ) -> HttpAnswer:
        refresh = self._refresh.get(params.get("refresh_token", ""))
        if refresh is None or refresh.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "refresh_token inconnu")
        record.subject_name_id = refresh.session.professional.subject_name_id
        if refresh.session.ended:
            raise OAuthError(400, "invalid_grant", "session terminée")
        if self.clock() > refresh.expires:
            raise OAuthError(400, "invalid_grant", "refresh_token expiré")
        return self._tokens(client, refresh.session, record, meta)

    def _tokens(
        self, client: ClientRegistration, session: _Session, record: TokenRequestRecord, meta: dict[str, Any]
    ) -> HttpAnswer:
        """The token answer: access token, ID token (as the misbehaviour makes it), refresh token."""
        now = int(self.clock())
        misbehaviour = self.misbehaviours.take(*TOKEN_MISBEHAVIOURS)
        unknown_kid = self.faults.take(PscFaultKind.UNKNOWN_KID)
        if misbehaviour is not None:
            meta["misbehaviour"] = record.misbehaviour = misbehaviour.kind.value
            if misbehaviour.kind is PscMisbehaviourKind.LOW_ACR:
                meta["inferred"] = f"acr {LOW_ACR}: a lower eIDAS level the PSC sources do not name"
        if unknown_kid is not None:
            meta["fault"] = record.fault = unknown_kid.kind.value
        access = self.keys.sign(self._access_claims(client, session, now))
        id_token = self._id_token(client, session, now, misbehaviour.kind if misbehaviour else None, unknown_kid)
        refresh = _Refresh(secrets.token_urlsafe(32), session, client.client_id, session.scope, now + REFRESH_TOKEN_S)
        _keep(self._refresh, refresh.token, refresh)
        record.issued = True
        body = {
            "access_token": access,
            "expires_in": ACCESS_TOKEN_S,
            "refresh_expires_in": REFRESH_TOKEN_S,
            "refresh_token": refresh.token,
            "token_type": "Bearer",
            "id_token": id_token,
            "not-before-policy": 0,
            "session_state": session.sid,
            "scope": session.scope,
        }
        return HttpAnswer(200, json_body(body), headers=list(NO_STORE), meta=meta)

    def _access_claims(self, client: ClientRegistration, session: _Session, now: int) -> dict[str, Any]:
        professional = session.professional
        return {
            "exp": now + ACCESS_TOKEN_S,
            "iat": now,
            "auth_time": session.auth_time,
            "jti": str(uuid.uuid4()),
            "iss": self.issuer(),
            "aud": client.client_id,
            "sub": professional.sub,
            "typ": "Bearer",
            "azp": client.client_id,
            "sid": session.sid,
            "acr": ACR,
            "scope": session.scope,
            "SubjectNameID": professional.subject_name_id,
            "preferred_username": professional.claims.get("preferred_username", professional.subject_name_id),
        }

    def _id_token(
        self,
        client: ClientRegistration,
        session: _Session,
        now: int,
        misbehaviour: PscMisbehaviourKind | None,
        unknown_kid: object | None,
    ) -> str:
        professional = session.professional
        claims: dict[str, Any] = {
            "exp": now + ID_TOKEN_S,
            "iat": now,
            "auth_time": session.auth_time,
            "jti": str(uuid.uuid4()),
            "iss": self.issuer(),
            "aud": client.client_id,
            "sub": professional.sub,
            "typ": "ID",
            "azp": client.client_id,
            "sid": session.sid,
            "acr": ACR,
            "SubjectNameID": professional.subject_name_id,
            "preferred_username": professional.claims.get("preferred_username", professional.subject_name_id),
            "given_name": professional.given_name,
            "family_name": professional.family_name,
        }
        if session.nonce:
            claims["nonce"] = session.nonce
        kind = PscMisbehaviourKind
        if misbehaviour is kind.WRONG_ISSUER:
            claims["iss"] = self.issuer().replace(f"/realms/{REALM}", "/realms/autre-realm")
        elif misbehaviour is kind.WRONG_AUDIENCE:
            claims["aud"] = claims["azp"] = "client-inconnu"
        elif misbehaviour is kind.EXPIRED:
            claims["iat"], claims["exp"] = now - 2 * ID_TOKEN_S, now - ID_TOKEN_S
            claims["auth_time"] = min(session.auth_time, now - 2 * ID_TOKEN_S)
        elif misbehaviour is kind.NONCE_MISMATCH:
            claims["nonce"] = secrets.token_hex(16)
        elif misbehaviour is kind.LOW_ACR:
            claims["acr"] = LOW_ACR
        signer = (
            {kind.BAD_SIGNATURE: "rogue", kind.ALG_NONE: "none"}.get(misbehaviour, "good") if misbehaviour else "good"
        )
        kid = f"kid-inconnu-{secrets.token_hex(4)}" if unknown_kid is not None else None
        return self.keys.sign(claims, signer=signer, kid=kid)

    # -- CIBA ------------------------------------------------------------------------------------
    def _ciba_auth(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        params, repeated = parameters(request, query=False, form=True)
        auth = self._authenticate(request, params)
        record = CibaRequestRecord(
            seq=self.records.next_seq(),
            received=_now_utc(),
            client_id=auth.client_id,
            login_hint=params.get("login_hint", ""),
            scope=params.get("scope", ""),
            acr_values=params.get("acr_values", ""),
            binding_message=params.get("binding_message", ""),
        )
        self.records.add("ciba", record)
        meta["client_id"] = auth.client_id or None
        meta["record"] = {"kind": "ciba", "seq": record.seq}
        try:
            if not auth.ok:
                record.findings.append(_finding("psc.client-auth", auth.problem, "Authorization"))
                raise self._auth_refusal(auth)
            assert auth.client is not None
            if record.acr_values.split() != [ACR]:
                record.findings.append(
                    _finding(
                        "psc.acr-values", f"acr_values {record.acr_values[:100]!r}: {ACR} est attendu", "acr_values"
                    )
                )
            if repeated:
                raise OAuthError(400, "invalid_request", f"paramètre répété: {repeated[0][:64]}")
            if "openid" not in record.scope.split():
                record.findings.append(_finding("psc.scope", "le scope ne contient pas openid", "scope"))
                raise OAuthError(400, "invalid_scope", "le scope doit contenir openid")
            if not record.login_hint:
                raise OAuthError(400, "invalid_request", "login_hint (SubjectNameID) absent")
            professional = self.professionals.get(record.login_hint)
            if professional is None:
                raise OAuthError(400, "unknown_user_id", f"professionnel {record.login_hint[:32]!r} inconnu")
        except OAuthError as refused:
            record.error = refused.code
            raise
        now = self.clock()
        ciba = _Ciba(
            auth_req_id=secrets.token_urlsafe(32),
            client_id=auth.client.client_id,
            professional=professional,
            scope=record.scope,
            created=now,
            expires=now + self.ciba_expires_in_s,
            interval=self.ciba_interval_s,
            record=record,
        )
        record.auth_req_id, record.status = ciba.auth_req_id, "pending"
        _keep(self._ciba, ciba.auth_req_id, ciba)
        body = {"auth_req_id": ciba.auth_req_id, "expires_in": self.ciba_expires_in_s, "interval": self.ciba_interval_s}
        return HttpAnswer(200, json_body(body), headers=list(NO_STORE), meta=meta)

    def _ciba_grant(
        self, client: ClientRegistration, params: Mapping[str, str], record: TokenRequestRecord, meta: dict[str, Any]
    ) -> HttpAnswer:
        ciba = self._ciba.get(params.get("auth_req_id", ""))
        if ciba is None or ciba.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "auth_req_id inconnu")
        record.subject_name_id = ciba.professional.subject_name_id
        try:
            answer = self._ciba_poll(client, ciba, record, meta)
        except OAuthError as refused:
            ciba.record.polls.append(refused.code)
            raise
        ciba.record.polls.append("tokens")
        return answer

    def _ciba_poll(
        self, client: ClientRegistration, ciba: _Ciba, record: TokenRequestRecord, meta: dict[str, Any]
    ) -> HttpAnswer:
        now = self.clock()
        since = now - (ciba.last_poll if ciba.last_poll is not None else ciba.created)
        ciba.last_poll = now
        if ciba.status == "issued":
            raise OAuthError(400, "invalid_grant", "auth_req_id déjà échangé")
        if now > ciba.expires:
            ciba.status = ciba.record.status = "expired"
            raise OAuthError(400, "expired_token", "demande CIBA expirée")
        if ciba.status == "denied":
            raise OAuthError(400, "access_denied", "le professionnel a refusé")
        if ciba.status == "pending" and since < ciba.interval:
            ciba.interval += SLOW_DOWN_S
            raise OAuthError(400, "slow_down", f"interroger au plus toutes les {ciba.interval:g} s")
        if ciba.status == "pending" and self.auto_approve_ciba:
            ciba.status = ciba.record.status = "approved"
        if ciba.status == "pending":
            raise OAuthError(400, "authorization_pending", "en attente du professionnel")
        session = self._new_session(ciba.professional, client.client_id, None, ciba.scope)
        ciba.status = ciba.record.status = "issued"
        self.records.changed()
        return self._tokens(client, session, record, meta)

    # -- userinfo and introspection --------------------------------------------------------------
    def _bearer(self, token: str) -> tuple[dict[str, Any], _Session] | None:
        """The claims and session of a valid access token this simulator issued, or None."""
        claims = self.keys.verify(token)
        if claims is None or claims.get("typ") != "Bearer" or claims.get("iss") != self.issuer():
            return None
        session = self._sessions.get(str(claims.get("sid", "")))
        exp = claims.get("exp")
        if session is None or session.ended or not isinstance(exp, int) or exp <= self.clock():
            return None
        return claims, session

    def _userinfo(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        record = UserinfoRequestRecord(self.records.next_seq(), _now_utc(), request.method, token_valid=False)
        self.records.add("userinfo", record)
        meta["record"] = {"kind": "userinfo", "seq": record.seq}
        header = request.headers.get("Authorization", "")
        challenge = f'Bearer realm="{REALM}"'
        try:
            if header[:7].lower() != "bearer ":
                raise OAuthError(401, "invalid_request", "jeton d'accès absent (Authorization: Bearer)", [])
            found = self._bearer(header[7:].strip())
            if found is None:
                raise OAuthError(401, "invalid_token", "jeton d'accès invalide, expiré ou révoqué")
        except OAuthError as refused:
            record.status, record.error = refused.status, refused.code
            extra = f', error="{refused.code}"' if refused.code == "invalid_token" else ""
            refused.headers.append(("WWW-Authenticate", challenge + extra))
            raise
        claims, session = found
        record.token_valid = True
        record.client_id = meta["client_id"] = str(claims.get("azp", ""))
        record.subject_name_id = session.professional.subject_name_id
        userinfo = session.professional.userinfo()
        if self.misbehaviours.take(PscMisbehaviourKind.USERINFO_SUB_MISMATCH) is not None:
            meta["misbehaviour"] = record.misbehaviour = PscMisbehaviourKind.USERINFO_SUB_MISMATCH.value
            userinfo["sub"] = f"f:{uuid.uuid4()}:{session.professional.subject_name_id}"
        record.status = 200
        fault = self.faults.take(PscFaultKind.HUGE_USERINFO, PscFaultKind.NON_JSON_USERINFO)
        if fault is not None:
            meta["fault"] = record.fault = fault.kind.value
        if fault is not None and fault.kind is PscFaultKind.NON_JSON_USERINFO:
            return HttpAnswer(
                200, page("Maintenance", "<p>Service momentanément indisponible.</p>"), JSON_TYPE, meta=meta
            )
        if fault is not None:
            # random, not "xxx…": a run's evidence pack keeps this answer, and the pack's verifier
            # rightly refuses members that inflate like a zip bomb
            userinfo["padding"] = secrets.token_hex(HUGE_USERINFO_BYTES // 2)
        client = self.clients.get(record.client_id)
        if client is not None and client.userinfo_signed:
            record.signed = True
            userinfo.update(iss=self.issuer(), aud=client.client_id)
            return HttpAnswer(200, self.keys.sign(userinfo).encode("ascii"), "application/jwt", meta=meta)
        return HttpAnswer(200, json_body(userinfo), meta=meta)

    def _introspection(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        params, _ = parameters(request, query=False, form=True)
        auth = self._authenticate(request, params)
        record = IntrospectionRecord(
            self.records.next_seq(), _now_utc(), auth.client_id, auth.method, client_authenticated=auth.ok
        )
        self.records.add("introspection", record)
        meta["client_id"] = auth.client_id or None
        meta["record"] = {"kind": "introspection", "seq": record.seq}
        if not auth.ok:
            record.findings.append(_finding("psc.client-auth", auth.problem, "Authorization"))
            record.status, record.error = 401, "invalid_client"
            raise self._auth_refusal(auth)
        token = params.get("token", "")
        if not token:
            record.status, record.error = 400, "invalid_request"
            raise OAuthError(400, "invalid_request", "paramètre token absent")
        record.status = 200
        body: dict[str, Any] = {"active": False}
        found = self._bearer(token)
        refresh = self._refresh.get(token)
        if found is not None:
            claims, session = found
            body = {
                "active": True,
                "token_type": "Bearer",
                "client_id": claims.get("azp"),
                "username": session.professional.subject_name_id,
                **{k: claims[k] for k in ("iss", "sub", "aud", "exp", "iat", "scope", "sid", "acr", "jti")},
            }
        elif refresh is not None and not refresh.session.ended and refresh.expires > self.clock():
            body = {
                "active": True,
                "token_type": "Refresh",
                "client_id": refresh.client_id,
                "username": refresh.session.professional.subject_name_id,
                "sub": refresh.session.professional.sub,
                "exp": int(refresh.expires),
                "scope": refresh.scope,
                "sid": refresh.session.sid,
            }
        record.active = bool(body["active"])
        return HttpAnswer(200, json_body(body), headers=list(NO_STORE), meta=meta)

    # -- logout ----------------------------------------------------------------------------------
    def _logout(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        try:
            params, _ = parameters(request, query=request.method == "GET", form=request.method == "POST")
        except OAuthError as bad:
            raise PageError(400, bad.description) from None
        hint = params.get("id_token_hint", "")
        claims = self.keys.verify(hint) if hint else None
        if claims is not None and (claims.get("iss") != self.issuer() or claims.get("typ") != "ID"):
            claims = None
        client_id = params.get("client_id") or str((claims or {}).get("azp", ""))
        client = self.clients.get(client_id)
        redirect_uri = params.get("post_logout_redirect_uri", "")
        registered = bool(redirect_uri) and client is not None and redirect_uri in client.post_logout_redirect_uris
        state = params.get("state", "")
        record = LogoutRecord(
            seq=self.records.next_seq(),
            received=_now_utc(),
            method=request.method,
            params=dict(params),
            client_id=client_id,
            id_token_hint_valid=claims is not None,
            post_logout_redirect_uri=redirect_uri,
            redirect_uri_registered=registered,
            state=state,
        )
        self.records.add("logout", record)
        meta["client_id"] = client_id or None
        meta["record"] = {"kind": "logout", "seq": record.seq}
        if not hint:
            record.findings.append(_finding("psc.logout.id-token-hint", "id_token_hint absent", "id_token_hint"))
        elif claims is None:
            message = "id_token_hint n'est pas un ID token émis par ce fournisseur"
            record.findings.append(_finding("psc.logout.id-token-hint", message, "id_token_hint"))
        if not redirect_uri:
            message = "post_logout_redirect_uri absente"
            record.findings.append(_finding("psc.logout.redirect-uri", message, "post_logout_redirect_uri"))
        elif not registered:
            message = f"post_logout_redirect_uri {redirect_uri[:300]!r} non enregistrée pour le client"
            record.findings.append(_finding("psc.logout.redirect-uri", message, "post_logout_redirect_uri"))
        if not state:
            record.findings.append(_finding("psc.logout.state", "state absent de la demande de déconnexion", "state"))
        session = self._sessions.get(str(claims.get("sid", ""))) if claims is not None else None
        if session is not None and not session.ended:
            session.ended = record.session_ended = True
            record.subject_name_id = session.professional.subject_name_id
        if redirect_uri and not registered:
            record.status = 400
            raise PageError(400, "post_logout_redirect_uri non enregistrée: déconnexion faite, pas de retour")
        if registered:
            record.status = 302
            return self._redirect(redirect_uri, {"state": state or None}, meta)
        record.status = 200
        return HttpAnswer(
            200, page("Déconnexion", "<p>Vous êtes déconnecté de Pro Santé Connect.</p>"), HTML_TYPE, meta=meta
        )


def _pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636 §4.6: the verifier, hashed as ``method`` says, is the challenge."""
    if not _VERIFIER.fullmatch(verifier):
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        computed = verifier
    return hmac.compare_digest(computed, challenge)
