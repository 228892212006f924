"""The fault switch the simulators share: the one injected fault in force, counted down per call.

Each simulator has its own fault kinds and ready-made faults (``insi.faults``,
``dmp.faults``), but holding the fault set by a scenario, shared by the server's
threads, and counting down the calls it affects is the same for both: it lives here
once, as :class:`FaultSwitch`, which each simulator's ``FaultSwitch`` specialises.
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar


class Fault(Protocol):
    """What the switch reads of a fault: its kind, and how many affected calls it lasts."""

    @property
    def kind(self) -> object: ...
    @property
    def count(self) -> int | None: ...


FaultT = TypeVar("FaultT", bound=Fault)
KindT = TypeVar("KindT")


class FaultSwitch(Generic[FaultT, KindT]):
    """The fault currently set, shared by the server's threads; counts down affected calls."""

    def __init__(self) -> None:
        self._fault: FaultT | None = None
        self._remaining: int | None = None
        self._lock = threading.Lock()

    def _set(self, fault: FaultT) -> FaultT:
        with self._lock:
            self._fault = fault
            self._remaining = fault.count
        return fault

    def clear(self) -> None:
        with self._lock:
            self._fault = None
            self._remaining = None

    def current(self) -> FaultT | None:
        """The fault set now, without consuming it."""
        with self._lock:
            return self._fault

    def take(self, *kinds: KindT) -> FaultT | None:
        """The fault set now if it is one of ``kinds``, counting one affected call."""
        with self._lock:
            fault = self._fault
            if fault is None or fault.kind not in kinds:
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._fault = None
                    self._remaining = None
            return fault
