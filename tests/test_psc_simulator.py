"""The Pro Santé Connect simulator, seen from an independent OIDC client (authlib) and a strict validator (PyJWT).

The login is played by :class:`PscUserAgent` up to a tiny HTTP callback server of the test
(the client's redirect URI, plain http on 127.0.0.1 as the reference system's is); the client
exchanges the code, validates the ID token against the JWKS, reads userinfo, introspects,
refreshes and logs out. Then each finding rule is made to fire by a client that breaks it, each
misbehaviour and fault is shown to be caught or bounded, CIBA is polled through, and hostile
input gets clear 4xx answers without hurting the server. Time-dependent checks advance the
simulator's clock instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from harness.pki import CPS_IDNAT_PS, TestPki
from harness.simulators.psc import (
    CIBA_GRANT,
    AuthorizationRecord,
    LogoutRecord,
    ProfessionalsError,
    PscMisbehaviourKind,
    PscSimulator,
    PscUserAgent,
    TokenRequestRecord,
    load_professionals,
)

SECRET = "secret-du-lgc-de-test"
DOCTOR = CPS_IDNAT_PS
NURSE = "899700034567"


# -- fixtures ---------------------------------------------------------------------------------------
class Callback(BaseHTTPRequestHandler):
    """The client's side: ``/callback`` and ``/bye`` say ok, ``/loop`` redirects to itself, ``/slow`` stalls."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/slow":
            time.sleep(3)
        body = b"ok"
        with contextlib.suppress(OSError):  # /slow: the agent has given up by now
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Clock:
    """Wall time plus an offset the tests advance (the simulator reads it for every time and expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("psc-pki"))


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def running(pki: TestPki, site: str, clock: Clock) -> Iterator[PscSimulator]:
    with PscSimulator(pki, clock=clock) as simulator:
        for client_id, signed in (("lgc", False), ("lgc-jwt", True)):
            simulator.register_client(
                client_id,
                SECRET,
                [f"{site}/callback", f"{site}/loop", f"{site}/slow"],
                [f"{site}/bye"],
                userinfo_signed=signed,
            )
        yield simulator


@pytest.fixture
def sim(running: PscSimulator, clock: Clock) -> Iterator[PscSimulator]:
    running.reset()
    clock.offset = 0.0
    running.auto_approve_ciba = False
    yield running
    running.reset()


@pytest.fixture
def http(pki: TestPki) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(pki.ca_bundle_path)
    yield session
    session.close()


@pytest.fixture(scope="module")
def agent(running: PscSimulator) -> Iterator[PscUserAgent]:
    user_agent = PscUserAgent(running, timeout=10)
    yield user_agent
    user_agent.close()


# -- the independent client -------------------------------------------------------------------------
class Login:
    """One authorization-code login by authlib's OAuth2Session: the session, its nonce, the tokens."""

    def __init__(
        self,
        sim: PscSimulator,
        agent: PscUserAgent,
        site: str,
        *,
        client_id: str = "lgc",
        auth_method: str = "client_secret_basic",
        professional: str = DOCTOR,
    ) -> None:
        self.sim = sim
        self.discovery = sim.discovery()
        self.client = OAuth2Session(
            client_id,
            SECRET,
            scope="openid scope_all",
            redirect_uri=f"{site}/callback",
            code_challenge_method="S256",
            token_endpoint_auth_method=auth_method,
        )
        self.client.trust_env = False
        self.client.verify = str(sim.ca_bundle_path)
        self.verifier = generate_token(64)
        self.nonce = generate_token(32)
        url, self.state = self.client.create_authorization_url(
            self.discovery["authorization_endpoint"], code_verifier=self.verifier, nonce=self.nonce, acr_values="eidas1"
        )
        self.result = agent.login(url, professional)
        assert self.result.ok, self.result.error
        self.token: dict[str, Any] = {}

    def exchange(self) -> dict[str, Any]:
        self.token = dict(
            self.client.fetch_token(
                self.discovery["token_endpoint"],
                authorization_response=self.result.final_url,
                code_verifier=self.verifier,
                state=self.state,
            )
        )
        return self.token


def ca_context(sim: PscSimulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sim.ca_bundle_path))


class NonceMismatch(Exception):
    pass


