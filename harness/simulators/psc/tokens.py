"""The Pro Santé Connect simulator's keys and JWTs: sign RS256, publish the JWKS, verify what it issued.

Everything JOSE goes through joserfc: the RSA key is generated when the simulator is built,
the JWKS lists its public half, and tokens are signed as compact JWS. The deliberately wrong
tokens a misbehaviour asks for are made the same way: a second RSA key under the same ``kid``
(``bad-signature``), joserfc's ``none`` algorithm (``alg-none``), or a ``kid`` the JWKS does not
list (``unknown-kid``). Verification is only ever of the simulator's own tokens (access tokens
at userinfo and introspection, ID tokens as logout hints).
"""

from __future__ import annotations

import secrets
import threading
import warnings
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

ALGORITHM = "RS256"


class SigningKeys:
    """The provider's signing key, a rogue twin made on demand, and the JWKS."""

    def __init__(self) -> None:
        self.kid = secrets.token_urlsafe(16)
        self._key = RSAKey.generate_key(2048, parameters={"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        self._rogue: RSAKey | None = None
        self._lock = threading.Lock()

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set the ``certs`` endpoint serves (public members only)."""
        return {"keys": [self._key.as_dict(private=False)]}

    def sign(self, claims: dict[str, Any], *, signer: str = "good", kid: str | None = None) -> str:
        """``claims`` as a compact JWT.

        Args:
            signer: ``good`` (the published key), ``rogue`` (another key, same ``kid``) or ``none``
                (``alg: none``, no signature).
            kid: the header's ``kid`` (default: the published key's).
        """
        if signer == "none":
            with warnings.catch_warnings():  # joserfc warns that "none" is deprecated: that is the point here
                warnings.simplefilter("ignore")
                return jwt.encode({"alg": "none", "typ": "JWT"}, claims, self._key, algorithms=["none"])
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid or self.kid}
        return jwt.encode(header, claims, self._rogue_key() if signer == "rogue" else self._key, algorithms=[ALGORITHM])

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a JWT this simulator signed with its published key, or None (no time check here)."""
        try:
            decoded = jwt.decode(token, self._key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError):
            return None
        if decoded.header.get("kid") != self.kid:
            return None
        return dict(decoded.claims)

    def _rogue_key(self) -> RSAKey:
        with self._lock:
            if self._rogue is None:
                self._rogue = RSAKey.generate_key(2048, parameters={"kid": self.kid, "use": "sig", "alg": ALGORITHM})
            return self._rogue
