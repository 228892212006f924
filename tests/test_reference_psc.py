"""The reference system's Pro Santé Connect side: the login it asks for, the tokens it accepts, what a session does.

The practice talks to a small OpenID Connect provider written here (HTTPS with the test
PKI's server certificate, tokens signed with joserfc, PSC's paths), not to the PSC
simulator: each knob of the stub breaks one thing a provider or an attacker could, and
the practice must refuse it with a reason, unless the defect that stops checking it is
on. Logout, account linking, password login, CIBA, the PSC token on INSi and DMP calls,
and the bounds (a hanging token endpoint, a malformed JWKS, a huge userinfo) follow. A
last group drives the running reference system through the HTTP adapter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from lxml import etree
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from harness.pki import TestPki
from harness.reference import DEFAULT_PROFILES
from harness.reference.accounts import LoginFailed, LoginTaken, verify_password
from harness.reference.dmp import DmpService
from harness.reference.documents import DocumentService
from harness.reference.identity import Conflict, IdentityService
from harness.reference.launcher import start_reference
from harness.reference.model import Ins, InvalidInput, Patient, Status, Traits
from harness.reference.psc import PscRejected, PscService
from harness.reference.psc_client import PscEndpoint, PscTransport, PscUnavailable
from harness.reference.settings import Clock, EndpointSettings
from harness.reference.soap import LpsIdentity
from harness.reference.store import Store
from harness.sut.base import SutError, SutRefused
from harness.sut.http import HttpSut
from harness.sut.model import EndpointConfig, PscClient, PscLogin, PscLogout, PscSession
from harness.sut.model import PscEndpoint as PscConfig
from harness.sut.python import PythonSut
from tests.dmp_stub import NS, DmpStub

BASE = "http://127.0.0.1:8765"
"""Where the in-process practice says its control API is (never contacted: the tests carry the callback)."""
CLIENT_ID, CLIENT_SECRET = "cabinet-temoin", "s3cret:with/odd+chars"
REALM = "/auth/realms/esante-wallet"
OIDC = f"{REALM}/protocol/openid-connect"


@dataclass(frozen=True)
class Professional:
    sub: str
    subject_name_id: str
    family: str
    given: str


CAMILLE = Professional("f:0001-camille", "899700218896", "TEMOIN", "CAMILLE")
SOPHIE = Professional("f:0002-sophie", "810000000001", "MARTIN", "SOPHIE")
MATRICULE, INS_OID = "279035121518989", "1.2.250.1.213.1.4.10"
TRAITS = Traits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28", "63220")


# -- the provider stub ---------------------------------------------------------------------------------
@dataclass
class Grant:
    professional: Professional
    redirect_uri: str = ""
    nonce: str | None = None
    challenge: str = ""


@dataclass
class Seen:
    """What the stub received, per endpoint."""

    authorizations: list[dict[str, str]] = field(default_factory=list)
    tokens: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    """(headers, form) of each token request."""
    userinfo: list[dict[str, str]] = field(default_factory=list)
    ciba: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)


class ProviderStub:
    """An OpenID Connect provider on 127.0.0.1 over HTTPS, with knobs that break one thing each."""

    def __init__(self, pki: TestPki) -> None:
        self.pki = pki
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
        self.other_rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})
        self._server: BaseWSGIServer | None = None
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.seen = Seen()
        self.user = CAMILLE
        self.known = {p.subject_name_id: p for p in (CAMILLE, SOPHIE)}
        self.alg = "RS256"
        """RS256, ES256, HS256 (with the client secret) or none."""
        self.forge = ""
        """bad-signature (another key, same kid), unknown-kid or no-kid."""
        self.id_claims: dict[str, Any] = {}
        """Overrides of the ID token's claims (None removes one)."""
        self.userinfo_format = "json"
        self.userinfo_claims: dict[str, Any] = {}
        self.userinfo_padding = 0
        self.jwks: Any = None
        """A JWKS to serve instead of the real one (malformed ones)."""
        self.token_delay = 0.0
        self.ciba_script: list[str] = []
        """What each CIBA poll answers in turn (pending, slow_down, denied); then the tokens."""
        self.ciba_expires_in = 30
        self.codes: dict[str, Grant] = {}
        self.requests: dict[str, Grant] = {}
        self.access_tokens: dict[str, Professional] = {}

    # life cycle
    def __enter__(self) -> ProviderStub:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pki.server.chain_path), str(self.pki.server.key_path))
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, ssl_context=context)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}{REALM}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/wallet-openid-configuration"

    def config(self) -> dict[str, str]:
        return {
            "discovery_url": self.discovery_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "ca_pem": self.pki.ca_bundle_pem.decode("ascii"),
        }

    def browse(self, authorization_url: str) -> dict[str, str]:
        """The user's browser at the authorization URL: the query PSC sends it back to the practice with."""
        answer = requests.get(authorization_url, verify=str(self.pki.ca_bundle_path), allow_redirects=False, timeout=5)
        assert answer.status_code == 302, answer.text
        return dict(parse_qsl(urlsplit(answer.headers["Location"]).query))

    # tokens
    def sign(self, claims: dict[str, Any]) -> str:
        header: dict[str, Any] = {"alg": self.alg, "kid": "ec-1" if self.alg == "ES256" else "rsa-1"}
        if self.forge == "unknown-kid":
            header["kid"] = "nobody"
        if self.forge == "no-kid":
            del header["kid"]
        if self.alg == "none":
            return f"{_b64json(header)}.{_b64json(claims)}."
        key: Any = {"RS256": self.rsa, "ES256": self.ec, "HS256": OctKey.import_key(CLIENT_SECRET)}[self.alg]
        if self.forge == "bad-signature":
            key = self.other_rsa
        return jwt.encode(header, claims, key, algorithms=[self.alg])

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.professional.sub,
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "auth_time": now,
            "acr": "eidas1",
            "nonce": grant.nonce,
        }
        return self.sign(_overridden(claims, self.id_claims))

    def userinfo_body(self, professional: Professional) -> tuple[str, bytes]:
        claims: dict[str, Any] = {
            "sub": professional.sub,
            "SubjectNameID": professional.subject_name_id,
            "family_name": professional.family,
            "given_name": professional.given,
            "preferred_username": professional.subject_name_id,
            "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
        }
        claims = _overridden(claims, self.userinfo_claims)
        if self.userinfo_padding:
            claims["padding"] = "x" * self.userinfo_padding
        if self.userinfo_format == "jwt":
            return "application/jwt", self.sign({**claims, "iss": self.issuer, "aud": CLIENT_ID}).encode("ascii")
        return "application/json", json.dumps(claims).encode("utf-8")

    # WSGI
    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path.removeprefix(REALM)
        routes: dict[str, Callable[[Request], Response]] = {
            "/.well-known/wallet-openid-configuration": self._discovery,
            "/protocol/openid-connect/auth": self._authorize,
            "/protocol/openid-connect/token": self._token,
            "/protocol/openid-connect/userinfo": self._userinfo,
            "/protocol/openid-connect/certs": self._certs,
            "/protocol/openid-connect/ext/ciba/auth": self._ciba,
        }
        handler = routes.get(path)
        response = handler(request) if handler else _json_response({"error": "not_found"}, 404)
        return response(environ, start_response)

    def _discovery(self, request: Request) -> Response:
        oidc = f"{self.base}{OIDC}"
        return _json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{oidc}/auth",
                "token_endpoint": f"{oidc}/token",
                "userinfo_endpoint": f"{oidc}/userinfo",
                "jwks_uri": f"{oidc}/certs",
                "end_session_endpoint": f"{oidc}/logout",
                "backchannel_authentication_endpoint": f"{oidc}/ext/ciba/auth",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    def _authorize(self, request: Request) -> Response:
        params = dict(request.args)
        self.seen.authorizations.append(params)
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(
            self.user, params.get("redirect_uri", ""), params.get("nonce"), params.get("code_challenge", "")
        )
        back = {"code": code, **({"state": params["state"]} if "state" in params else {})}
        return Response(status=302, headers={"Location": f"{params.get('redirect_uri', '')}?{urlencode(back)}"})

    def _client_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        user, _, password = base64.b64decode(value).decode().partition(":")
        return (unquote(user), unquote(password)) == (CLIENT_ID, CLIENT_SECRET)

    def _token(self, request: Request) -> Response:
        form = dict(request.form)
        self.seen.tokens.append((dict(request.headers), form))
        if self.token_delay:
            time.sleep(self.token_delay)
        if not self._client_ok(request):
            return _json_response({"error": "invalid_client"}, 401)
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or form.get("redirect_uri") != grant.redirect_uri:
                return _json_response({"error": "invalid_grant", "error_description": "unknown code"}, 400)
            verifier = form.get("code_verifier")
            if grant.challenge and (verifier is None or _s256(verifier) != grant.challenge):
                return _json_response({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        elif form.get("grant_type") == "urn:openid:params:grant-type:ciba":
            with self._lock:
                grant = self.requests.get(form.get("auth_req_id", ""))
                step = self.ciba_script.pop(0) if self.ciba_script else "ok"
            if grant is None:
                return _json_response({"error": "invalid_grant"}, 400)
            errors = {"pending": "authorization_pending", "slow_down": "slow_down", "denied": "access_denied"}
            if step in errors:
                return _json_response({"error": errors[step]}, 400)
        else:
            return _json_response({"error": "unsupported_grant_type"}, 400)
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = grant.professional
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 120,
            "id_token": self.id_token(grant),
        }
        return _json_response(body)

    def _userinfo(self, request: Request) -> Response:
        self.seen.userinfo.append(dict(request.headers))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        professional = self.access_tokens.get(token)
        if professional is None:
            return _json_response({"error": "invalid_token"}, 401)
        content_type, body = self.userinfo_body(professional)
        return Response(body, content_type=content_type)

    def _certs(self, request: Request) -> Response:
        if self.jwks is not None:
            return _json_response(self.jwks)
        return _json_response(KeySet([self.rsa, self.ec]).as_dict(private=False))

    def _ciba(self, request: Request) -> Response:
        form = dict(request.form)
        self.seen.ciba.append((dict(request.headers), form))
        if not self._client_ok(request):
            return _json_response({"error": "invalid_client"}, 401)
        professional = self.known.get(form.get("login_hint", ""))
        if professional is None:
            return _json_response({"error": "unknown_user_id"}, 400)
        auth_req_id = secrets.token_urlsafe(16)
        self.requests[auth_req_id] = Grant(professional)
        return _json_response({"auth_req_id": auth_req_id, "expires_in": self.ciba_expires_in, "interval": 0.1})


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _b64json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _overridden(claims: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**claims, **overrides}
    return {k: v for k, v in merged.items() if v is not None}


class HeaderTap:
    """An HTTPS endpoint (client certificate required) recording each request's headers, answering 503."""

    def __init__(self, pki: TestPki) -> None:
        self.pki = pki
        self.headers: list[dict[str, str]] = []
        self._server: BaseWSGIServer | None = None

    def __enter__(self) -> HeaderTap:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pki.server.chain_path), str(self.pki.server.key_path))
        context.load_verify_locations(cafile=str(self.pki.ca_bundle_path))
        context.verify_mode = ssl.CERT_REQUIRED

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            request = Request(environ)
            request.get_data()
            self.headers.append(dict(request.headers))
            return Response("busy", status=503)(environ, start_response)

        self._server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_port}/insi"


