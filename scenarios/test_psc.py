"""Logging in with Pro Santé Connect (REM LGC section PSC, and INS/PSC.01, DMP/PSC.01).

The SUT is registered as a client of the harness's PSC simulator (an OpenID Connect
provider at the PSC paths, ``harness/simulators/psc/``) and logs professionals in through
it; :class:`~harness.simulators.psc.PscUserAgent` plays the browser (opens the
authorization URL the SUT gives, picks the test professional, follows back to the SUT's
redirect URI), so the scenarios run unattended. What the SUT sends is judged by the
simulator (``state``, ``nonce``, PKCE S256, ``acr_values=eidas1``, ``scope``, client
authentication, end-session parameters: findings on its records); what the SUT accepts is
judged by switching the simulator to misbehave (bad signature, wrong ``iss`` or ``aud``,
expired, ``nonce`` mismatch, low ``acr``, ``alg: none``, userinfo ``sub`` mismatch): a
conforming client refuses each and stays logged out.

ANS's proofs here are videos, a written commitment or demonstrations: they stay
``manual``, with the recorded exchanges attached as supporting evidence.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from harness.findings import Severity
from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.dmp import DmpSimulator
from harness.simulators.insi import IdentityBase, InsiSimulator
from harness.simulators.psc import PscSimulator, PscUserAgent
from harness.simulators.psc.user_agent import LoginResult
from harness.sut.base import SutAdapter, SutError
from harness.sut.model import PscSession
from scenarios.insi_steps import identity_named, qualified_patient

PROFESSIONAL = "899700023456"
"""The test professional who logs in (Dr Claire ESSAI in ``fixtures/psc/professionals.json``)."""
SESSION_WAIT_S = 15.0
"""How long a scenario waits for a CIBA login to complete."""
MISBEHAVIOURS = [
    "bad-signature",
    "alg-none",
    "wrong-issuer",
    "wrong-audience",
    "expired",
    "nonce-mismatch",
    "low-acr",
    "userinfo-sub-mismatch",
]


# -- steps ------------------------------------------------------------------------------------------
def _browse(psc: PscSimulator, evidence: ScenarioEvidence, url: str, professional: str | None) -> LoginResult:
    """The browser walk: log ``professional`` in at the authorization URL (or just follow ``url``)."""
    agent = PscUserAgent(psc, timeout=10)
    try:
        result = agent.login(url, professional) if professional else agent.follow(url)
    finally:
        agent.close()
    evidence.note(
        f"browser: {' → '.join(f'{h.method} {urlsplit(h.url).path} {h.status}' for h in result.hops)}"
        + (f" ({result.error})" if result.error else "")
    )
    return result


def _login(
    sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence, professional: str = PROFESSIONAL
) -> PscSession:
    """A web-mode login of ``professional``, and the SUT's session after it."""
    start = sut.start_psc_login()
    _browse(psc, evidence, start.authorization_url, professional)
    session = sut.psc_session()
    evidence.note(
        f"session after login: logged_in={session.logged_in} method={session.method!r} "
        f"subject={session.subject_name_id!r} user={session.user_id!r} {session.detail}"
    )
    return session


def _sent_findings(psc: PscSimulator, evidence: ScenarioEvidence, mark: int, *prefixes: str) -> None:
    """The simulator's findings on what the SUT sent since ``mark`` (authorization, token, logout, CIBA)."""
    for kind in ("authorization", "token", "logout", "ciba"):
        for record in psc.records.since(kind, mark):
            found = [f for f in getattr(record, "findings", []) if f.severity is not Severity.INFO]
            evidence.add(*[f for f in found if not prefixes or f.rule.startswith(prefixes)])


def _keep_records(psc: PscSimulator, evidence: ScenarioEvidence, mark: int) -> None:
    summary = {
        kind: [r.summary() for r in psc.records.since(kind, mark)]
        for kind in ("authorization", "token", "userinfo", "logout", "ciba")
    }
    evidence.attach(
        "psc-records.json",
        json.dumps(summary, indent=2, ensure_ascii=False, default=str).encode("utf-8"),
        "application/json",
        "what the SUT sent to Pro Santé Connect, as the simulator judged it",
    )


