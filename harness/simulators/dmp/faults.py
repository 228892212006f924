"""Fault injection for the DMP simulator: the ways the national service lets a practice down.

A conforming practice must survive the DMP being down, slow, answering a SOAP fault, or
accepting a submission only partly (``PartialSuccess`` with a warning). A scenario sets one
fault; it applies to every call it affects until cleared, or only to the next ``count``.
The switch holding it is the one shared by the simulators (:mod:`harness.simulators.faults`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import ClassVar

from harness.simulators import faults


class DmpFaultKind(enum.StrEnum):
    """What goes wrong."""

    UNAVAILABLE = "unavailable"
    """HTTP 503 Service Unavailable, no SOAP envelope (every operation)."""
    SLOW = "slow"
    """The normal answer comes after ``delay_s`` seconds (every operation)."""
    SOAP_FAULT = "soap-fault"
    """A SOAP 1.2 ``env:Receiver`` fault; nothing is stored (every operation)."""
    PARTIAL_SUCCESS = "partial-success"
    """ITI-41 stores the submission but answers ``PartialSuccess`` with a warning ``RegistryError``."""


@dataclass(frozen=True, slots=True)
class DmpFault:
    """A fault to inject: its kind, and its parameters.

    Attributes:
        kind: what goes wrong.
        delay_s: seconds to wait before answering (``SLOW``).
        count: how many calls it affects before clearing itself; None = until cleared.
        message: the text of the SOAP fault or of the warning (a default is used when empty).

    Ready-made faults: ``DmpFault.UNAVAILABLE``, ``DmpFault.SLOW`` (10 s), ``DmpFault.SOAP_FAULT``,
    ``DmpFault.PARTIAL_SUCCESS``.
    """

    UNAVAILABLE: ClassVar[DmpFault]
    SLOW: ClassVar[DmpFault]
    SOAP_FAULT: ClassVar[DmpFault]
    PARTIAL_SUCCESS: ClassVar[DmpFault]

    kind: DmpFaultKind
    delay_s: float = 0.0
    count: int | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (None means until cleared)")

    def times(self, count: int | None) -> DmpFault:
        """The same fault, limited to the next ``count`` affected calls."""
        return replace(self, count=count)

    @property
    def text(self) -> str:
        if self.message:
            return self.message
        if self.kind is DmpFaultKind.PARTIAL_SUCCESS:
            return "Soumission enregistrée partiellement (avertissement injecté par le simulateur)"
        return "Erreur technique du service DMP (faute injectée par le simulateur)"


DmpFault.UNAVAILABLE = DmpFault(DmpFaultKind.UNAVAILABLE)
DmpFault.SLOW = DmpFault(DmpFaultKind.SLOW, delay_s=10.0)
DmpFault.SOAP_FAULT = DmpFault(DmpFaultKind.SOAP_FAULT)
DmpFault.PARTIAL_SUCCESS = DmpFault(DmpFaultKind.PARTIAL_SUCCESS)


def as_fault(fault: DmpFault | DmpFaultKind | str) -> DmpFault:
    """``fault`` itself, or the ready-made fault of a kind (``slow`` waits 10 s)."""
    if isinstance(fault, DmpFault):
        return fault
    kind = DmpFaultKind(fault)
    return {
        DmpFaultKind.UNAVAILABLE: DmpFault.UNAVAILABLE,
        DmpFaultKind.SLOW: DmpFault.SLOW,
        DmpFaultKind.SOAP_FAULT: DmpFault.SOAP_FAULT,
        DmpFaultKind.PARTIAL_SUCCESS: DmpFault.PARTIAL_SUCCESS,
    }[kind]


class FaultSwitch(faults.FaultSwitch[DmpFault, DmpFaultKind]):
    """The fault currently set, shared by the server's threads; counts down affected calls."""

    def set(self, fault: DmpFault | DmpFaultKind | str) -> DmpFault:
        return self._set(as_fault(fault))