class AcrTooLow(Exception):
    pass


class UnknownKid(Exception):
    pass


def strict(
    sim: PscSimulator, id_token: str, nonce: str | None, audience: str = "lgc", leeway: float = 0
) -> dict[str, Any]:
    """A strict relying party's ID token check: JWKS key by kid, RS256 only, issuer, audience, nonce, acr."""
    keys = {
        k.key_id: k
        for k in jwt.PyJWKClient(sim.discovery()["jwks_uri"], ssl_context=ca_context(sim)).get_jwk_set().keys
    }
    header = jwt.get_unverified_header(id_token)
    if header.get("kid") is not None and header["kid"] not in keys:
        raise UnknownKid(header["kid"])
    key = keys.get(header.get("kid")) or next(iter(keys.values()))
    claims: dict[str, Any] = jwt.decode(
        id_token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=sim.issuer,
        leeway=leeway,
        options={"require": ["exp", "iat", "sub", "aud", "iss"]},
    )
    if nonce is not None and claims.get("nonce") != nonce:
        raise NonceMismatch(claims.get("nonce"))
    if claims.get("acr") != "eidas1":
        raise AcrTooLow(claims.get("acr"))
    return claims


def authorization_url(sim: PscSimulator, site: str, **overrides: str | None) -> str:
    """A hand-made authorization request, conforming unless ``overrides`` change (None drops) a parameter."""
    verifier = generate_token(64)
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "lgc",
        "redirect_uri": f"{site}/callback",
        "scope": "openid scope_all",
        "state": secrets.token_hex(16),
        "nonce": secrets.token_hex(16),
        "acr_values": "eidas1",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{sim.issuer}/protocol/openid-connect/auth?{query}"


def rules(findings: list[Any]) -> set[str]:
    return {f.rule for f in findings}


# -- discovery, the professionals ------------------------------------------------------------------
def test_discovery_at_the_psc_path_and_the_standard_one(sim: PscSimulator, http: requests.Session) -> None:
    assert sim.issuer.endswith("/auth/realms/esante-wallet") and sim.issuer.startswith("https://127.0.0.1:")
    wallet = http.get(sim.discovery_url, timeout=5).json()
    assert sim.discovery_url.endswith("/.well-known/wallet-openid-configuration")
    assert http.get(sim.standard_discovery_url, timeout=5).json() == wallet
    assert wallet["issuer"] == sim.issuer
    assert wallet["token_endpoint"] == f"{sim.issuer}/protocol/openid-connect/token"
    assert wallet["backchannel_authentication_endpoint"].endswith("/protocol/openid-connect/ext/ciba/auth")
    assert CIBA_GRANT in wallet["grant_types_supported"] and wallet["acr_values_supported"] == ["eidas1"]
    jwks = http.get(wallet["jwks_uri"], timeout=5).json()
    assert [k["kty"] for k in jwks["keys"]] == ["RSA"] and "d" not in jwks["keys"][0]
    assert sim.recorder.all()[0].simulator == "psc" and sim.recorder.all()[0].action == "discovery"


def test_the_professionals_file_is_checked_and_holds_the_pki_doctor(tmp_path: Path) -> None:
    professionals = load_professionals()
    doctor = next(p for p in professionals if p.subject_name_id == CPS_IDNAT_PS)
    assert (doctor.given_name, doctor.family_name) == ("JEAN", "TESTEUR")
    for professional in professionals:
        claims = professional.userinfo()
        assert claims["SubjectRefPro"]["exercices"][0]["activities"]
        assert {"SubjectRole", "Secteur_Activite", "Palier_Authentification", "otherIds", "PSI_Locale"} <= set(claims)
    data = json.loads((Path(__file__).parents[1] / "fixtures/psc/professionals.json").read_text(encoding="utf-8"))
    del data["professionals"][1]["SubjectOrganization"]
    broken = tmp_path / "professionals.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfessionalsError, match=r"professional #2 \(899700023456\).*SubjectOrganization"):
        load_professionals(broken)
    data["professionals"][1]["SubjectOrganization"] = "X"
    data["professionals"][1]["SubjectNameID"] = "12345"
    broken.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfessionalsError, match=r"#2 .*8 followed by 11 digits"):
        load_professionals(broken)