def _logged_in_as(session: PscSession, professional: str) -> bool:
    return session.logged_in and session.method == "psc" and session.subject_name_id == professional


# -- web mode ----------------------------------------------------------------------------------------
@pytest.mark.requirement("PSC.01", scenario="PSC.01.01", manual_proofs=("PSC.01.01.01",))
def test_web_login_and_logout(sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence) -> None:
    """Authorization code with state, nonce and PKCE S256; the professional is logged in; logout ends PSC's session."""
    mark = psc.mark()
    session = _login(sut, psc, evidence)
    evidence.expect(
        _logged_in_as(session, PROFESSIONAL),
        "psc.login.session",
        f"after a PSC login the SUT's session must be {PROFESSIONAL}'s, by PSC; it is {session.method or 'none'} "
        f"for {session.subject_name_id or 'nobody'} ({session.detail})",
    )
    if session.logged_in:
        logout = sut.psc_logout()
        if evidence.expect(
            bool(logout.end_session_url),
            "psc.logout.none",
            "logging out of a PSC session must send the browser to PSC's end-session endpoint; the SUT gave no URL",
        ):
            _browse(psc, evidence, logout.end_session_url, None)
            ended = psc.wait_for("logout", mark, timeout_s=5)
            evidence.expect(
                ended is not None and bool(getattr(ended, "session_ended", False)),
                "psc.logout.session",
                "the end-session call must end the professional's PSC session",
            )
        after = sut.psc_session()
        evidence.expect(not after.logged_in, "psc.logout.local", "after logout nobody may be logged in to the SUT")
    _sent_findings(psc, evidence, mark)
    _keep_records(psc, evidence, mark)
    evidence.conclude()


@pytest.mark.requirement("PSC.08", scenario="PSC.08.01", manual_proofs=("PSC.01.08.01",))
def test_the_authorization_request_asks_for_eidas1(
    sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence
) -> None:
    """``acr_values=eidas1`` in the authorization request (the written commitment stays with the vendor)."""
    mark = psc.mark()
    _login(sut, psc, evidence)
    requests_seen = [r for r in psc.authorizations if r.seq > mark]
    evidence.expect(bool(requests_seen), "psc.authorization.none", "the SUT must send an authorization request")
    for record in requests_seen:
        evidence.expect(
            record.params.get("acr_values") == "eidas1",
            "psc.acr-values",
            f"acr_values must be eidas1; the SUT sent {record.params.get('acr_values')!r}",
        )
    _keep_records(psc, evidence, mark)
    evidence.conclude()


@pytest.mark.parametrize("misbehaviour", MISBEHAVIOURS)
@pytest.mark.requirement("PSC.01", scenario="PSC.01.01", manual_proofs=("PSC.01.01.01",))
def test_a_token_that_fails_validation_is_refused(
    sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence, misbehaviour: str
) -> None:
    """PSC answers with a token wrong in one way: the SUT must refuse the login and log nobody in."""
    mark = psc.mark()
    psc.set_misbehaviour(misbehaviour)
    session = _login(sut, psc, evidence)
    evidence.expect(
        not session.logged_in,
        "psc.token.accepted",
        f"the ID token or userinfo was wrong ({misbehaviour}); the SUT must refuse it, yet logged "
        f"{session.subject_name_id or 'someone'} in",
    )
    _keep_records(psc, evidence, mark)
    evidence.conclude()


PROVIDER_FAULTS = ["malformed-jwks", "unknown-kid", "non-json-userinfo", "huge-userinfo"]


@pytest.mark.parametrize("fault", PROVIDER_FAULTS)
@pytest.mark.requirement("PSC.01", scenario="PSC.01.01", manual_proofs=("PSC.01.01.01",))
def test_a_broken_provider_answer_leaves_nobody_logged_in(
    sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence, fault: str
) -> None:
    """A JWKS that cannot be read, a key id it does not list, a userinfo that is not JSON or is huge: no session."""
    mark = psc.mark()
    psc.set_fault(fault)
    started = time.monotonic()
    session = _login(sut, psc, evidence)
    evidence.note(f"with {fault}, the login ended after {time.monotonic() - started:.1f} s")
    evidence.expect(
        not session.logged_in,
        "psc.fault.accepted",
        f"PSC's answer was unusable ({fault}); the SUT must not log anyone in, yet logged "
        f"{session.subject_name_id or 'someone'} in",
    )
    _keep_records(psc, evidence, mark)
    evidence.conclude()


