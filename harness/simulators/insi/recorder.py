"""An exchange recorder that a scenario reset can clear without breaking earlier marks.

The simulator's ``reset()`` must start each scenario with an empty record, but the
evidence collector marks every recorder *before* the scenario's fixtures reset the
simulator (``harness/plugin``). A plain clear would leave that mark pointing past the
end of the list, and the scenario's exchanges would never reach its evidence. This
recorder keeps positions absolute: clearing drops the stored exchanges but not the
count, so a mark taken before the clear still means "everything after this point".

It reaches into :class:`~harness.simulators.recording.ExchangeRecorder`'s internals
(``_items``, ``_cond``); a ``clear()`` with these semantics belongs in that class and
this subclass should go when it gets one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.simulators.recording import Exchange, ExchangeRecorder


class ClearableRecorder(ExchangeRecorder):
    """:class:`ExchangeRecorder` plus :meth:`clear`, with marks that survive it."""

    def __init__(self) -> None:
        super().__init__()
        self._dropped = 0

    def clear(self) -> None:
        """Forget the recorded exchanges; positions (marks, ``seq``) keep counting."""
        with self._cond:
            self._dropped += len(self._items)
            self._items.clear()

    def record(self, exchange: Exchange) -> Exchange:
        with self._cond:
            exchange.seq = self._dropped + len(self._items) + 1
            self._items.append(exchange)
            self._cond.notify_all()
        return exchange

    def mark(self) -> int:
        with self._cond:
            return self._dropped + len(self._items)

    def since(self, mark: int, action: str | None = None) -> list[Exchange]:
        with self._cond:
            items = self._items[max(0, mark - self._dropped) :]
        return [e for e in items if action is None or e.action == action]

    def wait_for(
        self,
        mark: int,
        predicate: Callable[[Exchange], bool] = lambda e: True,
        timeout_s: float = 5.0,
    ) -> Exchange | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for exchange in self._items[max(0, mark - self._dropped) :]:
                    if predicate(exchange):
                        return exchange
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
