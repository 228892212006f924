"""What the Pro Santé Connect simulator can do wrong on purpose: misbehaving tokens and failing endpoints.

A practice software logging professionals in with PSC must refuse a token that is not good
enough (wrong signature, issuer, audience, nonce, level, expired, unsigned) and survive the
provider being slow or answering garbage. A scenario sets a :class:`PscMisbehaviour` (the next
tokens are wrong in one way) or a :class:`PscFault` (an endpoint fails); each applies to every
call it affects until cleared, or only to the next ``count``, and each is named in the recorded
exchange's ``meta`` (``misbehaviour``, ``fault``). The switches are the simulators' shared one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from harness.simulators import faults

MAX_DELAY_S = 120.0
"""The longest ``token-timeout`` delay accepted: a forgotten fault must not hold a thread for long."""
DEFAULT_DELAY_S = 10.0


class PscMisbehaviourKind(enum.StrEnum):
    """How the next tokens are wrong (the ID token; the access token stays good, so userinfo still works)."""

    BAD_SIGNATURE = "bad-signature"
    """Signed by another RSA key published under the same ``kid``: the signature does not verify."""
    WRONG_ISSUER = "wrong-issuer"
    """``iss`` is another realm's issuer."""
    WRONG_AUDIENCE = "wrong-audience"
    """``aud`` and ``azp`` name another client."""
    EXPIRED = "expired"
    """``iat`` 10 minutes ago, ``exp`` 5 minutes ago."""
    NONCE_MISMATCH = "nonce-mismatch"
    """``nonce`` is not the one of the authorization request."""
    LOW_ACR = "low-acr"
    """``acr`` is ``eidas0`` [I]: the sources only name ``eidas1``, the lower value is inferred from eIDAS levels."""
    ALG_NONE = "alg-none"
    """An unsigned JWT (``alg: none``, empty signature)."""
    USERINFO_SUB_MISMATCH = "userinfo-sub-mismatch"
    """The userinfo answer's ``sub`` differs from the ID token's (applies to userinfo, not to the token)."""


TOKEN_MISBEHAVIOURS = tuple(k for k in PscMisbehaviourKind if k is not PscMisbehaviourKind.USERINFO_SUB_MISMATCH)
"""The misbehaviours taken when tokens are issued."""


class PscFaultKind(enum.StrEnum):
    """Which endpoint fails, and how."""

    TOKEN_TIMEOUT = "token-timeout"
    """The token endpoint holds its answer ``delay_s`` seconds (cut when the simulator stops)."""
    MALFORMED_JWKS = "malformed-jwks"
    """The JWKS endpoint answers 200 ``application/json`` that is not JSON."""
    UNKNOWN_KID = "unknown-kid"
    """The next ID tokens carry a ``kid`` the JWKS does not list (taken when tokens are issued)."""
    HUGE_USERINFO = "huge-userinfo"
    """The userinfo answer is valid JSON of about 4 MB (a padding claim)."""
    NON_JSON_USERINFO = "non-json-userinfo"
    """The userinfo answer is declared ``application/json`` but is an HTML page."""


@dataclass(frozen=True, slots=True)
class PscMisbehaviour:
    """A misbehaviour to apply, for how many affected answers (None = until cleared)."""

    kind: PscMisbehaviourKind
    count: int | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (None means until cleared)")


@dataclass(frozen=True, slots=True)
class PscFault:
    """A fault to inject: its kind, the delay of ``token-timeout``, how many affected calls (None = until cleared)."""

    kind: PscFaultKind
    delay_s: float = 0.0
    count: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= MAX_DELAY_S:
            raise ValueError(f"delay_s must be between 0 and {MAX_DELAY_S:g} s")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (None means until cleared)")

    def times(self, count: int | None) -> PscFault:
        return replace(self, count=count)


def as_misbehaviour(value: PscMisbehaviour | PscMisbehaviourKind | str, count: int | None = None) -> PscMisbehaviour:
    """``value`` itself (``count`` overriding its own when given), or the misbehaviour of a kind."""
    if isinstance(value, PscMisbehaviour):
        return value if count is None else PscMisbehaviour(value.kind, count)
    return PscMisbehaviour(PscMisbehaviourKind(value), count)


def as_fault(value: PscFault | PscFaultKind | str, delay_s: float | None = None, count: int | None = None) -> PscFault:
    """``value`` itself, or the fault of a kind (``token-timeout`` waits 10 s unless ``delay_s`` says)."""
    if isinstance(value, PscFault):
        fault = value if delay_s is None else replace(value, delay_s=delay_s)
    else:
        kind = PscFaultKind(value)
        default = DEFAULT_DELAY_S if kind is PscFaultKind.TOKEN_TIMEOUT else 0.0
        fault = PscFault(kind, delay_s=default if delay_s is None else delay_s)
    return fault if count is None else fault.times(count)


class MisbehaviourSwitch(faults.FaultSwitch[PscMisbehaviour, PscMisbehaviourKind]):
    """The misbehaviour set now, shared by the server's threads."""

    def set(self, misbehaviour: PscMisbehaviour) -> PscMisbehaviour:
        return self._set(misbehaviour)


class FaultSwitch(faults.FaultSwitch[PscFault, PscFaultKind]):
    """The fault set now, shared by the server's threads."""

    def set(self, fault: PscFault) -> PscFault:
        return self._set(fault)