@pytest.mark.requirement("PSC.01", scenario="PSC.01.01", manual_proofs=("PSC.01.01.01",))
def test_the_state_is_checked_on_return(sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence) -> None:
    """A return to the redirect URI with a ``state`` the SUT did not issue (a forged login) is refused."""
    client = sut.psc_client()
    start = sut.start_psc_login()
    agent = PscUserAgent(psc, timeout=10)
    try:
        walk = agent.login(start.authorization_url, PROFESSIONAL, stop_at=client.redirect_uri)
    finally:
        agent.close()
    if not evidence.expect(
        walk.stopped and "code" in walk.query,
        "psc.login.no-code",
        f"precondition: PSC must send the browser back to {client.redirect_uri} with a code ({walk.error})",
    ):
        evidence.conclude()
        return
    parts = urlsplit(walk.final_url)
    query = dict(parse_qsl(parts.query))
    query["state"] = "forged-" + query.get("state", "")[::-1]
    forged = urlunsplit(parts._replace(query=urlencode(query)))
    try:
        answer = requests.get(forged, timeout=10, allow_redirects=False)
        evidence.note(f"forged return answered {answer.status_code}")
    except requests.RequestException as exc:
        evidence.note(f"forged return: {exc}")
    session = sut.psc_session()
    evidence.expect(
        not session.logged_in,
        "psc.state.ignored",
        "the SUT must refuse a return whose state it did not issue; it logged "
        f"{session.subject_name_id or 'someone'} in",
    )
    evidence.conclude()


# -- CIBA ---------------------------------------------------------------------------------------
@pytest.mark.requirement("PSC.01", scenario="PSC.01.03", manual_proofs=("PSC.01.01.03",))
def test_ciba_login(sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence) -> None:
    """Backchannel authentication (CIBA, poll mode): the professional approves, the SUT polls and logs them in."""
    mark = psc.mark()
    sut.start_psc_ciba(PROFESSIONAL)
    request = psc.wait_for("ciba", mark, timeout_s=10)
    if not evidence.expect(request is not None, "psc.ciba.none", "the SUT must send a backchannel authentication"):
        evidence.conclude()
        return
    assert request is not None
    psc.approve_ciba(str(getattr(request, "auth_req_id", "")))
    deadline = time.monotonic() + SESSION_WAIT_S
    session = sut.psc_session()
    while not session.logged_in and time.monotonic() < deadline:
        time.sleep(0.3)
        session = sut.psc_session()
    evidence.expect(
        _logged_in_as(session, PROFESSIONAL),
        "psc.ciba.session",
        f"after the approval the SUT must log {PROFESSIONAL} in within {SESSION_WAIT_S:g} s; "
        f"session: {session.method or 'none'} {session.subject_name_id} ({session.detail})",
    )
    _sent_findings(psc, evidence, mark)
    _keep_records(psc, evidence, mark)
    evidence.conclude()


# -- account linking --------------------------------------------------------------------------------
@pytest.mark.requirement("PSC.02", scenario="PSC.02.01", manual_proofs=("PSC.01.02.01",))
def test_accounts_are_linked_on_the_subject_name_id(
    sut: SutAdapter, psc: PscSimulator, evidence: ScenarioEvidence
) -> None:
    """A local account holding the professional's IDNPS is the one a PSC login and a password login open."""
    login, password = "claire.essai", "mot-de-passe-de-test-0001"
    user_id = sut.create_user(login, password, PROFESSIONAL, "ESSAI", "Claire")
    session = _login(sut, psc, evidence)
    evidence.expect(
        session.logged_in and session.user_id == user_id,
        "psc.linking.account",
        f"the PSC login of {PROFESSIONAL} must open the local account {user_id} that holds that SubjectNameID; "
        f"it opened {session.user_id or 'none'}",
    )
    if session.logged_in:
        sut.psc_logout()
    by_password = sut.password_login(login, password)
    evidence.expect(
        by_password.logged_in and by_password.user_id == user_id,
        "psc.linking.password",
        f"the password login must open the same account {user_id}; it opened {by_password.user_id or 'none'}",
    )
    evidence.conclude()


