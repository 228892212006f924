"""The DMP simulator as scenarios and the CLI see it: start, stop, reset, patients, faults, records.

:class:`DmpSimulator` assembles the parts (the store, VIHF verification against the test
PKI, the SOAP service, the HTTPS server, the recorder) behind the few operations a
scenario needs: set the patients up, point the SUT at :attr:`DmpSimulator.url`, let it
feed or consult the DMP, then read :attr:`DmpSimulator.submissions` (or wait for one) and
:attr:`DmpSimulator.recorder`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from harness.findings import Finding
from harness.pki import TestPki
from harness.simulators.dmp.ebxml import patient_key
from harness.simulators.dmp.faults import DmpFault, DmpFaultKind, FaultSwitch, as_fault
from harness.simulators.dmp.records import QueryCall, Retrieval, Submission, TdCall, Transaction, Update
from harness.simulators.dmp.server import DmpServer, Limits, body_limit, server_ssl_context
from harness.simulators.dmp.service import DmpService, HttpAnswer, Operation
from harness.simulators.dmp.store import DmpStore, PatientState, StoredEntry
from harness.simulators.dmp.vihf import VihfVerifier
from harness.simulators.lifecycle import ServedSimulator
from harness.simulators.recording import Exchange, ExchangeRecorder

PATH = "/dmp"
REPOSITORY_UNIQUE_ID = "2.25.141059378962447888499020507972655525648"
"""The simulated DMP repository's ``repositoryUniqueId`` (a UUID-derived OID, the simulator's own)."""
DEFAULT_MAX_ATTACHMENT = 20 * 1024 * 1024

T = TypeVar("T", bound=Transaction)


class _Log:
    """One kind of transaction, in arrival order since the last reset; ``seq`` is the position in it (1-based)."""

    name = "DMP"

    def __init__(self) -> None:
        self.items: list[Transaction] = []

    def add(self, item: Transaction) -> None:
        item.seq = len(self.items) + 1
        self.items.append(item)

    def clear(self) -> None:
        self.items.clear()

    def mark(self) -> int:
        return len(self.items)

    def after(self, mark: int) -> list[Transaction]:
        return self.items[max(0, mark) :]


class DmpSimulator(ServedSimulator):
    """A simulated DMP on loopback: SOAP 1.2 + MTOM over HTTPS with mutual TLS, VIHF verified.

    Example::

        with DmpSimulator(pki) as dmp:
            dmp.set_patient("279035121518989", "1.2.250.1.213.1.4.10")
            sut.configure_dmp(dmp.url, pki.ca_bundle_pem, pki.organisation.chain_pem, pki.organisation.key_pem)
            mark = dmp.submission_mark()
            ...  # the professional validates a document
            submission = dmp.wait_for_submission(mark, timeout=10)
            assert submission is not None and submission.accepted
    """

    def __init__(
        self,
        pki: TestPki,
        port: int = 0,
        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT,
        validator: Callable[[Submission], list[Finding]] | None = None,
        *,
        host: str = "127.0.0.1",
        socket_timeout_s: float = 10.0,
        request_timeout_s: float = 60.0,
    ) -> None:
        if max_attachment_bytes < 1:
            raise ValueError("max_attachment_bytes must be positive")
        self.pki = pki
        self.host = host
        self.port = port
        self.max_attachment_bytes = max_attachment_bytes
        self.recorder = ExchangeRecorder()
        """Every exchange (simulator ``dmp``; protocol ``soap12``, or ``http``/``tls`` for failed requests)."""
        self.limits = Limits(
            max_body=body_limit(max_attachment_bytes),
            socket_timeout_s=socket_timeout_s,
            request_timeout_s=request_timeout_s,
        )
        self._store = DmpStore()
        self._faults = FaultSwitch()
        self._service = DmpService(
            self._store,
            VihfVerifier(pki.ca_bundle_path),
            self._faults,
            path=PATH,
            repository_unique_id=REPOSITORY_UNIQUE_ID,
            max_attachment_bytes=max_attachment_bytes,
            validator=validator,
        )
        self._server: DmpServer | None = None
        self._cond = threading.Condition()
        self._logs: dict[type[Transaction], _Log] = {
            kind: _Log() for kind in (Submission, Update, TdCall, QueryCall, Retrieval)
        }

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> DmpSimulator:
        """Bind and serve in a background thread (a second call does nothing)."""
        if self._server is not None:
            return self
        context = server_ssl_context(self.pki.server.chain_path, self.pki.server.key_path, self.pki.ca_bundle_path)
        server = DmpServer(
            self._service.handle, self.recorder, self.limits, self.host, self.port, context, self._publish
        )
        self._server = server
        server.start()
        return self

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT/dmp``.

        Raises:
            RuntimeError: the simulator is not started (the port is chosen when it binds).
        """
        return self.served_url("https", PATH)

    @property
    def repository_unique_id(self) -> str:
        return REPOSITORY_UNIQUE_ID

    def describe(self) -> dict[str, Any]:
        """What a person or a SUT configuration needs to reach the simulator."""
        return {
            "service": "dmp",
            "endpoint": self.url,
            "soap_version": "1.2",
            "mtom": True,
            "mutual_tls": True,
            "ca_bundle": str(self.pki.ca_bundle_path),
            "organisation": {
                "cert_path": str(self.pki.organisation.cert_path),
                "chain_path": str(self.pki.organisation.chain_path),
                "key_path": str(self.pki.organisation.key_path),
            },
            "actions": {op.label: op.action for op in Operation},
            "repository_unique_id": REPOSITORY_UNIQUE_ID,
            "max_attachment_bytes": self.max_attachment_bytes,
            "patients": len(self._store.patients),
            "fault": self.fault.kind.value if self.fault else None,
        }

    # -- steering --------------------------------------------------------------------------------
    def set_patient(
        self,
        matricule: str,
        oid: str,
        dmp_status: str = "EXISTANT",
        authorization: str = "VALIDE",
        feed_opposition: bool = False,
        consultation_opposition: bool = False,
    ) -> PatientState:
        """Make the DMP know a patient (or change what it knows); TD0.2 answers from this state."""
        return self._store.set_patient(
            PatientState(
                matricule=matricule,
                oid=oid,
                dmp_status=dmp_status,
                authorization=authorization,
                feed_opposition=feed_opposition,
                consultation_opposition=consultation_opposition,
            )
        )

    def patient(self, patient_cx: str) -> PatientState | None:
        """The state of the patient a CX value names, or None."""
        return self._store.patient(patient_cx)

    def set_fault(self, fault: DmpFault | DmpFaultKind | str, count: int | None = None) -> DmpFault:
        """Inject ``fault`` into every following call it affects, or only the next ``count``."""
        if count is not None:
            fault = as_fault(fault).times(count)
        return self._faults.set(fault)

    def clear_fault(self) -> None:
        self._faults.clear()

    @property
    def fault(self) -> DmpFault | None:
        return self._faults.current()

    @property
    def validator(self) -> Callable[[Submission], list[Finding]] | None:
        return self._service.validator

    @validator.setter
    def validator(self, check: Callable[[Submission], list[Finding]] | None) -> None:
        self._service.validator = check

    def reset(self) -> None:
        """Back to a fresh state: no exchange, no patient, no document, no fault, no transaction.

        Transaction positions restart (``len(simulator.submissions)`` is the mark to wait after);
        the recorder's marks keep counting, as :meth:`ExchangeRecorder.clear` promises.
        """
        self.recorder.clear()
        self._store.clear()
        self._faults.clear()
        with self._cond:
            for log in self._logs.values():
                log.clear()

    # -- what happened ---------------------------------------------------------------------------
    @property
    def submissions(self) -> list[Submission]:
        """Every ITI-41 received since the last reset (refused ones included), in arrival order."""
        return self._items(Submission)

    @property
    def updates(self) -> list[Update]:
        """Every ITI-57 received since the last reset."""
        return self._items(Update)

    @property
    def td_calls(self) -> list[TdCall]:
        """Every TD0.2 and TD0.3 received since the last reset."""
        return self._items(TdCall)

    @property
    def queries(self) -> list[QueryCall]:
        """Every ITI-18 received since the last reset."""
        return self._items(QueryCall)

    @property
    def retrievals(self) -> list[Retrieval]:
        """Every ITI-43 received since the last reset."""
        return self._items(Retrieval)

    def submission_mark(self) -> int:
        """A position for :meth:`wait_for_submission` (``len(self.submissions)``): submissions after it are new."""
        with self._cond:
            return self._logs[Submission].mark()

    def mark(self, kind: type[Transaction]) -> int:
        """The same for any kind of transaction (``Update``, ``TdCall``, ``QueryCall``, ``Retrieval``)."""
        with self._cond:
            return self._logs[kind].mark()

    def wait_for_submission(self, after: int, timeout: float) -> Submission | None:
        """The first submission after the first ``after`` ones (``after = len(self.submissions)`` taken
        before the SUT acts), waiting up to ``timeout`` seconds.

        Returns None on timeout (a scenario turns that into a finding, never a hang).
        """
        return self.wait_for(Submission, after, timeout)

    def wait_for(self, kind: type[T], after: int, timeout: float) -> T | None:
        """The first transaction of ``kind`` after position ``after``, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                found = self._logs[kind].after(after)
                if found:
                    item = found[0]
                    assert isinstance(item, kind)
                    return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def entries(self, patient_cx: str) -> list[StoredEntry]:
        """The entries stored for a patient (every version and status), in the order they were stored."""
        key = patient_key(patient_cx)
        if key is None:
            return []
        return self._store.for_patient(key)

    def entry(self, entry_uuid: str) -> StoredEntry | None:
        with self._store.lock:
            return self._store.entries.get(entry_uuid)

    # -- internals -------------------------------------------------------------------------------
    def _items(self, kind: type[T]) -> list[T]:
        with self._cond:
            return [item for item in self._logs[kind].items if isinstance(item, kind)]

    def _publish(self, answer: HttpAnswer, exchange: Exchange) -> None:
        transaction = answer.transaction
        if transaction is None:
            return
        transaction.exchange = exchange
        with self._cond:
            self._logs[type(transaction)].add(transaction)
            self._cond.notify_all()