# -- a conforming login, end to end ------------------------------------------------------------------
def test_an_independent_client_logs_in_validates_reads_introspects_refreshes_and_logs_out(
    sim: PscSimulator, agent: PscUserAgent, site: str, pki: TestPki
) -> None:
    mark = sim.mark()
    login = Login(sim, agent, site)
    assert login.result.final_url.startswith(f"{site}/callback?") and login.result.body == b"ok"
    assert [hop.status for hop in login.result.hops] == [200, 302, 200]
    query = login.result.query
    assert query["state"] == login.state and query["iss"] == sim.issuer
    assert sim.wait_for_login(after=mark) is not None
    token = login.exchange()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300 and token["refresh_expires_in"] == 1800

    jwks = jwt.PyJWKClient(login.discovery["jwks_uri"], ssl_context=ca_context(sim))
    key = jwks.get_signing_key_from_jwt(token["id_token"])
    claims = jwt.decode(token["id_token"], key.key, algorithms=["RS256"], audience="lgc", issuer=sim.issuer)
    assert claims["nonce"] == login.nonce and claims["acr"] == "eidas1" and claims["azp"] == "lgc"
    assert claims["SubjectNameID"] == DOCTOR and claims["family_name"] == "TESTEUR"
    assert claims["exp"] - claims["iat"] == 300 and claims["auth_time"] <= claims["iat"]

    userinfo = login.client.get(login.discovery["userinfo_endpoint"], timeout=5)
    assert userinfo.headers["Content-Type"].startswith("application/json")
    assert userinfo.json()["sub"] == claims["sub"] and userinfo.json()["SubjectNameID"] == DOCTOR

    introspected = login.client.introspect_token(login.discovery["introspection_endpoint"], token=token["access_token"])
    assert introspected.json()["active"] is True and introspected.json()["sub"] == claims["sub"]

    refreshed = login.client.refresh_token(login.discovery["token_endpoint"], refresh_token=token["refresh_token"])
    assert strict(sim, refreshed["id_token"], login.nonce)["sid"] == claims["sid"]

    end_session = (
        login.discovery["end_session_endpoint"]
        + "?"
        + urlencode(
            {
                "id_token_hint": token["id_token"],
                "post_logout_redirect_uri": f"{site}/bye",
                "state": "etat-de-deconnexion",
            }
        )
    )
    out = agent.follow(end_session)
    assert out.ok and out.final_url == f"{site}/bye?state=etat-de-deconnexion" and out.body == b"ok"
    logout = sim.logouts[-1]
    assert logout.session_ended and logout.findings == [] and logout.subject_name_id == DOCTOR

    assert login.client.get(login.discovery["userinfo_endpoint"], timeout=5).status_code == 401
    gone = login.client.introspect_token(login.discovery["introspection_endpoint"], token=token["access_token"])
    assert gone.json() == {"active": False}
    again = login.client.post(
        login.discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=("lgc", SECRET),
        timeout=5,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    assert all(r.findings == [] for r in sim.authorizations), [r.findings for r in sim.authorizations]
    assert all(r.findings == [] for r in sim.token_requests)
    first = sim.token_requests[0]
    assert (first.grant_type, first.client_auth, first.pkce_verified) == (
        "authorization_code",
        "client_secret_basic",
        True,
    )
    exchanges = sim.recorder.all()
    assert {e.action for e in exchanges} >= {
        "authorization",
        "login",
        "token",
        "jwks",
        "userinfo",
        "introspection",
        "logout",
    }
    assert all(e.simulator == "psc" and e.tls.get("version") for e in exchanges)


def test_client_secret_post_and_a_signed_userinfo(sim: PscSimulator, agent: PscUserAgent, site: str) -> None:
    login = Login(sim, agent, site, client_id="lgc-jwt", auth_method="client_secret_post", professional=NURSE)
    token = login.exchange()
    assert sim.token_requests[-1].client_auth == "client_secret_post"
    answer = login.client.get(login.discovery["userinfo_endpoint"], timeout=5)
    assert answer.headers["Content-Type"] == "application/jwt"
    key = jwt.PyJWKClient(login.discovery["jwks_uri"], ssl_context=ca_context(sim)).get_signing_key_from_jwt(
        answer.text
    )
    claims = jwt.decode(answer.text, key.key, algorithms=["RS256"], audience="lgc-jwt", issuer=sim.issuer)
    assert (
        claims["SubjectNameID"] == NURSE
        and claims["sub"] == strict(sim, token["id_token"], login.nonce, "lgc-jwt")["sub"]
    )
    assert sim.userinfo_requests[-1].signed is True


def test_the_professional_refuses_and_the_client_gets_access_denied(
    sim: PscSimulator, agent: PscUserAgent, site: str
) -> None:
    result = agent.deny(authorization_url(sim, site, state="s" * 20))
    assert result.ok and result.query["error"] == "access_denied" and result.query["state"] == "s" * 20
    assert sim.authorizations[-1].outcome == "denied"


# -- findings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "rule", "redirected_error"),
    [
        ({"state": None}, "psc.state", None),
        ({"state": "court"}, "psc.state", None),
        ({"nonce": None}, "psc.nonce", None),
        ({"code_challenge": None, "code_challenge_method": None}, "psc.pkce", None),
        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "psc.pkce", None),
        ({"acr_values": None}, "psc.acr-values", None),
        ({"acr_values": "eidas2"}, "psc.acr-values", None),
        ({"scope": "scope_all"}, "psc.scope", "invalid_scope"),
        ({"response_type": "token"}, "psc.response-type", "unsupported_response_type"),
    ],
)
def test_each_authorization_rule_fires_when_the_client_breaks_it(
    sim: PscSimulator,
    agent: PscUserAgent,
    site: str,
    overrides: dict[str, str | None],
    rule: str,
    redirected_error: str | None,
) -> None:
    result = agent.login(authorization_url(sim, site, **overrides), DOCTOR, stop_at=f"{site}/callback")
    record = sim.authorizations[-1]
    assert rule in rules(record.findings), record.findings
    assert all(f.source == "psc" and f.severity.value == "error" for f in record.findings)
    if redirected_error is None:
        assert record.outcome == "code-issued" and "code" in result.query
    else:
        assert result.query["error"] == redirected_error and record.outcome == f"error:{redirected_error}"


