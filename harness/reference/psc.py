"""The practice's Pro Santé Connect login: web (authorization code), CIBA, logout, and the accounts behind them.

Web login (``shared/docs/protocols.md`` §4): the practice sends the browser to PSC with
``response_type=code``, ``scope=openid scope_all``, ``acr_values=eidas1``, a random
``state`` and ``nonce`` (kept here, single use) and a PKCE ``S256`` challenge; the
browser comes back to ``/psc/callback`` with a code, which the practice exchanges at the
token endpoint (``client_secret_basic``, with the ``code_verifier``). The ID token is
then judged strictly with joserfc: an RS256 or ES256 signature (never ``none``) checked
with the JWKS key its ``kid`` names, ``iss`` the discovery issuer, ``aud`` holding the
client id, ``exp`` and ``iat`` within a minute of leeway, the ``nonce`` sent, ``acr``
``eidas1``. Userinfo (JSON, or a JWT verified the same way) must name the same ``sub``
and gives the professional's ``SubjectNameID`` (IDNPS) and names. The session is then
the professional's, on the local account whose stored IDNPS is that ``SubjectNameID``
(:mod:`harness.reference.accounts`), or on a new account made for them. Any failure
leaves nobody logged in and keeps the reason for ``GET /psc/session``.

CIBA: a backchannel authentication request (``login_hint``, ``binding_message``), then
the token endpoint polled with the CIBA grant at the provider's ``interval`` in a
background thread until the professional accepts, refuses or the request expires; the
tokens are judged as above (no nonce in CIBA). Logout ends the local session at once
and, for a PSC session, answers the end-session URL (``id_token_hint``,
``post_logout_redirect_uri``, ``state``) the browser goes to.

Tokens are judged against the machine's real time, not the practice clock the harness
may shift: PSC issues them on real time. The ``psc-*`` defects of
:mod:`harness.reference.defects` are switched here (``psc-not-used-for-apis`` in
:meth:`harness.reference.identity.IdentityService.psc_user`).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from harness.reference import SOFTWARE
from harness.reference.accounts import Account, Accounts, LoginFailed, UserSession
from harness.reference.identity import Conflict, IdentityService
from harness.reference.model import InvalidInput
from harness.reference.psc_client import Discovery, PscEndpoint, PscRefused, PscTransport, PscUnavailable

log = logging.getLogger("harness.reference")

SERVICE = "Pro Santé Connect"
ACR = "eidas1"
ALGORITHMS = ("RS256", "ES256")
LEEWAY_S = 60
"""Clock skew tolerated on ``exp`` and ``iat``."""
LOGIN_TTL_S = 600.0
"""How long a web login may stay in progress (its state, nonce and verifier kept) before the callback."""
MAX_IN_PROGRESS = 64
MAX_CIBA_S = 600.0
"""The longest the practice polls for one CIBA login, whatever ``expires_in`` says."""
MAX_INTERVAL_S = 60.0
MIN_INTERVAL_S = 0.05
DEFAULT_INTERVAL_S = 5.0
WEB, CIBA = "login (authorization code)", "login (CIBA)"


class PscRejected(RuntimeError):
    """What came back from PSC or the browser is refused (the API answers 400); the message says why."""


@dataclass(frozen=True, slots=True)
class LoginInProgress:
    """What the practice keeps of a web login between the authorization request and the callback."""

    endpoint: PscEndpoint
    discovery: Discovery
    redirect_uri: str
    nonce: str | None
    code_verifier: str | None
    started: float


class PscService:
    """Pro Santé Connect logins and the practice's local accounts."""

    def __init__(self, identities: IdentityService) -> None:
        self.identities = identities
        self.store = identities.store
        self.session = identities.session
        self.accounts = Accounts(identities.store)
        self._lock = threading.Lock()
        self._logins: OrderedDict[str, LoginInProgress] = OrderedDict()
        self._logouts: OrderedDict[str, float] = OrderedDict()
        self._ciba_cancel = threading.Event()

    def has(self, defect: str) -> bool:
        return self.identities.has(defect)

    # -- registration ---------------------------------------------------------------------------
    @staticmethod
    def client(base_url: str) -> dict[str, str]:
        """The redirect URIs the practice registers at PSC: its own control API's callback and logout pages."""
        return {"redirect_uri": f"{base_url}/psc/callback", "post_logout_redirect_uri": f"{base_url}/psc/logged-out"}

    # -- web login --------------------------------------------------------------------------------
    def start_login(self, base_url: str) -> dict[str, str]:
        """The authorization request URL for a new web login; raises Conflict, PscUnavailable."""
        endpoint = self._endpoint()
        transport = PscTransport(endpoint, self.identities.call_timeout_s)
        discovery = transport.discovery()
        state = secrets.token_hex(32)
        nonce = None if self.has("psc-no-nonce") else secrets.token_hex(32)
        verifier = None if self.has("psc-no-pkce") else secrets.token_urlsafe(64)
        acr = None if self.has("psc-no-acr") else ACR
        redirect_uri = self.client(base_url)["redirect_uri"]
        url = transport.authorization_url(discovery, redirect_uri, state, nonce, verifier, acr)
        self.session.attempt()
        with self._lock:
            self._forget_stale()
            self._logins[state] = LoginInProgress(endpoint, discovery, redirect_uri, nonce, verifier, time.monotonic())
            while len(self._logins) > MAX_IN_PROGRESS:
                self._logins.popitem(last=False)
        return {"authorization_url": url}

    def callback(self, args: Mapping[str, str]) -> dict[str, Any]:
        """The browser's return from PSC (``code``, ``state`` or ``error``); raises PscRejected with the reason."""
        state = args.get("state", "")
        login = self._take_login(state)
        try:
            if login is None:
                raise PscRejected(
                    "the callback's state matches no login in progress" if state else "the callback carries no state"
                )
            if time.monotonic() - login.started > LOGIN_TTL_S:
                raise PscRejected(f"the login took longer than {LOGIN_TTL_S:g} s")
            if args.get("error"):
                description = args.get("error_description", "")
                raise PscRejected(
                    f"PSC refused the login: {args['error']}" + (f" ({description})" if description else "")
                )
            code = args.get("code", "")
            if not code:
                raise PscRejected("the callback carries no code")
            transport = PscTransport(login.endpoint, self.identities.call_timeout_s)
            try:
                tokens = transport.exchange_code(login.discovery, code, login.redirect_uri, login.code_verifier)
            except PscRefused as exc:
                raise PscRejected(f"the token endpoint refused the code: {exc}") from None
            session = self._session_from(transport, login.discovery, tokens, login.nonce)
        except (PscRejected, PscUnavailable, PscRefused) as exc:
            self._refuse(WEB, str(exc))
            raise PscRejected(str(exc)) from None
        self._begin(WEB, session)
        return self.session.to_json()

    # -- CIBA ---------------------------------------------------------------------------------------
    def start_ciba(self, body: Any) -> dict[str, str]:
        """Ask PSC to authenticate ``login_hint`` on their device, then poll for the answer in the background."""
        if not isinstance(body, dict) or not isinstance(body.get("login_hint"), str):
            raise InvalidInput("the body must be an object with a 'login_hint' string")
        login_hint = body["login_hint"].strip()
        if not login_hint or len(login_hint) > 256:
            raise InvalidInput("'login_hint' must be the professional's identifier (1 to 256 characters)")
        transport = PscTransport(self._endpoint(), self.identities.call_timeout_s)
        discovery = transport.discovery()
        if not discovery.backchannel_authentication_endpoint:
            raise Conflict("PSC's discovery document names no backchannel_authentication_endpoint")
        binding_message = f"{SOFTWARE} {secrets.randbelow(10000):04d}"
        acr = None if self.has("psc-no-acr") else ACR
        try:
            answer = transport.backchannel_authentication(discovery, login_hint, binding_message, acr)
            auth_req_id, expires_in, interval = _ciba_answer(answer)
        except PscRefused as exc:
            reason = f"PSC refused the CIBA request: {exc}"
            self._refuse(CIBA, reason)
            raise PscRejected(reason) from None
        except PscUnavailable as exc:
            self._refuse(CIBA, str(exc))
            raise
        cancel = threading.Event()
        with self._lock:
            self._ciba_cancel.set()
            self._ciba_cancel = cancel
        self.session.attempt()
        threading.Thread(
            target=self._poll,
            args=(transport, discovery, auth_req_id, expires_in, interval, cancel),
            name="psc-ciba",
            daemon=True,
        ).start()
        return {"binding_message": binding_message}

    def _poll(
        self,
        transport: PscTransport,
        discovery: Discovery,
        auth_req_id: str,
        expires_in: float,
        interval: float,
        cancel: threading.Event,
    ) -> None:
        deadline = time.monotonic() + min(expires_in, MAX_CIBA_S)
        reason = "the CIBA request expired before the professional answered"
        while not cancel.wait(interval):
            if time.monotonic() > deadline:
                break
            try:
                tokens = transport.poll_ciba(discovery, auth_req_id)
            except PscRefused as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval = min(interval + 5.0, MAX_INTERVAL_S)
                    continue
                reason = f"PSC refused the CIBA login: {exc}"
                break
            except PscUnavailable as exc:
                reason = str(exc)
                break
            try:
                session = self._session_from(transport, discovery, tokens, nonce=None)
            except (PscRejected, PscUnavailable, PscRefused) as exc:
                reason = str(exc)
                break
            with self._lock:
                if cancel.is_set():
                    return
                self._begin(CIBA, session, cancel_ciba=False)
            return
        with self._lock:
            if not cancel.is_set():
                self._refuse(CIBA, reason)

    # -- session and logout -------------------------------------------------------------------------
    def session_json(self) -> dict[str, Any]:
        return self.session.to_json()

    def logout(self, base_url: str) -> dict[str, str]:
        """End the local session now; for a PSC session, the end-session URL the browser goes to."""
        with self._lock:
            self._ciba_cancel.set()
        ended = self.session.end()
        if ended is None or not ended.is_psc:
            return {"end_session_url": ""}
        url = ""
        if ended.end_session_endpoint and not self.has("psc-no-end-session"):
            state = secrets.token_hex(32)
            with self._lock:
                self._logouts[state] = time.monotonic()
                while len(self._logouts) > MAX_IN_PROGRESS:
                    self._logouts.popitem(last=False)
            url = _with_query(
                ended.end_session_endpoint,
                id_token_hint=ended.id_token,
                post_logout_redirect_uri=self.client(base_url)["post_logout_redirect_uri"],
                state=state,
            )
        detail = "end-session URL given to the browser" if url else "local logout only"
        self._trace("logout", "ok", detail, ended.subject_name_id)
        return {"end_session_url": url}

    def logged_out(self, args: Mapping[str, str]) -> dict[str, bool]:
        """PSC's return after its own logout: the state must be one the practice gave (single use)."""
        state = args.get("state", "")
        with self._lock:
            known = self._logouts.pop(state, None) if state else None
        if known is None:
            raise PscRejected("the logout answer's state matches no logout in progress")
        return {"logged_out": True}

    # -- local accounts -------------------------------------------------------------------------------
    def create_user(self, body: Any) -> dict[str, str]:
        return {"user_id": self.accounts.create(body).id}

    def password_login(self, body: Any) -> dict[str, Any]:
        """Log in with the practice's own login and password; raises LoginFailed (nobody is then logged in)."""
        try:
            account = self.accounts.check_password(body)
        except LoginFailed as exc:
            self.session.refuse(str(exc))
            raise
        self._begin(
            "password login", UserSession("password", account, account.subject_name_id, account.family, account.given)
        )
        return self.session.to_json()

    def reset(self) -> None:
        """Forget logins in progress and log the user out (the accounts go with the store's test data)."""
        with self._lock:
            self._ciba_cancel.set()
            self._logins.clear()
            self._logouts.clear()
        self.session.end()

    # -- tokens ---------------------------------------------------------------------------------------------
    def _session_from(
        self, transport: PscTransport, discovery: Discovery, tokens: dict[str, Any], nonce: str | None
    ) -> UserSession:
        """Judge the token answer, read userinfo, find the account: the session of the professional."""
        access_token, id_token = tokens.get("access_token"), tokens.get("id_token")
        if not isinstance(access_token, str) or not access_token:
            raise PscRejected("the token answer has no access_token")
        if str(tokens.get("token_type", "")).lower() != "bearer":
            raise PscRejected(f"the token answer's token_type is {tokens.get('token_type')!r}, not Bearer")
        if not isinstance(id_token, str) or not id_token:
            raise PscRejected("the token answer has no id_token")
        keys = None if self.has("psc-accepts-bad-signature") else _key_set(transport.jwks(discovery))
        claims = self._verified(id_token, keys, "the ID token")
        self._check_id_token(claims, discovery, transport.endpoint.client_id, nonce)
        try:
            info = self._userinfo(transport, discovery, access_token, keys)
        except (PscRejected, PscUnavailable):
            if not self.has("psc-userinfo-optional"):
                raise
            info = dict(claims)  # the defect: an unusable userinfo is replaced by the ID token's claims
        if not self.has("psc-ignores-userinfo-sub") and info.get("sub") != claims.get("sub"):
            raise PscRejected(f"the userinfo sub {info.get('sub')!r} is not the ID token's {claims.get('sub')!r}")
        subject = info.get("SubjectNameID") or claims.get("SubjectNameID")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 64:
            raise PscRejected("userinfo gives no SubjectNameID (the professional's national identifier)")
        subject = subject.strip()
        family, given = _name(info, "family_name"), _name(info, "given_name")
        account: Account = self.accounts.for_professional(subject, family, given, link=not self.has("psc-no-linking"))
        return UserSession(
            "psc", account, subject, family, given, access_token, id_token, discovery.end_session_endpoint
        )

    def _verified(self, token: str, keys: KeySet | None, what: str) -> dict[str, Any]:
        """The claims of a compact JWS, its signature checked with the key its ``kid`` names (None: decode only)."""
        try:
            compact = jws.extract_compact(token.strip().encode("ascii"))
        except (JoseError, ValueError, UnicodeError):
            raise PscRejected(f"{what} is not a compact JWS") from None
        if keys is None:  # the psc-accepts-bad-signature defect
            try:
                claims = json.loads(compact.payload)
            except (ValueError, UnicodeDecodeError):
                raise PscRejected(f"{what} payload is not JSON") from None
        else:
            header = compact.headers()
            alg, kid = header.get("alg"), header.get("kid")
            if alg not in ALGORITHMS:
                raise PscRejected(f"{what} is signed with alg {alg!r}; only {' and '.join(ALGORITHMS)} are accepted")
            if not isinstance(kid, str) or not kid:
                raise PscRejected(f"{what} header has no kid")
            try:
                key = keys.get_by_kid(kid)
            except (JoseError, ValueError, KeyError):
                raise PscRejected(f"{what} names key {kid!r}, which is not in PSC's JWKS") from None
            try:
                claims = jwt.decode(token.strip(), key, algorithms=list(ALGORITHMS)).claims
            except BadSignatureError:
                raise PscRejected(f"{what} signature does not verify with PSC's key {kid!r}") from None
            except JoseError as exc:
                raise PscRejected(f"{what} is refused: {exc.description or exc.error}") from None
        if not isinstance(claims, dict):
            raise PscRejected(f"{what} payload is not a JSON object")
        return claims

    def _check_id_token(self, claims: dict[str, Any], discovery: Discovery, client_id: str, nonce: str | None) -> None:
        options: dict[str, jwt.ClaimsOption] = {"sub": {"essential": True}, "iat": {"essential": True}}
        checked = dict(claims)
        if self.has("psc-accepts-expired"):
            checked.pop("exp", None)
        else:
            options["exp"] = {"essential": True}
        if not self.has("psc-skips-claims"):
            options["iss"] = {"essential": True, "value": discovery.issuer}
            options["aud"] = {"essential": True, "value": client_id}
            options["acr"] = {"essential": True, "value": ACR}
            if nonce is not None:
                options["nonce"] = {"essential": True, "value": nonce}
            audience = claims.get("aud")
            if isinstance(audience, list) and len(audience) > 1 and claims.get("azp", client_id) != client_id:
                raise PscRejected(f"the ID token's azp {claims.get('azp')!r} is not the practice's client id")
        _validate(checked, options, "the ID token")

    def _userinfo(
        self, transport: PscTransport, discovery: Discovery, access_token: str, keys: KeySet | None
    ) -> dict[str, Any]:
        answer = transport.userinfo(discovery, access_token)
        if answer.content_type == "application/jwt":
            try:
                text = answer.body.decode("ascii")
            except UnicodeDecodeError:
                raise PscRejected("the userinfo JWT is not ASCII") from None
            info = self._verified(text, keys, "the userinfo JWT")
            options: dict[str, jwt.ClaimsOption] = {}
            checked = dict(info)
            if self.has("psc-accepts-expired"):
                checked.pop("exp", None)
            if not self.has("psc-skips-claims"):
                options["iss"] = {"value": discovery.issuer}
                options["aud"] = {"value": transport.endpoint.client_id}
            _validate(checked, options, "the userinfo JWT")
            return info
        if answer.content_type == "application/json":
            data = answer.json("the userinfo answer")
            if not isinstance(data, dict):
                raise PscRejected("the userinfo answer is not a JSON object")
            return data
        raise PscRejected(f"userinfo answered {answer.content_type or 'no content type'!r}, neither JSON nor a JWT")

    # -- plumbing -------------------------------------------------------------------------------------------
    def _endpoint(self) -> PscEndpoint:
        endpoint = self.identities.endpoints.psc()
        if endpoint is None:
            raise Conflict("no Pro Santé Connect endpoint configured (PUT /config/endpoints)")
        return endpoint

    def _take_login(self, state: str) -> LoginInProgress | None:
        with self._lock:
            self._forget_stale()
            if state and state in self._logins:
                return self._logins.pop(state)
            if self.has("psc-ignores-state") and self._logins:
                return self._logins.popitem(last=True)[1]
            return None

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for state in [s for s, login in self._logins.items() if now - login.started > 2 * LOGIN_TTL_S]:
            del self._logins[state]
        for state in [s for s, started in self._logouts.items() if now - started > 2 * LOGIN_TTL_S]:
            del self._logouts[state]

    def _begin(self, operation: str, session: UserSession, cancel_ciba: bool = True) -> None:
        if cancel_ciba:
            with self._lock:
                self._ciba_cancel.set()
        self.session.start(session)
        self._trace(operation, "ok", f"account {session.account.id}", session.subject_name_id)
        log.info(
            "%s: %s logged in as %s", operation, session.subject_name_id or session.account.login, session.account.id
        )

    def _refuse(self, operation: str, reason: str) -> None:
        self.session.refuse(reason)
        self._trace(operation, "refused", reason, "")
        log.info("%s refused: %s", operation, reason)

    def _trace(self, operation: str, return_code: str, detail: str, subject_name_id: str) -> None:
        entry: dict[str, Any] = {
            "timestamp": self.identities.clock.iso(),
            "service": SERVICE,
            "operation": operation,
            "return_code": return_code,
            "detail": detail,
        }
        if subject_name_id:
            entry["subject_name_id"] = subject_name_id
        self.store.add_trace(entry)


