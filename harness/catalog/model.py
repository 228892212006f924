"""The requirement model, shaped like ANS's requirements repository (REM).

One :class:`Requirement` per REM reference (``INS/va1.42``), holding its
compliance scenarios (``INS/va1.42.01``) and, per scenario, the expected proofs
(``INS/va1.42.01.01``). Ids, profiles, nature and proof ids are ANS's, exact;
statements and scenario texts are our own paraphrases (ANS grants no licence for
its wording).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

GENERAL_PROFILE = "Général"
"""The profile every product has; a requirement in any other profile is conditional."""


class Nature(enum.StrEnum):
    EXIGENCE = "EXIGENCE"
    """A requirement (DOIT)."""
    PRECONISATION = "PRECONISATION"
    """A recommendation (PEUT)."""


class ProofKind(enum.StrEnum):
    """What an expected proof is, so the harness knows what it can produce itself."""

    DEMONSTRATION = "demonstration"
    VIDEO = "video"
    SCREENSHOT = "screenshot"
    LOG = "log"
    SMTP_SOURCE = "smtp-source"
    CONFIGURATION_EXTRACT = "configuration-extract"
    CODE_EXTRACT = "code-extract"
    FILE = "file"
    DOCUMENTATION = "documentation"
    CNDA_CERTIFICATE = "cnda-certificate"
    WRITTEN_COMMITMENT = "written-commitment"
    TEST_PLATFORM_REFERENCE = "test-platform-reference"

    @property
    def needs_vendor(self) -> bool:
        """True for proofs only the vendor can supply (never automated)."""
        return self in {
            ProofKind.DOCUMENTATION,
            ProofKind.CNDA_CERTIFICATE,
            ProofKind.WRITTEN_COMMITMENT,
            ProofKind.TEST_PLATFORM_REFERENCE,
        }


@dataclass(frozen=True, slots=True)
class ExpectedProof:
    """A proof ANS expects for a scenario: its id (exact), kind and our wording."""

    ref: str
    kind: ProofKind
    text: str


@dataclass(frozen=True, slots=True)
class ComplianceScenario:
    """An ANS compliance scenario: its id, a one-line summary, steps, expected proofs."""

    ref: str
    summary: str
    steps: tuple[str, ...]
    proofs: tuple[ExpectedProof, ...]


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a REM.

    Attributes:
        rem: the REM (``LGC``).
        ref: the REM reference (``INS/va1.42``).
        va1_refs: vague-1 DSR references (``LGC.INS.52``); several for merged rules.
        socle_ref: the parent socle requirement (``SC.INS/va1.42``), if any.
        wave: ``va1`` (carried from vague 1) or ``va2``.
        section_id, section, bloc, fonction: ANS's classification.
        nature: EXIGENCE or PRECONISATION.
        profile: ANS profile; ``Général`` unless conditional.
        status: ANS arbitration (``Approuvée``, ``A retravailler``, ``Obsolète``).
        statement: our paraphrase of the requirement.
        scenarios: its compliance scenarios (may be empty in ANS's data).
        source: file and entry the requirement was loaded from.
    """

    rem: str
    ref: str
    va1_refs: tuple[str, ...]
    socle_ref: str
    wave: str
    section_id: str
    section: str
    bloc: str
    fonction: str
    nature: Nature
    profile: str
    status: str
    statement: str
    scenarios: tuple[ComplianceScenario, ...]
    source: str = ""

    @property
    def conditional(self) -> bool:
        """ANS's rule: a requirement is conditional when its profile is not Général."""
        return self.profile != GENERAL_PROFILE

    @property
    def area(self) -> str:
        """The first segment of the section id, upper-cased (INS, DMP, MSS...)."""
        return self.section_id.split("/")[0].upper()

    @property
    def proofs(self) -> tuple[ExpectedProof, ...]:
        return tuple(p for s in self.scenarios for p in s.proofs)


@dataclass(slots=True)
class Catalog:
    """All requirements of one or more REMs, indexed by ``(rem, ref)``."""

    requirements: dict[str, Requirement] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()
    version: str = ""
    """Content hash of the data files, recorded in every run."""

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self.requirements.values())

    def __len__(self) -> int:
        return len(self.requirements)

    def __contains__(self, ref: object) -> bool:
        return ref in self.requirements

    def get(self, ref: str) -> Requirement:
        """The requirement with this REM reference; KeyError naming it otherwise."""
        try:
            return self.requirements[ref]
        except KeyError:
            raise KeyError(f"unknown requirement {ref!r}") from None

    def scenario(self, ref: str) -> tuple[Requirement, ComplianceScenario]:
        """The requirement and compliance scenario with this scenario id."""
        for req in self.requirements.values():
            for sc in req.scenarios:
                if sc.ref == ref:
                    return req, sc
        raise KeyError(f"unknown compliance scenario {ref!r}")

    def select(
        self,
        sections: Iterable[str] = (),
        profiles: Iterable[str] = (),
    ) -> list[Requirement]:
        """Requirements filtered by area (INS, DMP...) and by profile name."""
        wanted_sections = {s.upper() for s in sections}
        wanted_profiles = set(profiles)
        return [
            r
            for r in self.requirements.values()
            if (not wanted_sections or r.area in wanted_sections)
            and (not wanted_profiles or r.profile in wanted_profiles)
        ]
