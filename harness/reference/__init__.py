"""Cabinet Témoin: a small GP practice system that the harness can test, and test itself with.

The reference system implements the control API (``harness/sut/openapi.yaml``) and talks
to the national-service simulators with the real protocols (INSi SOAP 1.2 over mutual
TLS, HL7 v2 over MLLP, the DMP's ITI-41 as MTOM and ITI-57 with a signed VIHF, MSSanté
SMTP and IMAP, the Annuaire Santé FHIR API, Pro Santé Connect's OpenID Connect). It
follows the INS rules by default; switchable defects
(:mod:`harness.reference.defects`) make it break one rule at a time, so every scenario
can be shown to fail on the non-conforming behaviour it is meant to catch.

It is an independent client of the harness: nothing here imports from ``harness``
outside this package, so a bug shared with the simulators or validators cannot hide.
"""

__version__ = "0.1.0"

PUBLISHER = "Segur Harness Reference"
SOFTWARE = "Cabinet Témoin"

DEFAULT_PROFILES: tuple[str, ...] = (
    "Centres de santé",
    "Stockage des copies de titres d'identité",
    "Opérateur Mailiz",
    "Médecin traitant",
    "Référentiel d'identités",
    "BAL PER-ORG",
)
"""ANS profiles the reference system claims unless told otherwise (exact ANS spelling)."""

CENTRE_DE_SANTE = "Centres de santé"
"""The profile under which INSi must be called with the organisation certificate."""