def test_a_conforming_request_has_no_finding_and_a_reused_nonce_has_one(
    sim: PscSimulator, agent: PscUserAgent, site: str
) -> None:
    agent.login(authorization_url(sim, site, nonce="n" * 32), DOCTOR, stop_at=f"{site}/callback")
    assert sim.authorizations[-1].findings == []
    agent.login(authorization_url(sim, site, nonce="n" * 32), DOCTOR, stop_at=f"{site}/callback")
    assert rules(sim.authorizations[-1].findings) == {"psc.nonce"}


def test_an_unregistered_redirect_uri_gets_a_page_not_a_redirect(
    sim: PscSimulator, agent: PscUserAgent, site: str
) -> None:
    result = agent.login(authorization_url(sim, site, redirect_uri="https://evil.example/<b>cb</b>"), DOCTOR)
    assert result.status == 400 and b"non enregistr" in result.body and not result.ok
    assert b"<b>cb" not in result.body and b"&lt;b&gt;cb" in result.body, "the page escapes what it echoes"
    assert [hop.url.split("?")[0].rsplit("/", 1)[-1] for hop in result.hops] == ["auth"]
    record = sim.authorizations[-1]
    assert rules(record.findings) == {"psc.redirect-uri"} and not record.redirect_uri_registered
    unknown = agent.login(authorization_url(sim, site, client_id="inconnu"), DOCTOR)
    assert unknown.status == 400 and rules(sim.authorizations[-1].findings) == {"psc.client-id"}


def _code(sim: PscSimulator, agent: PscUserAgent, site: str, verifier: str) -> str:
    url = authorization_url(sim, site, code_challenge=create_s256_code_challenge(verifier))
    return agent.login(url, DOCTOR, stop_at=f"{site}/callback").query["code"]


def _token(http: requests.Session, sim: PscSimulator, data: dict[str, str], **kwargs: Any) -> requests.Response:
    return http.post(f"{sim.issuer}/protocol/openid-connect/token", data=data, timeout=5, **kwargs)


