"""Recorded exchanges: what every simulator keeps of every request it serves.

Scenarios never read sockets; they query a simulator's :class:`ExchangeRecorder`.
Exchanges are recorded whole (request and response bytes) so they can go into the
evidence pack; redaction of secrets happens when evidence is written, not here.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(slots=True)
class Exchange:
    """One request/response pair seen by a simulator.

    Attributes:
        simulator: name of the simulator (``insi``, ``dmp``...).
        protocol: ``soap12``, ``http``, ``smtp``, ``mllp``...
        action: the operation as the protocol names it (WS-Addressing action,
            HTTP method and path, SMTP command...).
        direction: ``inbound`` when the SUT called the simulator, ``outbound``
            when the harness called the SUT (e.g. an HL7 v2 feed over MLLP).
        started, ended: UTC timestamps.
        request, response: raw bytes on the wire (bodies; headers are in ``meta``).
        peer: ``host:port`` of the other side.
        tls: TLS facts (version, cipher, client certificate subject) or empty.
        meta: protocol details (HTTP headers, status, fault injected, parse notes).
        seq: position in the recorder, assigned when recorded.
    """

    simulator: str
    protocol: str
    action: str
    direction: str
    started: datetime
    ended: datetime
    request: bytes
    response: bytes
    peer: str = ""
    tls: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; bytes are kept as UTF-8 text when they decode, else base64."""
        return {
            "seq": self.seq,
            "simulator": self.simulator,
            "protocol": self.protocol,
            "action": self.action,
            "direction": self.direction,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat(),
            "peer": self.peer,
            "tls": self.tls,
            "meta": self.meta,
            "request": _bytes_to_json(self.request),
            "response": _bytes_to_json(self.response),
        }


def _bytes_to_json(data: bytes) -> dict[str, str]:
    try:
        return {"encoding": "utf-8", "data": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "data": base64.b64encode(data).decode("ascii")}


def utcnow() -> datetime:
    return datetime.now(UTC)


class ExchangeRecorder:
    """Thread-safe, append-only list of exchanges with a waitable query.

    Example:
        >>> rec = ExchangeRecorder()
        >>> mark = rec.mark()
        >>> # ... the SUT calls the simulator ...
        >>> calls = rec.since(mark, action="urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite")
    """

    def __init__(self) -> None:
        self._items: list[Exchange] = []
        self._dropped = 0
        """Exchanges forgotten by :meth:`clear`: positions stay absolute across it."""
        self._cond = threading.Condition()

    def record(self, exchange: Exchange) -> Exchange:
        with self._cond:
            exchange.seq = self._dropped + len(self._items) + 1
            self._items.append(exchange)
            self._cond.notify_all()
        return exchange

    def clear(self) -> None:
        """Forget the recorded exchanges; positions (marks, ``seq``) keep counting.

        A simulator's reset clears its record between scenarios, but the evidence
        collector may have marked the recorder just before: that mark must still mean
        "everything after this point", so a clear never rewinds the count.
        """
        with self._cond:
            self._dropped += len(self._items)
            self._items.clear()

    def mark(self) -> int:
        """A position to query from later: exchanges after it are 'new'."""
        with self._cond:
            return self._dropped + len(self._items)

    def all(self) -> list[Exchange]:
        with self._cond:
            return list(self._items)

    def since(self, mark: int, action: str | None = None) -> list[Exchange]:
        """Exchanges recorded after ``mark``, optionally only those for ``action``."""
        with self._cond:
            items = self._items[max(0, mark - self._dropped) :]
        return [e for e in items if action is None or e.action == action]

    def wait_for(
        self,
        mark: int,
        predicate: Callable[[Exchange], bool] = lambda e: True,
        timeout_s: float = 5.0,
    ) -> Exchange | None:
        """First exchange after ``mark`` matching ``predicate``, waiting up to ``timeout_s``.

        Returns None on timeout: a scenario turns that into a finding, never a hang.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for e in self._items[max(0, mark - self._dropped) :]:
                    if predicate(e):
                        return e
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
