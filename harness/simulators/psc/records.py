"""What the Pro Santé Connect simulator keeps of each call the SUT makes, for scenarios to judge.

Each endpoint call the SUT makes leaves one typed record: an :class:`AuthorizationRecord` per
authorization request (the browser's), a :class:`TokenRequestRecord` per token request, a
:class:`UserinfoRequestRecord`, an :class:`IntrospectionRecord`, a :class:`LogoutRecord` per
end-session request and a :class:`CibaRequestRecord` per backchannel authentication request. The
records carry the simulator's **findings** (``psc.*`` rules) about what the client did, so a
scenario asks "did the client send a nonce", "did it prove PKCE" by reading them, never sockets.
:class:`PscRecords` holds them with a position that only grows and a bounded wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from harness.findings import Finding

RecordKind = Literal["authorization", "token", "userinfo", "introspection", "logout", "ciba"]
RECORD_KINDS: tuple[RecordKind, ...] = ("authorization", "token", "userinfo", "introspection", "logout", "ciba")


@dataclass(slots=True)
class AuthorizationRecord:
    """One authorization request, and what became of it."""

    seq: int
    received: datetime
    method: str
    params: dict[str, str]
    """The request's parameters (the last value of a repeated one)."""
    client_id: str
    redirect_uri: str
    client_known: bool
    redirect_uri_registered: bool
    findings: list[Finding] = field(default_factory=list)
    outcome: str = "login-form"
    """``login-form`` (waiting for the professional), ``code-issued``, ``denied``, or ``error:<code>``."""
    subject_name_id: str = ""
    """The professional who logged in, once they did."""
    request_id: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "authorization",
            "seq": self.seq,
            "received": self.received.isoformat(),
            "method": self.method,
            "params": dict(self.params),
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "client_known": self.client_known,
            "redirect_uri_registered": self.redirect_uri_registered,
            "outcome": self.outcome,
            "subject_name_id": self.subject_name_id,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class TokenRequestRecord:
    """One call of the token endpoint."""

    seq: int
    received: datetime
    grant_type: str
    client_id: str
    client_auth: str
    """``client_secret_basic``, ``client_secret_post``, ``none``, or ``several`` (both at once)."""
    client_authenticated: bool
    pkce_verified: bool | None = None
    """True when ``code_verifier`` matched the challenge, False when absent or wrong, None without PKCE."""
    status: int = 0
    error: str = ""
    """The OAuth ``error`` answered, ``""`` when tokens were issued."""
    issued: bool = False
    subject_name_id: str = ""
    findings: list[Finding] = field(default_factory=list)
    misbehaviour: str = ""
    fault: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "token",
            "seq": self.seq,
            "received": self.received.isoformat(),
            "grant_type": self.grant_type,
            "client_id": self.client_id,
            "client_auth": self.client_auth,
            "client_authenticated": self.client_authenticated,
            "pkce_verified": self.pkce_verified,
            "status": self.status,
            "error": self.error,
            "issued": self.issued,
            "subject_name_id": self.subject_name_id,
            "misbehaviour": self.misbehaviour,
            "fault": self.fault,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class UserinfoRequestRecord:
    """One call of the userinfo endpoint."""

    seq: int
    received: datetime
    method: str
    token_valid: bool
    client_id: str = ""
    subject_name_id: str = ""
    signed: bool = False
    """The answer was a signed JWT (``application/jwt``)."""
    status: int = 0
    error: str = ""
    misbehaviour: str = ""
    fault: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "userinfo",
            "seq": self.seq,
            "received": self.received.isoformat(),
            "method": self.method,
            "token_valid": self.token_valid,
            "client_id": self.client_id,
            "subject_name_id": self.subject_name_id,
            "signed": self.signed,
            "status": self.status,
            "error": self.error,
            "misbehaviour": self.misbehaviour,
            "fault": self.fault,
        }