# -- building blocks ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def module_provider(pki: TestPki) -> Iterator[ProviderStub]:
    with ProviderStub(pki) as stub:
        yield stub


@pytest.fixture
def provider(module_provider: ProviderStub) -> ProviderStub:
    module_provider.reset()
    return module_provider


Practice = Callable[..., PscService]


@pytest.fixture
def practice(tmp_path: Path, provider: ProviderStub) -> Practice:
    """A factory: the practice's PSC service (with defects), its PSC the stub."""

    def make(*defects: str, timeout_s: float = 2.0, endpoints: dict[str, Any] | None = None) -> PscService:
        store = Store(tmp_path / f"reference-{uuid.uuid4().hex}.sqlite")
        settings = EndpointSettings(store, tmp_path / uuid.uuid4().hex)
        settings.apply({"psc": provider.config(), **(endpoints or {})})
        lps = LpsIdentity("Cabinet Témoin", "test", "instance", "IDAM")
        identities = IdentityService(
            store, Clock(store), settings, lps, DEFAULT_PROFILES, frozenset(defects), call_timeout_s=timeout_s
        )
        return PscService(identities)

    return make


def authorization(psc: PscService) -> dict[str, str]:
    """The parameters of the authorization request the practice starts a login with."""
    url = psc.start_login(BASE)["authorization_url"]
    return dict(parse_qsl(urlsplit(url).query))