# -- PSC for secured API calls ----------------------------------------------------------------------
def _bearer(headers: dict[str, str]) -> str:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


@pytest.mark.requirement(
    "PSC.10",
    "INS/PSC.01",
    "DMP/PSC.01",
    scenario=("PSC.10", "INS/PSC.01.01", "DMP/PSC.01.01"),
    manual_proofs=("INS/PSC.01.01.01", "DMP/PSC.01.01.01"),
)
def test_the_psc_identity_is_used_for_insi_and_dmp_calls(
    sut: SutAdapter,
    psc: PscSimulator,
    insi_identities: IdentityBase,
    insi: InsiSimulator,
    dmp: DmpSimulator,
    evidence: ScenarioEvidence,
) -> None:
    """Logged in with PSC, the SUT's INSi and DMP calls carry the professional's PSC access token [I] and identity."""
    session = _login(sut, psc, evidence)
    if not evidence.expect(session.logged_in, "psc.login.session", f"precondition: a PSC login ({session.detail})"):
        evidence.conclude()
        return
    mark = insi.recorder.mark()
    patient = qualified_patient(sut, identity_named(insi_identities, "ordinary-1"))
    calls = [e for e in insi.recorder.since(mark) if e.protocol != "tls"]
    tokens = [_bearer(dict(e.meta.get("http", {}).get("request_headers", {}))) for e in calls]
    evidence.expect(
        bool(calls) and all(tokens),
        "psc.insi.bearer",
        f"every INSi call of a PSC session must carry the PSC access token; {sum(1 for t in tokens if t)} of "
        f"{len(calls)} did",
    )
    owners = {str((psc.access_token_claims(t) or {}).get("SubjectNameID", "")) for t in tokens if t}
    evidence.expect(
        not owners or owners == {PROFESSIONAL},
        "psc.insi.identity",
        f"the tokens must be {PROFESSIONAL}'s, issued by PSC; they are {sorted(owners)}",
    )
    try:
        traced = [t for t in sut.traces() if t.service.upper() == "INSI"]
        evidence.expect(
            any(t.auth_mode.upper() == "PSC" for t in traced),
            "psc.insi.trace",
            "the INSi call log must show PSC as the authentication mode; "
            f"it shows {sorted({t.auth_mode for t in traced})}",
        )
    except SutError as exc:
        evidence.note(f"traces unavailable: {exc}")
    assert patient.ins is not None
    dmp.set_patient(patient.ins.matricule, patient.ins.oid)
    produced = sut.produce_document(patient.id, "11490-0", "N1")
    before = len(dmp.submissions)
    sut.validate_document(patient.id, produced.document_id)
    submission = dmp.wait_for_submission(before, timeout=15)
    if evidence.expect(submission is not None, "psc.dmp.none", "precondition: the validated document is fed"):
        assert submission is not None
        headers = dict(
            (submission.exchange.meta.get("http", {}) if submission.exchange else {}).get("request_headers", {})
        )
        token = _bearer(headers)
        evidence.expect(
            str((psc.access_token_claims(token) or {}).get("SubjectNameID", "")) == PROFESSIONAL,
            "psc.dmp.bearer",
            "the DMP call of a PSC session must carry the professional's PSC access token",
        )
        assertion = submission.vihf.assertion if submission.vihf is not None else None
        name_id = assertion.name_id if assertion is not None else ""
        evidence.expect(
            PROFESSIONAL in name_id,
            "psc.dmp.vihf-subject",
            f"the VIHF must name the PSC user ({PROFESSIONAL}) as its subject; NameID is {name_id!r}",
        )
    evidence.conclude()
