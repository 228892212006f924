"""The practice's users: local accounts (login and hashed password), and who is logged in now.

A professional has one account whatever the way they log in: with the practice's own
login and password, or with Pro Santé Connect (:mod:`harness.reference.psc`), which
finds the account by the national identifier stored in it (IDNPS, the PSC
``SubjectNameID``) and creates one when none matches. Passwords are kept as scrypt
hashes with a random salt, compared in constant time; never in clear.

One user at a time is logged in to the practice (it stands for one workstation):
:class:`CurrentSession` holds that session, or, after a refused login, why it was
refused. A Pro Santé Connect session also carries what the practice then uses for the
national services' APIs (the access token, the professional's identity).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from harness.reference.model import InvalidInput
from harness.reference.store import DuplicateLogin, Store

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost parameters (interactive logins: about 16 MiB and a few tens of milliseconds)."""
SALT_BYTES = 16
MAX_FIELD = 128
MAX_PASSWORD = 256
_LOGIN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,64}$")
_SUBJECT = re.compile(r"^[A-Za-z0-9._-]{0,64}$")


class LoginFailed(RuntimeError):
    """Wrong login or password (the API answers 401)."""


class LoginTaken(RuntimeError):
    """The login already belongs to another account (the API answers 409)."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user of the practice."""

    id: str
    login: str
    subject_name_id: str
    family: str
    given: str


@dataclass(frozen=True, slots=True)
class UserSession:
    """Who is logged in, and how (``psc`` or ``password``)."""

    method: str
    account: Account
    subject_name_id: str
    family: str
    given: str
    access_token: str = ""
    """The PSC access token (a PSC session only): the Bearer the practice shows to INSi and the DMP."""
    id_token: str = ""
    """The PSC ID token, the ``id_token_hint`` of the logout."""
    end_session_endpoint: str = ""
    """Where PSC ends its own session (from the discovery document of the login)."""

    @property
    def is_psc(self) -> bool:
        return self.method == "psc"


class CurrentSession:
    """The session of the practice's workstation: at most one user, or why the last login was refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: UserSession | None = None
        self._detail = ""

    def get(self) -> UserSession | None:
        with self._lock:
            return self._session

    def start(self, session: UserSession) -> None:
        with self._lock:
            self._session, self._detail = session, ""

    def refuse(self, detail: str) -> None:
        """A login failed: nobody is logged in any more, and ``detail`` says why."""
        with self._lock:
            self._session, self._detail = None, detail

    def attempt(self) -> None:
        """A new login begins: the reason the previous one was refused no longer applies."""
        with self._lock:
            self._detail = ""

    def end(self) -> UserSession | None:
        """Log the user out; the session that ended, if any."""
        with self._lock:
            ended, self._session, self._detail = self._session, None, ""
            return ended

    def psc(self) -> UserSession | None:
        """The current session when it is a Pro Santé Connect one."""
        session = self.get()
        return session if session is not None and session.is_psc else None

    def to_json(self) -> dict[str, Any]:
        """The control API's PscSession."""
        with self._lock:
            session, detail = self._session, self._detail
        if session is None:
            return {
                "logged_in": False,
                "method": "",
                "user_id": "",
                "subject_name_id": "",
                "family": "",
                "given": "",
                "detail": detail,
            }
        return {
            "logged_in": True,
            "method": session.method,
            "user_id": session.account.id,
            "subject_name_id": session.subject_name_id,
            "family": session.family,
            "given": session.given,
            "detail": "",
        }


class Accounts:
    """The practice's local accounts, in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, body: Any) -> Account:
        """A new account from a ``POST /users`` body; raises InvalidInput or LoginTaken."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        login, password = body.get("login"), body.get("password")
        if not isinstance(login, str) or not _LOGIN.match(login):
            raise InvalidInput("'login' must be 1 to 64 characters without spaces")
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
            raise InvalidInput(f"'password' must be a non-empty string of at most {MAX_PASSWORD} characters")
        subject = _text(body, "subject_name_id")
        if not _SUBJECT.match(subject):
            raise InvalidInput("'subject_name_id' must be a national identifier (letters, digits, at most 64)")
        family, given = _text(body, "family"), _text(body, "given")
        try:
            user_id = self.store.add_user(
                login, subject, {"family": family, "given": given, "password": hash_password(password)}
            )
        except DuplicateLogin as exc:
            raise LoginTaken(str(exc)) from None
        return Account(user_id, login, subject, family, given)

    def check_password(self, body: Any) -> Account:
        """The account a ``POST /users/login`` body names, when the password is right; raises LoginFailed."""
        if not isinstance(body, dict) or not isinstance(body.get("login"), str):
            raise InvalidInput("the body must be an object with 'login' and 'password'")
        password = body.get("password")
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            raise InvalidInput("'password' must be a string")
        record = self.store.find_user_by_login(body["login"])
        stored = str(record.get("password") or "") if record is not None else ""
        if record is None or not stored:
            verify_password(password, _DUMMY_HASH)  # the same work whether the login exists or not
            raise LoginFailed("wrong login or password")
        if not verify_password(password, stored):
            raise LoginFailed("wrong login or password")
        return _account(record)

    def for_professional(self, subject_name_id: str, family: str, given: str, link: bool = True) -> Account:
        """The account of the professional ``subject_name_id`` (linked by its stored IDNPS), created when none is.

        ``link=False`` (the ``psc-no-linking`` defect) always creates a new one.
        """
        if link:
            record = self.store.find_user_by_subject(subject_name_id)
            if record is not None:
                return _account(record)
        user_id = self.store.add_user(None, subject_name_id, {"family": family, "given": given, "origin": "psc"})
        return Account(user_id, "", subject_name_id, family, given)


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex) of the password, with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored`` (constant-time comparison); False for a malformed record."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        computed = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed, expected)


_DUMMY_HASH = hash_password(secrets.token_hex(8))


def _account(record: dict[str, Any]) -> Account:
    return Account(
        str(record["id"]),
        str(record.get("login") or ""),
        str(record.get("subject_name_id") or ""),
        str(record.get("family") or ""),
        str(record.get("given") or ""),
    )


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidInput(f"'{name}' must be a string of at most {MAX_FIELD} characters")
    return value.strip()