def test_token_rules_client_auth_pkce_verifier_and_reused_code(
    sim: PscSimulator, agent: PscUserAgent, site: str, http: requests.Session, clock: Clock
) -> None:
    verifier = generate_token(64)
    grant = {"grant_type": "authorization_code", "redirect_uri": f"{site}/callback", "code_verifier": verifier}

    wrong_secret = _token(http, sim, {**grant, "code": _code(sim, agent, site, verifier)}, auth=("lgc", "faux"))
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    assert wrong_secret.headers["WWW-Authenticate"].startswith("Basic")
    nobody = _token(http, sim, {**grant, "client_id": "lgc", "code": _code(sim, agent, site, verifier)})
    both = _token(http, sim, {**grant, "client_secret": SECRET, "code": "x"}, auth=("lgc", SECRET))
    assert nobody.status_code == both.status_code == 401
    assert [r.client_auth for r in sim.token_requests] == ["client_secret_basic", "none", "several"]
    assert all(rules(r.findings) == {"psc.client-auth"} for r in sim.token_requests)

    wrong = _token(
        http, sim, {**grant, "code": _code(sim, agent, site, verifier), "code_verifier": "b" * 43}, auth=("lgc", SECRET)
    )
    absent = {k: v for k, v in grant.items() if k != "code_verifier"}
    missing = _token(http, sim, {**absent, "code": _code(sim, agent, site, verifier)}, auth=("lgc", SECRET))
    assert wrong.json()["error"] == missing.json()["error"] == "invalid_grant"
    assert [(r.pkce_verified, rules(r.findings)) for r in sim.token_requests[-2:]] == [
        (False, {"psc.pkce.verifier"}),
        (False, {"psc.pkce.verifier"}),
    ]

    code = _code(sim, agent, site, verifier)
    first = _token(http, sim, {**grant, "code": code}, auth=("lgc", SECRET))
    assert first.status_code == 200 and sim.token_requests[-1].findings == []
    second = _token(http, sim, {**grant, "code": code}, auth=("lgc", SECRET))
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert rules(sim.token_requests[-1].findings) == {"psc.code.reused"}
    refreshed = _token(
        http, sim, {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}, auth=("lgc", SECRET)
    )
    assert refreshed.status_code == 400, "what the reused code gave is revoked"

    late = _code(sim, agent, site, verifier)
    clock.advance(61)
    expired = _token(http, sim, {**grant, "code": late}, auth=("lgc", SECRET))
    assert expired.status_code == 400 and "expir" in expired.json()["error_description"]


def test_logout_rules(sim: PscSimulator, agent: PscUserAgent, site: str) -> None:
    login = Login(sim, agent, site)
    token = login.exchange()
    end_session = login.discovery["end_session_endpoint"]
    no_hint = agent.follow(end_session + "?" + urlencode({"post_logout_redirect_uri": f"{site}/bye", "state": "x"}))
    assert no_hint.status == 400 and no_hint.hops[-1].location == ""  # no client known: a page, no redirect
    bad_uri = agent.follow(
        end_session
        + "?"
        + urlencode(
            {"id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example/", "state": "x"}
        )
    )
    no_state = agent.follow(
        end_session + "?" + urlencode({"id_token_hint": token["id_token"], "post_logout_redirect_uri": f"{site}/bye"})
    )
    assert bad_uri.status == 400 and no_state.final_url == f"{site}/bye"
    found = [rules(r.findings) for r in sim.logouts]
    assert found == [
        {"psc.logout.id-token-hint", "psc.logout.redirect-uri"},
        {"psc.logout.redirect-uri"},
        {"psc.logout.state"},
    ]
    assert [r.session_ended for r in sim.logouts] == [False, True, False]