@dataclass(slots=True)
class IntrospectionRecord:
    """One call of the introspection endpoint (RFC 7662)."""

    seq: int
    received: datetime
    client_id: str
    client_auth: str
    client_authenticated: bool
    active: bool = False
    status: int = 0
    error: str = ""
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "introspection",
            "seq": self.seq,
            "received": self.received.isoformat(),
            "client_id": self.client_id,
            "client_auth": self.client_auth,
            "client_authenticated": self.client_authenticated,
            "active": self.active,
            "status": self.status,
            "error": self.error,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class LogoutRecord:
    """One end-session request."""

    seq: int
    received: datetime
    method: str
    params: dict[str, str]
    client_id: str
    id_token_hint_valid: bool
    post_logout_redirect_uri: str
    redirect_uri_registered: bool
    state: str
    session_ended: bool = False
    subject_name_id: str = ""
    status: int = 0
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "logout",
            "seq": self.seq,
            "received": self.received.isoformat(),
            "method": self.method,
            "client_id": self.client_id,
            "id_token_hint_valid": self.id_token_hint_valid,
            "post_logout_redirect_uri": self.post_logout_redirect_uri,
            "redirect_uri_registered": self.redirect_uri_registered,
            "state": self.state,
            "session_ended": self.session_ended,
            "subject_name_id": self.subject_name_id,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class CibaRequestRecord:
    """One backchannel authentication request, followed through its polls."""

    seq: int
    received: datetime
    client_id: str
    login_hint: str
    scope: str
    acr_values: str
    binding_message: str
    auth_req_id: str = ""
    status: str = "refused"
    """``pending``, ``approved``, ``denied``, ``expired``, ``issued`` (tokens delivered), or ``refused``."""
    error: str = ""
    polls: list[str] = field(default_factory=list)
    """What each poll of the token endpoint was answered: an OAuth error, or ``tokens``."""
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "ciba",
            "seq": self.seq,
            "received": self.received.isoformat(),
            "client_id": self.client_id,
            "login_hint": self.login_hint,
            "scope": self.scope,
            "acr_values": self.acr_values,
            "binding_message": self.binding_message,
            "auth_req_id": self.auth_req_id,
            "status": self.status,
            "error": self.error,
            "polls": list(self.polls),
            "findings": [f.to_dict() for f in self.findings],
        }


PscRecord = (
    AuthorizationRecord
    | TokenRequestRecord
    | UserinfoRequestRecord
    | IntrospectionRecord
    | LogoutRecord
    | CibaRequestRecord
)
RecordT = TypeVar("RecordT", bound=PscRecord)


class PscRecords:
    """The records of every kind, thread-safe, numbered by one position that only grows."""

    def __init__(self) -> None:
        self._items: dict[RecordKind, list[PscRecord]] = {kind: [] for kind in RECORD_KINDS}
        self._seq = 0
        self._cond = threading.Condition()

    def next_seq(self) -> int:
        """A position for a new record (taken before it is built, so records are numbered in order)."""
        with self._cond:
            self._seq += 1
            return self._seq

    def add(self, kind: RecordKind, record: RecordT) -> RecordT:
        with self._cond:
            self._items[kind].append(record)
            self._cond.notify_all()
        return record

    def changed(self) -> None:
        """Wake the waiters after a record was updated (a login completed, a CIBA request approved)."""
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget every record; positions keep counting (a mark taken before stays meaningful)."""
        with self._cond:
            for items in self._items.values():
                items.clear()

    def mark(self) -> int:
        with self._cond:
            return self._seq

    def of(self, kind: RecordKind) -> list[PscRecord]:
        with self._cond:
            return list(self._items[kind])

    def since(self, kind: RecordKind, after: int) -> list[PscRecord]:
        with self._cond:
            return [r for r in self._items[kind] if r.seq > after]

    def wait_for(
        self,
        kind: RecordKind,
        after: int = 0,
        timeout_s: float = 5.0,
        predicate: Callable[[Any], bool] = lambda record: True,
    ) -> PscRecord | None:
        """First record of ``kind`` after position ``after`` matching ``predicate``, waiting up to ``timeout_s``.

        The predicate is asked again when a record changes, so a scenario can wait for an
        authorization to reach ``code-issued``. Returns None on timeout, never hangs.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for record in self._items[kind]:
                    if record.seq > after and predicate(record):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
