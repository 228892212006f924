"""Fault injection for the Annuaire Santé simulator: the ways the directory API lets a practice down.

A practice looking up a correspondent's MSSanté address must survive the directory being down,
slow, answering garbage, or finding nobody. A scenario sets one fault; it applies to every call it
affects until cleared, or only to the next ``count``. The switch holding it is the one shared by the
simulators (:mod:`harness.simulators.faults`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from harness.simulators import faults


class AnnuaireFaultKind(enum.StrEnum):
    """What goes wrong."""

    UNAVAILABLE = "unavailable"
    """HTTP 503 with an OperationOutcome (every request)."""
    SLOW = "slow"
    """The normal answer comes after ``delay_s`` seconds (every request)."""
    MALFORMED = "malformed"
    """HTTP 200, ``application/fhir+json``, but the body is not JSON (every request)."""
    EMPTY = "empty"
    """Searches answer a searchset Bundle with ``total`` 0 and no entry (reads are not affected)."""


@dataclass(frozen=True, slots=True)
class AnnuaireFault:
    """A fault to inject: its kind, the delay of ``SLOW``, how many affected calls it lasts (None = until cleared)."""

    kind: AnnuaireFaultKind
    delay_s: float = 0.0
    count: int | None = None

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (None means until cleared)")

    def times(self, count: int | None) -> AnnuaireFault:
        """The same fault, limited to the next ``count`` affected calls."""
        return replace(self, count=count)


DEFAULT_SLOW_S = 10.0


def as_fault(fault: AnnuaireFault | AnnuaireFaultKind | str) -> AnnuaireFault:
    """``fault`` itself, or the fault of a kind (``slow`` waits 10 s)."""
    if isinstance(fault, AnnuaireFault):
        return fault
    kind = AnnuaireFaultKind(fault)
    return AnnuaireFault(kind, delay_s=DEFAULT_SLOW_S if kind is AnnuaireFaultKind.SLOW else 0.0)


class FaultSwitch(faults.FaultSwitch[AnnuaireFault, AnnuaireFaultKind]):
    """The fault currently set, shared by the server's threads; counts down affected calls."""

    def set(self, fault: AnnuaireFault | AnnuaireFaultKind | str) -> AnnuaireFault:
        return self._set(as_fault(fault))