# -- misbehaviours and faults ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "rejected_by"),
    [
        ("bad-signature", jwt.InvalidSignatureError),
        ("wrong-issuer", jwt.InvalidIssuerError),
        ("wrong-audience", jwt.InvalidAudienceError),
        ("expired", jwt.ExpiredSignatureError),
        ("nonce-mismatch", NonceMismatch),
        ("low-acr", AcrTooLow),
        ("alg-none", jwt.InvalidAlgorithmError),
    ],
)
def test_each_misbehaviour_makes_a_token_a_strict_validator_rejects_for_its_reason(
    sim: PscSimulator, agent: PscUserAgent, site: str, kind: str, rejected_by: type[Exception]
) -> None:
    sim.set_misbehaviour(kind, count=1)
    login = Login(sim, agent, site)
    token = login.exchange()
    with pytest.raises(rejected_by):
        strict(sim, token["id_token"], login.nonce)
    assert sim.token_requests[-1].misbehaviour == kind
    assert [e.meta["misbehaviour"] for e in sim.recorder.all() if e.action == "token"] == [kind]
    assert sim.misbehaviour is None, "count=1 lasts one token answer"
    good = login.client.refresh_token(login.discovery["token_endpoint"], refresh_token=token["refresh_token"])
    assert strict(sim, good["id_token"], login.nonce)["acr"] == "eidas1"
    assert login.client.get(login.discovery["userinfo_endpoint"], timeout=5).status_code == 200


def test_userinfo_sub_mismatch(sim: PscSimulator, agent: PscUserAgent, site: str) -> None:
    sim.set_misbehaviour(PscMisbehaviourKind.USERINFO_SUB_MISMATCH)
    login = Login(sim, agent, site)
    token = login.exchange()
    claims = strict(sim, token["id_token"], login.nonce)
    userinfo = login.client.get(login.discovery["userinfo_endpoint"], timeout=5).json()
    assert userinfo["sub"] != claims["sub"] and userinfo["SubjectNameID"] == claims["SubjectNameID"]
    assert sim.userinfo_requests[-1].misbehaviour == "userinfo-sub-mismatch"


def test_faults_on_the_jwks_the_kid_and_userinfo_are_recorded(
    sim: PscSimulator, agent: PscUserAgent, site: str, http: requests.Session
) -> None:
    login = Login(sim, agent, site)
    sim.set_fault("unknown-kid", count=1)
    token = login.exchange()
    with pytest.raises(UnknownKid):
        strict(sim, token["id_token"], login.nonce)
    with pytest.raises(jwt.PyJWKClientError):
        jwt.PyJWKClient(login.discovery["jwks_uri"], ssl_context=ca_context(sim)).get_signing_key_from_jwt(
            token["id_token"]
        )

    sim.set_fault("malformed-jwks", count=1)
    with pytest.raises(ValueError, match="Expecting value"):  # PyJWT lets the JSON error through
        jwt.PyJWKClient(login.discovery["jwks_uri"], ssl_context=ca_context(sim)).get_jwk_set()

    sim.set_fault("huge-userinfo", count=1)
    huge = login.client.get(login.discovery["userinfo_endpoint"], timeout=10)
    assert huge.status_code == 200 and len(huge.content) > 4_000_000 and huge.json()["SubjectNameID"] == DOCTOR
    # the run's evidence pack keeps this answer and refuses members inflating like a zip bomb (over 250:1)
    assert len(huge.content) / len(zlib.compress(huge.content)) < 4
    sim.set_fault("non-json-userinfo", count=1)
    garbage = login.client.get(login.discovery["userinfo_endpoint"], timeout=5)
    assert garbage.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        garbage.json()
    faults = [e.meta.get("fault") for e in sim.recorder.all() if e.meta.get("fault")]
    assert faults == ["unknown-kid", "malformed-jwks", "huge-userinfo", "non-json-userinfo"]


def test_a_token_timeout_ends_the_client_wait_and_is_cut_on_stop(pki: TestPki, site: str) -> None:
    with PscSimulator(pki) as slow:
        slow.register_client("lgc", SECRET, [f"{site}/callback"])
        slow.set_fault("token-timeout", delay_s=30)
        session = requests.Session()
        session.trust_env = False
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            session.post(
                f"{slow.issuer}/protocol/openid-connect/token",
                data={"grant_type": "authorization_code", "code": "x", "redirect_uri": f"{site}/callback"},
                auth=("lgc", SECRET),
                verify=str(pki.ca_bundle_path),
                timeout=1,
            )
        assert time.monotonic() - started < 3
        assert slow.token_requests[-1].fault == "token-timeout"
        stopping = time.monotonic()
        slow.stop()
        assert time.monotonic() - stopping < 5
        cut = slow.recorder.wait_for(0, lambda e: e.action == "token", timeout_s=3)
        assert cut is not None and cut.meta["fault"] == "token-timeout" and "cut" in cut.meta