def _key_set(data: Any) -> KeySet:
    """PSC's JWKS as a joserfc key set; raises PscRejected for one that holds no usable key."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise PscRejected("PSC's JWKS holds no keys")
    try:
        return KeySet.import_key_set(data)  # type: ignore[arg-type]  # checked to be {"keys": [...]} above
    except (JoseError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PscRejected(f"PSC's JWKS is unreadable: {exc}") from None


def _validate(claims: dict[str, Any], options: dict[str, jwt.ClaimsOption], what: str) -> None:
    registry = jwt.JWTClaimsRegistry(now=int(time.time()), leeway=LEEWAY_S, **options)
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise PscRejected(f"{what} has expired (exp {claims.get('exp')!r})") from None
    except MissingClaimError as exc:
        raise PscRejected(f"{what} lacks the claim(s) {exc.claim}") from None
    except ClaimError as exc:
        expected = options.get(exc.claim, {}).get("value")
        if isinstance(exc, InvalidClaimError) and expected is not None:
            reason = f"{what}'s '{exc.claim}' is {claims.get(exc.claim)!r}, not {expected!r}"
        else:
            reason = f"{what}'s '{exc.claim}' is refused: {exc.description} ({claims.get(exc.claim)!r})"
        raise PscRejected(reason) from None


def _ciba_answer(answer: dict[str, Any]) -> tuple[str, float, float]:
    auth_req_id, expires_in = answer.get("auth_req_id"), answer.get("expires_in")
    interval = answer.get("interval", DEFAULT_INTERVAL_S)
    if not isinstance(auth_req_id, str) or not 0 < len(auth_req_id) <= 1024:
        raise PscUnavailable("the CIBA answer has no auth_req_id")
    if not _positive(expires_in):
        raise PscUnavailable("the CIBA answer has no positive expires_in")
    if not _positive(interval):
        raise PscUnavailable("the CIBA answer's interval is not a positive number")
    return auth_req_id, expires_in, min(max(interval, MIN_INTERVAL_S), MAX_INTERVAL_S)


def _positive(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e9


def _name(info: dict[str, Any], claim: str) -> str:
    value = info.get(claim)
    return value.strip()[:128] if isinstance(value, str) else ""


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))