def login(psc: PscService, provider: ProviderStub, **callback: str) -> dict[str, Any]:
    """A whole web login (``callback`` overrides what the browser brings back); the session or PscRejected."""
    url = psc.start_login(BASE)["authorization_url"]
    back = {**provider.browse(url), **callback}
    return psc.callback(back)


def refused(psc: PscService, provider: ProviderStub, **callback: str) -> str:
    """The reason a web login is refused; the session is then empty and says that reason."""
    with pytest.raises(PscRejected) as caught:
        login(psc, provider, **callback)
    session = psc.session_json()
    assert not session["logged_in"] and session["method"] == "" and session["detail"] == str(caught.value)
    return str(caught.value)


# -- the authorization request ---------------------------------------------------------------------------
def test_the_authorization_request_carries_every_parameter(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    url = psc.start_login(BASE)["authorization_url"]
    assert url.startswith(f"{provider.issuer}/protocol/openid-connect/auth?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["response_type"] == "code" and params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == f"{BASE}/psc/callback"
    assert params["scope"] == "openid scope_all" and params["acr_values"] == "eidas1"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    for name in ("state", "nonce"):
        assert len(params[name]) >= 32 and all(c in "0123456789abcdef" for c in params[name])
    again = authorization(psc)
    assert again["state"] != params["state"] and again["nonce"] != params["nonce"]
    assert psc.client(BASE) == {
        "redirect_uri": f"{BASE}/psc/callback",
        "post_logout_redirect_uri": f"{BASE}/psc/logged-out",
    }


def test_without_a_psc_endpoint_a_login_is_a_conflict(tmp_path: Path) -> None:
    store = Store(tmp_path / "bare.sqlite")
    identities = IdentityService(
        store,
        Clock(store),
        EndpointSettings(store, tmp_path),
        LpsIdentity("x", "1", "i", "IDAM"),
        DEFAULT_PROFILES,
        frozenset(),
        1.0,
    )
    with pytest.raises(Conflict):
        PscService(identities).start_login(BASE)


# -- a full login -----------------------------------------------------------------------------------------
def test_a_full_login_exchanges_the_code_with_pkce_and_basic_auth(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    session = login(psc, provider)
    assert session == {
        "logged_in": True,
        "method": "psc",
        "user_id": session["user_id"],
        "subject_name_id": CAMILLE.subject_name_id,
        "family": CAMILLE.family,
        "given": CAMILLE.given,
        "detail": "",
    }
    [(headers, form)] = provider.seen.tokens
    assert headers["Authorization"].startswith("Basic ")
    assert form["grant_type"] == "authorization_code" and form["redirect_uri"] == f"{BASE}/psc/callback"
    assert _s256(form["code_verifier"]) == provider.seen.authorizations[0]["code_challenge"]
    assert "client_secret" not in form
    [userinfo] = provider.seen.userinfo
    assert userinfo["Authorization"].startswith("Bearer ")
    current = psc.session.psc()
    assert current is not None and userinfo["Authorization"] == f"Bearer {current.access_token}"
    [trace] = psc.store.list_traces()
    assert (trace["service"], trace["return_code"], trace["subject_name_id"]) == (
        "Pro Santé Connect",
        "ok",
        CAMILLE.subject_name_id,
    )


def test_es256_tokens_and_a_userinfo_jwt_are_accepted(practice: Practice, provider: ProviderStub) -> None:
    provider.alg, provider.userinfo_format = "ES256", "jwt"
    assert login(practice(), provider)["subject_name_id"] == CAMILLE.subject_name_id


def test_a_state_is_single_use_and_must_be_one_the_practice_gave(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    url = psc.start_login(BASE)["authorization_url"]
    back = provider.browse(url)
    psc.callback(back)
    with pytest.raises(PscRejected, match="state matches no login"):
        psc.callback(back)
    assert "state" in refused(psc, provider, state="f" * 64)
    assert "no state" in refused(psc, provider, state="")
    assert psc.store.list_traces()[-1]["return_code"] == "refused"


CASES: dict[str, tuple[Callable[[ProviderStub], None], str]] = {
    "alg none": (lambda p: setattr(p, "alg", "none"), "alg 'none'"),
    "HS256 with the client secret": (lambda p: setattr(p, "alg", "HS256"), "alg 'HS256'"),
    "another key, same kid": (lambda p: setattr(p, "forge", "bad-signature"), "signature does not verify"),
    "unknown kid": (lambda p: setattr(p, "forge", "unknown-kid"), "not in PSC's JWKS"),
    "no kid": (lambda p: setattr(p, "forge", "no-kid"), "no kid"),
    "expired": (lambda p: p.id_claims.update(exp=int(time.time()) - 600), "has expired"),
    "no exp": (lambda p: p.id_claims.update(exp=None), "lacks the claim(s) exp"),
    "issued in the future": (lambda p: p.id_claims.update(iat=int(time.time()) + 600), "iat"),
    "another issuer": (lambda p: p.id_claims.update(iss="https://evil.example"), "'iss'"),
    "another audience": (lambda p: p.id_claims.update(aud=["someone-else"]), "'aud'"),
    "another nonce": (lambda p: p.id_claims.update(nonce="0" * 64), "'nonce'"),
    "no nonce": (lambda p: p.id_claims.update(nonce=None), "nonce"),
    "acr eidas2": (lambda p: p.id_claims.update(acr="eidas2"), "'acr'"),
    "no acr": (lambda p: p.id_claims.update(acr=None), "acr"),
    "another userinfo sub": (lambda p: p.userinfo_claims.update(sub="f:someone-else"), "userinfo sub"),
    "no SubjectNameID": (lambda p: p.userinfo_claims.update(SubjectNameID=None), "SubjectNameID"),
    "userinfo JWT badly signed": (lambda p: _userinfo_forged(p), "the userinfo JWT signature"),
    "malformed JWKS": (lambda p: setattr(p, "jwks", {"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "AQAB"}]}), "JWKS"),
    "JWKS without keys": (lambda p: setattr(p, "jwks", {"keys": "none"}), "JWKS holds no keys"),
    "huge userinfo": (lambda p: setattr(p, "userinfo_padding", 2 * 1024 * 1024), "larger than 1024 KiB"),
}


def _userinfo_forged(provider: ProviderStub) -> None:
    """Only the userinfo JWT is signed with the wrong key (the ID token stays good)."""
    provider.userinfo_format = "jwt"
    original = provider.userinfo_body

    def forged(professional: Professional) -> tuple[str, bytes]:
        provider.forge = "bad-signature"
        try:
            return original(professional)
        finally:
            provider.forge = ""

    provider.userinfo_body = forged  # type: ignore[method-assign]


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_answer_is_refused_with_its_reason(practice: Practice, provider: ProviderStub, case: str) -> None:
    psc = practice()
    login(psc, provider)  # a session before: a refused login ends it
    provider.seen = Seen()
    breaks, reason = CASES[case]
    breaks(provider)
    assert reason in refused(psc, provider)


def test_the_providers_errors_are_refusals_with_their_reason(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    assert "access_denied" in refused(psc, provider, error="access_denied", error_description="user said no")
    assert "invalid_grant" in refused(psc, provider, code="not-a-code")


# -- defects ----------------------------------------------------------------------------------------------
def test_defects_on_the_authorization_request(practice: Practice, provider: ProviderStub) -> None:
    assert "nonce" not in authorization(practice("psc-no-nonce"))
    no_pkce = authorization(practice("psc-no-pkce"))
    assert "code_challenge" not in no_pkce and "code_challenge_method" not in no_pkce
    assert "acr_values" not in authorization(practice("psc-no-acr"))
    provider.id_claims["nonce"] = "forged"
    assert login(practice("psc-no-nonce"), provider)["logged_in"]  # no nonce asked, none checked
    provider.id_claims.clear()
    provider.seen = Seen()
    assert login(practice("psc-no-pkce"), provider)["logged_in"]
    assert "code_verifier" not in provider.seen.tokens[0][1]


def test_defect_psc_ignores_state(practice: Practice, provider: ProviderStub) -> None:
    assert login(practice("psc-ignores-state"), provider, state="forged")["logged_in"]


@pytest.mark.parametrize(
    ("defect", "case"),
    [
        ("psc-accepts-bad-signature", "alg none"),
        ("psc-accepts-bad-signature", "another key, same kid"),
        ("psc-accepts-bad-signature", "userinfo JWT badly signed"),
        ("psc-accepts-expired", "expired"),
        ("psc-skips-claims", "another issuer"),
        ("psc-skips-claims", "another audience"),
        ("psc-skips-claims", "another nonce"),
        ("psc-skips-claims", "acr eidas2"),
        ("psc-ignores-userinfo-sub", "another userinfo sub"),
    ],
)
def test_defects_that_let_a_bad_answer_through(
    practice: Practice, provider: ProviderStub, defect: str, case: str
) -> None:
    CASES[case][0](provider)
    assert login(practice(defect), provider)["logged_in"]


def test_defect_psc_no_end_session_logs_out_locally_only(practice: Practice, provider: ProviderStub) -> None:
    psc = practice("psc-no-end-session")
    login(psc, provider)
    assert psc.logout(BASE) == {"end_session_url": ""}
    assert not psc.session_json()["logged_in"]


# -- logout -----------------------------------------------------------------------------------------------
def test_logout_ends_the_session_and_sends_the_browser_to_psc(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    login(psc, provider)
    current = psc.session.psc()
    assert current is not None
    url = psc.logout(BASE)["end_session_url"]
    assert not psc.session_json()["logged_in"]
    assert url.startswith(f"{provider.issuer}/protocol/openid-connect/logout?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["id_token_hint"] == current.id_token
    assert params["post_logout_redirect_uri"] == f"{BASE}/psc/logged-out" and len(params["state"]) >= 32
    assert psc.logged_out({"state": params["state"]}) == {"logged_out": True}
    with pytest.raises(PscRejected):
        psc.logged_out({"state": params["state"]})  # single use
    with pytest.raises(PscRejected):
        psc.logged_out({})
    assert psc.logout(BASE) == {"end_session_url": ""}  # nobody logged in


# -- accounts ---------------------------------------------------------------------------------------------
def test_a_psc_login_lands_on_the_account_with_that_idnps(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    user_id = psc.create_user(
        {
            "login": "camille",
            "password": "mot de passe",
            "subject_name_id": CAMILLE.subject_name_id,
            "family": "TEMOIN",
            "given": "Camille",
        }
    )["user_id"]
    assert login(psc, provider)["user_id"] == user_id
    assert psc.password_login({"login": "camille", "password": "mot de passe"})["user_id"] == user_id
    provider.user = SOPHIE
    first = login(psc, provider)["user_id"]
    assert first != user_id and login(psc, provider)["user_id"] == first  # created once, then found


def test_defect_psc_no_linking(practice: Practice, provider: ProviderStub) -> None:
    psc = practice("psc-no-linking")
    user_id = psc.create_user({"login": "c", "password": "p", "subject_name_id": CAMILLE.subject_name_id})["user_id"]
    first = login(psc, provider)["user_id"]
    assert first != user_id and login(psc, provider)["user_id"] not in (user_id, first)


def test_password_login(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    psc.create_user({"login": "camille", "password": "juste", "subject_name_id": "899700218896", "family": "TEMOIN"})
    session = psc.password_login({"login": "camille", "password": "juste"})
    assert (session["logged_in"], session["method"], session["family"]) == (True, "password", "TEMOIN")
    assert psc.logout(BASE) == {"end_session_url": ""}
    for body in ({"login": "camille", "password": "faux"}, {"login": "nobody", "password": "juste"}):
        with pytest.raises(LoginFailed):
            psc.password_login(body)
        assert psc.session_json()["detail"] == "wrong login or password"
    with pytest.raises(LoginTaken):
        psc.create_user({"login": "camille", "password": "x"})
    for bad in ({"login": "with space", "password": "x"}, {"login": "a", "password": ""}, [], {"login": "a"}):
        with pytest.raises(InvalidInput):
            psc.create_user(bad)
    stored = psc.store.find_user_by_login("camille")
    assert stored is not None and stored["password"].startswith("scrypt$") and "juste" not in json.dumps(stored)
    assert verify_password("juste", stored["password"]) and not verify_password("juste", "garbage")
    assert b"juste" not in psc.store.path.read_bytes()


def test_reset_forgets_users_and_logs_out(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    login(psc, provider)
    psc.store.wipe_test_data()
    psc.reset()
    assert not psc.session_json()["logged_in"] and psc.store.find_user_by_subject(CAMILLE.subject_name_id) is None


# -- CIBA ---------------------------------------------------------------------------------------------------
def wait_for_session(psc: PscService, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        session = psc.session_json()
        if session["logged_in"] or session["detail"]:
            return session
        time.sleep(0.05)
    raise AssertionError("no CIBA outcome in time")


def test_a_ciba_login(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    provider.ciba_script = ["pending", "pending"]
    answer = psc.start_ciba({"login_hint": SOPHIE.subject_name_id})
    session = wait_for_session(psc)
    assert (session["method"], session["subject_name_id"], session["family"]) == ("psc", "810000000001", "MARTIN")
    [(headers, form)] = provider.seen.ciba
    assert headers["Authorization"].startswith("Basic ")
    assert form == {
        "scope": "openid scope_all",
        "login_hint": SOPHIE.subject_name_id,
        "binding_message": answer["binding_message"],
        "acr_values": "eidas1",
    }
    polls = [f for _, f in provider.seen.tokens]
    assert len(polls) == 3 and {f["grant_type"] for f in polls} == {"urn:openid:params:grant-type:ciba"}
    assert psc.logout(BASE)["end_session_url"]


def test_a_ciba_login_refused_expired_or_badly_signed(practice: Practice, provider: ProviderStub) -> None:
    psc = practice()
    provider.ciba_script = ["pending", "denied"]
    psc.start_ciba({"login_hint": CAMILLE.subject_name_id})
    assert "access_denied" in wait_for_session(psc)["detail"]
    provider.ciba_script, provider.ciba_expires_in = ["pending"] * 100, 1
    psc.start_ciba({"login_hint": CAMILLE.subject_name_id})
    assert "expired" in wait_for_session(psc)["detail"]
    provider.ciba_script, provider.ciba_expires_in, provider.alg = [], 30, "none"
    psc.start_ciba({"login_hint": CAMILLE.subject_name_id})
    assert "alg 'none'" in wait_for_session(psc)["detail"]
    with pytest.raises(PscRejected, match="unknown_user_id"):
        psc.start_ciba({"login_hint": "800000000000"})
    with pytest.raises(InvalidInput):
        psc.start_ciba({"login_hint": ""})


# -- PSC for the national services' APIs ---------------------------------------------------------------------
def _insi_config(url: str, pki: TestPki) -> dict[str, str]:
    return {
        "url": url,
        "ca_pem": pki.ca_bundle_pem.decode("ascii"),
        "client_cert_pem": pki.organisation.chain_pem.decode("ascii"),
        "client_key_pem": pki.organisation.key_pem.decode("ascii"),
    }


@pytest.mark.parametrize("defect", ["", "psc-not-used-for-apis"])
def test_insi_calls_in_a_psc_session_carry_the_token(
    practice: Practice, provider: ProviderStub, pki: TestPki, defect: str
) -> None:
    with HeaderTap(pki) as tap:
        psc = practice(*([defect] if defect else []), endpoints={"insi": _insi_config(tap.url, pki)})
        patient = psc.store.create_patient(lambda pid: Patient(pid, TRAITS, Status.PROV))
        psc.identities.search(patient.id, {"mode": "traits"})  # no session: the organisation certificate alone
        login(psc, provider)
        current = psc.session.psc()
        assert current is not None
        psc.identities.search(patient.id, {"mode": "traits"})
    before, during = psc.store.list_traces()[0], psc.store.list_traces()[-1]
    assert "Authorization" not in tap.headers[0] and before["auth_mode"] == "organisation-certificate"
    if defect:
        assert "Authorization" not in tap.headers[-1] and during["auth_mode"] == "organisation-certificate"
        assert "subject_name_id" not in during
    else:
        assert tap.headers[-1]["Authorization"] == f"Bearer {current.access_token}"
        assert (during["service"], during["auth_mode"], during["subject_name_id"]) == ("INSi", "PSC", "899700218896")


def test_dmp_calls_in_a_psc_session_name_the_psc_user(practice: Practice, provider: ProviderStub, pki: TestPki) -> None:
    stub = DmpStub(pki)
    seen: list[str] = []
    original = stub._app

    def tapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(str(environ.get("HTTP_AUTHORIZATION", "")))
        return original(environ, start_response)

    stub._app = tapped  # type: ignore[method-assign]
    dmp_config = {"url": "", **_insi_config("", pki)}
    with stub:
        dmp_config["url"] = stub.url
        psc = practice(endpoints={"dmp": dmp_config})
        service = DmpService(DocumentService(psc.identities))
        ins = Ins(MATRICULE, INS_OID)
        patient = psc.store.create_patient(lambda pid: Patient(pid, TRAITS, Status.QUAL, ins, "CN"))
        first = service.documents.produce(patient.id, {"type_code": "11488-4"}).document_id
        second = service.documents.produce(patient.id, {"type_code": "11488-4"}).document_id
        assert service.validate(patient.id, first).result == "sent"
        login(psc, provider)
        current = psc.session.psc()
        assert current is not None
        assert service.validate(patient.id, second).result == "sent"
    assert seen == ["", f"Bearer {current.access_token}"]
    name_ids = [r.envelope.findtext(".//saml:Assertion/saml:Subject/saml:NameID", namespaces=NS) for r in stub.received]
    assert name_ids[1] == CAMILLE.subject_name_id and name_ids[0] != CAMILLE.subject_name_id
    subject_id = stub.received[1].assertion.find(
        "saml:AttributeStatement/saml:Attribute[@Name='urn:oasis:names:tc:xspa:1.0:subject:subject-id']/saml:AttributeValue",
        NS,
    )
    assert subject_id is not None and (subject_id.text or "").startswith("TEMOIN CAMILLE")
    traces = [t for t in psc.store.list_traces() if t["service"] == "DMP"]
    assert [t["auth_mode"] for t in traces] == ["organisation-certificate", "PSC"]
    assert traces[1]["subject_name_id"] == CAMILLE.subject_name_id
    assert etree.QName(stub.received[1].assertion).localname == "Assertion"


# -- bounds -------------------------------------------------------------------------------------------------
def test_a_hanging_token_endpoint_is_a_refusal_within_the_timeout(practice: Practice, provider: ProviderStub) -> None:
    psc = practice(timeout_s=0.5)
    provider.token_delay = 3.0
    started = time.monotonic()
    assert "within 0.5 s" in refused(psc, provider)
    assert time.monotonic() - started < 2.5


def test_an_unreachable_provider_is_unavailable(practice: Practice, provider: ProviderStub, pki: TestPki) -> None:
    closed = PscEndpoint("https://127.0.0.1:9/x", CLIENT_ID, CLIENT_SECRET, pki.ca_bundle_path)
    with pytest.raises(PscUnavailable, match="unreachable"):
        PscTransport(closed, 1.0).discovery()
    wrong_ca = PscEndpoint(provider.discovery_url, CLIENT_ID, CLIENT_SECRET, Path(requests.certs.where()))
    with pytest.raises(PscUnavailable, match="unreachable"):
        PscTransport(wrong_ca, 2.0).discovery()


# -- settings -------------------------------------------------------------------------------------------------
def test_the_psc_settings_are_checked_and_survive_a_restart(tmp_path: Path, provider: ProviderStub) -> None:
    store = Store(tmp_path / "settings.sqlite")
    settings = EndpointSettings(store, tmp_path)
    good = provider.config()
    for wrong in (
        {"psc": {**good, "discovery_url": "http://plain"}},
        {"psc": {**good, "client_id": ""}},
        {"psc": {**good, "client_secret": 3}},
        {"psc": {**good, "ca_pem": "not a pem"}},
        {"psc": "nothing"},
    ):
        with pytest.raises(InvalidInput):
            settings.apply(wrong)
    assert settings.psc() is None
    settings.apply({"psc": good})
    store.close()
    endpoint = EndpointSettings(Store(tmp_path / "settings.sqlite"), tmp_path).psc()
    assert endpoint is not None and (endpoint.discovery_url, endpoint.client_id, endpoint.client_secret) == (
        provider.discovery_url,
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert endpoint.ca_file.exists()


# -- through the control API -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="reference-psc-") as folder, start_reference(Path(folder)) as ref:
        yield ref.url


def test_login_ciba_accounts_and_logout_through_the_http_adapter(
    reference: str, provider: ProviderStub, pki: TestPki
) -> None:
    sut = HttpSut(reference, timeout_s=30)
    try:
        assert "psc" in {c.value for c in sut.describe().capabilities}
        sut.reset()
        sut.configure_endpoints(EndpointConfig(psc=PscConfig(**provider.config())))
        client = sut.psc_client()
        assert client == PscClient(f"{reference}/psc/callback", f"{reference}/psc/logged-out")
        user_id = sut.create_user("camille", "juste", CAMILLE.subject_name_id, "TEMOIN", "Camille")
        start = sut.start_psc_login()
        back = requests.get(
            start.authorization_url, verify=str(pki.ca_bundle_path), allow_redirects=False, timeout=5
        ).headers["Location"]
        assert back.startswith(client.redirect_uri)
        answer = requests.get(back, timeout=30)
        assert answer.status_code == 200, answer.text
        session = sut.psc_session()
        assert (session.logged_in, session.method, session.user_id) == (True, "psc", user_id)
        replay = requests.get(back, timeout=30)
        assert replay.status_code == 400 and "state" in replay.json()["detail"]
        assert replay.headers["Content-Type"].startswith("application/problem+json")
        assert not sut.psc_session().logged_in and "state" in sut.psc_session().detail

        assert sut.password_login("camille", "juste").user_id == user_id
        with pytest.raises(SutRefused, match="401"):
            sut.password_login("camille", "faux")

        provider.ciba_script = ["pending"]
        sut.start_psc_ciba(CAMILLE.subject_name_id)
        deadline = time.monotonic() + 10
        while not (session := sut.psc_session()).logged_in and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (session.method, session.user_id) == ("psc", user_id)

        logout = sut.psc_logout()
        state = dict(parse_qsl(urlsplit(logout.end_session_url).query))["state"]
        assert requests.get(f"{client.post_logout_redirect_uri}?state={state}", timeout=30).status_code == 200
        assert requests.get(f"{client.post_logout_redirect_uri}?state={state}", timeout=30).status_code == 400
        assert not sut.psc_session().logged_in
        assert "Pro Santé Connect" in {t.service for t in sut.traces()}
    finally:
        sut.close()


def test_the_python_adapter_checks_what_a_python_sut_returns() -> None:
    class Target:
        def psc_client(self) -> PscClient:
            return PscClient("http://x/cb", "http://x/out")

        def start_psc_login(self) -> PscLogin:
            return PscLogin("https://psc/auth?x=1")

        def start_psc_ciba(self, login_hint: str) -> None:
            return None

        def psc_session(self) -> PscSession:
            return PscSession(True, "psc", "U1", "899700218896")

        def psc_logout(self) -> object:
            return {"end_session_url": ""}

        def create_user(self, login: str, password: str, subject_name_id: str, family: str, given: str) -> str:
            return "U1"

        def password_login(self, login: str, password: str) -> PscSession:
            return PscSession(True, "password", "U1")

    sut = PythonSut(Target(), timeout_s=5)
    assert sut.psc_client().redirect_uri == "http://x/cb"
    assert sut.start_psc_login().authorization_url.startswith("https://psc/")
    sut.start_psc_ciba("899700218896")
    assert sut.psc_session().user_id == "U1" and sut.password_login("a", "b").method == "password"
    assert sut.create_user("a", "b", "899700218896", "F", "G") == "U1"
    with pytest.raises(SutError, match="PscLogout"):
        sut.psc_logout()
    assert PscLogout.from_json({"end_session_url": "https://x"}).end_session_url == "https://x"


# -- against the PSC simulator -----------------------------------------------------------------------------------
MISBEHAVIOURS = {
    "bad-signature": "signature does not verify",
    "wrong-issuer": "'iss'",
    "wrong-audience": "'aud'",
    "expired": "has expired",
    "nonce-mismatch": "'nonce'",
    "low-acr": "'acr'",
    "alg-none": "alg 'none'",
    "userinfo-sub-mismatch": "userinfo sub",
}
FAULTS = {
    "unknown-kid": "not in PSC's JWKS",
    "malformed-jwks": "JWKS",
    "huge-userinfo": "larger than",
    "non-json-userinfo": "userinfo",
}


def test_login_refusals_ciba_and_logout_with_the_psc_simulator(reference: str, pki: TestPki) -> None:
    simulators = pytest.importorskip("harness.simulators.psc")
    sut = HttpSut(reference, timeout_s=30)
    try:
        with simulators.PscSimulator(pki, ciba_interval_s=1) as psc:
            sut.reset()
            client = sut.psc_client()
            psc.register_client("cabinet-temoin", "secret", [client.redirect_uri], [client.post_logout_redirect_uri])
            config = PscConfig(psc.discovery_url, "cabinet-temoin", "secret", pki.ca_bundle_pem.decode("ascii"))
            sut.configure_endpoints(EndpointConfig(psc=config))
            who = psc.professionals[0].subject_name_id
            agent = simulators.PscUserAgent(psc)
            for kind, reason in {**MISBEHAVIOURS, **FAULTS}.items():
                if kind in MISBEHAVIOURS:
                    psc.set_misbehaviour(kind)
                else:
                    psc.set_fault(kind)
                result = agent.login(sut.start_psc_login().authorization_url, who)
                psc.clear_misbehaviour()
                psc.clear_fault()
                session = sut.psc_session()
                assert (result.status, session.logged_in) == (400, False), kind
                assert reason in session.detail, (kind, session.detail)
            result = agent.login(sut.start_psc_login().authorization_url, who)
            assert result.status == 200 and result.final_url.startswith(client.redirect_uri)
            session = sut.psc_session()
            assert (session.logged_in, session.subject_name_id) == (True, who)
            ended = agent.follow(sut.psc_logout().end_session_url)
            assert ended.status == 200 and ended.final_url.startswith(client.post_logout_redirect_uri)
            assert not sut.psc_session().logged_in and len(psc.logouts) == 1
            mark = psc.mark()
            sut.start_psc_ciba(who)
            request = psc.wait_for("ciba", after=mark)
            assert request is not None and request.acr_values == "eidas1"
            psc.approve_ciba(request.auth_req_id)
            deadline = time.monotonic() + 10
            while not (session := sut.psc_session()).logged_in and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (session.method, session.subject_name_id) == ("psc", who)
            agent.close()
            records = [*psc.authorizations, *psc.token_requests, *psc.logouts, *psc.ciba_requests]
            problems = [f"{f.rule}: {f.message}" for r in records for f in r.findings if f.severity.value == "error"]
            assert problems == []  # the simulator finds nothing wrong in what the practice sent
    finally:
        sut.close()