# -- CIBA --------------------------------------------------------------------------------------------
def _ciba(http: requests.Session, sim: PscSimulator, **params: str) -> requests.Response:
    data = {"login_hint": DOCTOR, "scope": "openid scope_all", "acr_values": "eidas1", "binding_message": "LGC-42"}
    data.update(params)
    return http.post(f"{sim.issuer}/protocol/openid-connect/ext/ciba/auth", data=data, auth=("lgc", SECRET), timeout=5)


def _poll(http: requests.Session, sim: PscSimulator, auth_req_id: str) -> requests.Response:
    return _token(http, sim, {"grant_type": CIBA_GRANT, "auth_req_id": auth_req_id}, auth=("lgc", SECRET))


def test_ciba_pending_slow_down_approve_and_token(sim: PscSimulator, http: requests.Session, clock: Clock) -> None:
    answer = _ciba(http, sim)
    assert answer.status_code == 200, answer.text
    auth_req_id = answer.json()["auth_req_id"]
    assert answer.json()["expires_in"] == 120 and answer.json()["interval"] == 5
    assert _poll(http, sim, auth_req_id).json()["error"] == "slow_down"
    clock.advance(10)
    assert _poll(http, sim, auth_req_id).json()["error"] == "authorization_pending"
    sim.approve_ciba(auth_req_id)
    clock.advance(10)
    tokens = _poll(http, sim, auth_req_id)
    assert tokens.status_code == 200
    claims = strict(sim, tokens.json()["id_token"], None, leeway=60)
    assert claims["SubjectNameID"] == DOCTOR and "nonce" not in claims
    assert _poll(http, sim, auth_req_id).json()["error"] == "invalid_grant"
    record = sim.ciba_requests[-1]
    assert record.status == "issued" and record.binding_message == "LGC-42" and record.findings == []
    assert record.polls == ["slow_down", "authorization_pending", "tokens", "invalid_grant"]


def test_ciba_deny_expiry_auto_approval_and_refusals(sim: PscSimulator, http: requests.Session, clock: Clock) -> None:
    denied = _ciba(http, sim).json()["auth_req_id"]
    sim.deny_ciba(denied)
    clock.advance(5)
    assert _poll(http, sim, denied).json()["error"] == "access_denied"
    late = _ciba(http, sim).json()["auth_req_id"]
    clock.advance(121)
    assert _poll(http, sim, late).json()["error"] == "expired_token"
    assert [r.status for r in sim.ciba_requests] == ["denied", "expired"]
    with pytest.raises(ValueError):
        sim.approve_ciba(late)

    sim.auto_approve_ciba = True
    auto = _ciba(http, sim, acr_values="eidas2").json()["auth_req_id"]
    assert _poll(http, sim, auto).json()["error"] == "slow_down"
    clock.advance(10)
    assert _poll(http, sim, auto).status_code == 200
    assert rules(sim.ciba_requests[-1].findings) == {"psc.acr-values"}

    unknown = _ciba(http, sim, login_hint="800000000000")
    no_openid = _ciba(http, sim, scope="scope_all")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unknown_user_id")
    assert (no_openid.status_code, no_openid.json()["error"]) == (400, "invalid_scope")


