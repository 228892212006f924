"""Fault injection for the INSi simulator: the ways the real service lets a client down.

A conforming practice must survive INSi being down, slow, answering a SOAP fault or
garbage, and the test platform's habit of turning "not found" into a fault. A
scenario sets one fault on the simulator; it applies to every operation call until
cleared, or only to the next ``count`` calls it affects.
The switch holding it is the one shared by the simulators (:mod:`harness.simulators.faults`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import ClassVar

from harness.simulators import faults


class FaultKind(enum.StrEnum):
    """What goes wrong."""

    UNAVAILABLE = "unavailable"
    """HTTP 503 Service Unavailable, no SOAP envelope."""
    SLOW = "slow"
    """The answer comes after ``delay_s`` seconds (the answer itself is normal)."""
    SOAP_FAULT = "soap-fault"
    """A SOAP 1.2 Receiver fault carrying ``siram:Erreur``."""
    MALFORMED = "malformed"
    """HTTP 200 with a truncated, unparsable envelope."""
    NOT_FOUND_AS_FAULT = "not-found-as-fault"
    """A search that finds nobody answers a SOAP fault instead of CR 01 (CNAM test-platform quirk)."""


@dataclass(frozen=True, slots=True)
class InsiFault:
    """A fault to inject: its kind, and its parameters.

    Attributes:
        kind: what goes wrong.
        delay_s: seconds to wait before answering (``SLOW``).
        count: how many calls it affects before clearing itself; None = until cleared.
        message: the text of the SOAP fault (``SOAP_FAULT``, ``NOT_FOUND_AS_FAULT``).

    The class attributes ``UNAVAILABLE``, ``SLOW``, ``SOAP_FAULT``, ``MALFORMED`` and
    ``NOT_FOUND_AS_FAULT`` are ready-made faults with default parameters, e.g.
    ``simulator.set_fault(InsiFault.UNAVAILABLE)`` or
    ``simulator.set_fault(InsiFault(FaultKind.SLOW, delay_s=2.0, count=1))``.
    """

    UNAVAILABLE: ClassVar[InsiFault]
    SLOW: ClassVar[InsiFault]
    SOAP_FAULT: ClassVar[InsiFault]
    MALFORMED: ClassVar[InsiFault]
    NOT_FOUND_AS_FAULT: ClassVar[InsiFault]

    kind: FaultKind
    delay_s: float = 0.0
    count: int | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (None means until cleared)")

    def times(self, count: int | None) -> InsiFault:
        """The same fault, limited to the next ``count`` affected calls."""
        return replace(self, count=count)

    @property
    def text(self) -> str:
        """The SOAP fault text to send for this fault."""
        if self.message:
            return self.message
        if self.kind is FaultKind.NOT_FOUND_AS_FAULT:
            return "Individu non trouvé"
        return "Erreur technique du service INSi (fault injected by the simulator)"


InsiFault.UNAVAILABLE = InsiFault(FaultKind.UNAVAILABLE)
InsiFault.SLOW = InsiFault(FaultKind.SLOW, delay_s=10.0)
InsiFault.SOAP_FAULT = InsiFault(FaultKind.SOAP_FAULT)
InsiFault.MALFORMED = InsiFault(FaultKind.MALFORMED)
InsiFault.NOT_FOUND_AS_FAULT = InsiFault(FaultKind.NOT_FOUND_AS_FAULT)


def as_fault(fault: InsiFault | FaultKind) -> InsiFault:
    """``fault`` itself, or the ready-made fault of a bare kind (``SLOW`` waits 10 s)."""
    if isinstance(fault, InsiFault):
        return fault
    presets = {f.kind: f for f in _PRESETS}
    return presets[FaultKind(fault)]


_PRESETS = (
    InsiFault.UNAVAILABLE,
    InsiFault.SLOW,
    InsiFault.SOAP_FAULT,
    InsiFault.MALFORMED,
    InsiFault.NOT_FOUND_AS_FAULT,
)


class FaultSwitch(faults.FaultSwitch[InsiFault, FaultKind]):
    """The fault currently set, shared by the server's threads; counts down affected calls."""

    def set(self, fault: InsiFault | FaultKind) -> InsiFault:
        """Set ``fault`` (a bare kind gets its default parameters); returns what was set."""
        return self._set(as_fault(fault))