# -- hostile input -----------------------------------------------------------------------------------
def test_hostile_input_gets_clear_4xx_answers_and_records(
    sim: PscSimulator, http: requests.Session, pki: TestPki
) -> None:
    base = f"{sim.issuer}/protocol/openid-connect"
    huge_query = http.get(f"{base}/auth?state=" + "a" * 100_000, timeout=5)
    assert huge_query.status_code == 414 and huge_query.json()["error"] == "invalid_request"
    huge_body = http.post(
        f"{base}/token",
        data=b"a" * (2 * 1024 * 1024),
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge_body.status_code == 413
    not_utf8 = http.post(
        f"{base}/token",
        data=b"grant_type=\xff\xfe",
        auth=("lgc", SECRET),
        timeout=5,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["error_description"]
    bad_percent = http.get(f"{base}/auth?client_id=%FF%FE", timeout=5)
    assert bad_percent.status_code == 400 and bad_percent.headers["Content-Type"].startswith("text/html")
    too_many = http.get(f"{base}/auth?" + "&".join(f"p{i}=v" for i in range(300)), timeout=5)
    assert too_many.status_code == 400
    assert http.get(f"{sim.issuer}/nowhere", timeout=5).status_code == 404
    assert http.get("https" + sim.issuer[5:].split("/auth")[0] + "/admin", timeout=5).status_code == 404
    wrong_method = http.delete(f"{base}/token", timeout=5)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    json_body = http.post(f"{base}/token", json={"grant_type": "x"}, auth=("lgc", SECRET), timeout=5)
    assert json_body.status_code == 400
    garbage_bearer = http.get(f"{base}/userinfo", headers={"Authorization": "Bearer \u00e9t\u00e9.x.y"}, timeout=5)
    assert garbage_bearer.status_code == 401 and 'error="invalid_token"' in garbage_bearer.headers["WWW-Authenticate"]
    forged = jwt.encode({"sub": "x", "typ": "Bearer", "iss": sim.issuer}, None, algorithm="none")
    assert http.get(f"{base}/userinfo", headers={"Authorization": f"Bearer {forged}"}, timeout=5).status_code == 401
    assert http.get(f"{base}/userinfo", timeout=5).status_code == 401
    unknown_grant = http.post(f"{base}/token", data={"grant_type": "password"}, auth=("lgc", SECRET), timeout=5)
    assert unknown_grant.json()["error"] == "unsupported_grant_type"
    introspect = http.post(f"{base}/token/introspect", data={"token": "x"}, auth=("lgc", "faux"), timeout=5)
    assert introspect.status_code == 401 and rules(sim.introspections[-1].findings) == {"psc.client-auth"}

    host, port = urlsplit(sim.issuer).hostname, urlsplit(sim.issuer).port
    context = ssl.create_default_context(cafile=str(pki.ca_bundle_path))
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(b"\x00\xffnot http at all\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 400")

    statuses = [e.meta["http"]["status"] for e in sim.recorder.all()]
    assert statuses.count(414) == 1 and statuses.count(413) == 1 and 500 not in statuses
    assert http.get(sim.discovery_url, timeout=5).status_code == 200, "still serving"


def test_the_user_agent_is_bounded_in_hops_and_time(sim: PscSimulator, site: str) -> None:
    bounded = PscUserAgent(sim, timeout=1, max_hops=4)
    try:
        looping = bounded.login(authorization_url(sim, site, redirect_uri=f"{site}/loop"), DOCTOR)
        assert looping.error == "more than 4 hops" and len(looping.hops) == 4
        started = time.monotonic()
        stalled = bounded.login(authorization_url(sim, site, redirect_uri=f"{site}/slow"), DOCTOR)
        assert "Timeout" in stalled.error and time.monotonic() - started < 2.5
        absent = bounded.login(authorization_url(sim, site), "899799999999")
        assert "not offered" in absent.error
        nothing = PscUserAgent(sim, timeout=1).follow("https://127.0.0.1:1/")
        assert nothing.status == 0 and "ConnectionError" in nothing.error
    finally:
        bounded.close()


def test_reset_forgets_records_and_switches_but_keeps_clients(
    sim: PscSimulator, agent: PscUserAgent, site: str
) -> None:
    mark = sim.mark()
    Login(sim, agent, site).exchange()
    sim.set_misbehaviour("expired")
    sim.set_fault("malformed-jwks")
    sim.reset()
    assert sim.misbehaviour is None and sim.fault is None
    assert sim.authorizations == [] and sim.token_requests == [] and sim.recorder.all() == []
    assert sim.mark() > mark and "lgc" in sim.clients
    login = Login(sim, agent, site)
    assert isinstance(sim.wait_for("authorization", after=mark, timeout_s=1), AuthorizationRecord)
    assert isinstance(sim.wait_for("token", after=sim.mark(), timeout_s=0.05), type(None))
    login.exchange()
    assert isinstance(sim.token_requests[-1], TokenRequestRecord)
    assert not any(isinstance(r, LogoutRecord) for r in sim.logouts)
    assert parse_qsl(urlsplit(login.result.final_url).query)
