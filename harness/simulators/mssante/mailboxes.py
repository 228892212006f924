"""The operator's BALs (boîtes aux lettres): who may log in, who may receive, and the mail each holds.

SMTP and IMAP are served by two different libraries (aiosmtpd and Twisted) in two
different threads; they meet here. A message accepted over SMTP for a known BAL is
appended to that BAL's INBOX, where the IMAP server shows it; the harness puts mail
in the SUT's BAL the same way (:meth:`MailStore.deliver`). Each BAL has its own lock-free
list under one store lock: a broken message for one BAL never touches another's mail.

BAL types follow JDV_J139-TypeBAL-RASS (``PER``, ``ORG``, ``APP``, ``CAB``,
protocols.md §3.5); patient BALs (``<matricule INS>@patient.mssante.fr``, §3.3) are
created on first delivery for any 15-digit local part, as the operator side of Mon
espace santé accepts mail for every patient who has one.
"""

from __future__ import annotations

import re
import threading
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness.simulators.recording import utcnow

PATIENT_DOMAIN = "patient.mssante.fr"
BAL_TYPES = ("PER", "ORG", "APP", "CAB", "PATIENT")
_PATIENT_ADDRESS = re.compile(rf"^\d{{15}}@{re.escape(PATIENT_DOMAIN)}$")


@dataclass(slots=True)
class StoredMail:
    """One message in a BAL: its bytes, when it arrived, its IMAP UID and flags."""

    uid: int
    raw: bytes
    received: datetime
    flags: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Mailbox:
    """A BAL: its address, type, owner label, login password, and its INBOX."""

    address: str
    kind: str
    owner: str = ""
    password: str = ""
    """Empty: nobody can log in (a correspondent's BAL the harness only reads)."""
    inbox: list[StoredMail] = field(default_factory=list)
    next_uid: int = 1
    uid_validity: int = 1


def normalised(address: str) -> str:
    """Addresses compare case-insensitively (local parts of MSSanté BALs are not case-sensitive in practice)."""
    return address.strip().strip("<>").lower()


def is_patient_address(address: str) -> bool:
    return bool(_PATIENT_ADDRESS.match(normalised(address)))


class MailStore:
    """Every BAL of the simulated operator, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boxes: dict[str, Mailbox] = {}
        self._seed: list[Mailbox] = []

    # -- set-up ---------------------------------------------------------------------------------
    def add(self, address: str, kind: str, owner: str = "", password: str = "") -> Mailbox:
        """Create (or replace) a BAL; ``kind`` is a JDV_J139 type or ``PATIENT``."""
        if kind not in BAL_TYPES:
            raise ValueError(f"unknown BAL type {kind!r}; known: {', '.join(BAL_TYPES)}")
        if "@" not in address:
            raise ValueError(f"not a mail address: {address!r}")
        box = Mailbox(normalised(address), kind, owner, password)
        with self._lock:
            self._boxes[box.address] = box
        return box

    def seed(self, boxes: list[Mailbox]) -> None:
        """The BALs :meth:`reset` comes back to."""
        self._seed = [Mailbox(b.address, b.kind, b.owner, b.password) for b in boxes]
        self.reset()

    def seeded(self) -> list[Mailbox]:
        """The seeded BALs, in seed-file order."""
        if not self._seed:
            raise LookupError("the operator has no seeded BAL")
        return list(self._seed)

    def reset(self) -> None:
        """Back to the seeded BALs, every INBOX empty."""
        with self._lock:
            self._boxes = {b.address: Mailbox(b.address, b.kind, b.owner, b.password) for b in self._seed}

    # -- queries --------------------------------------------------------------------------------
    def get(self, address: str) -> Mailbox | None:
        with self._lock:
            return self._boxes.get(normalised(address))

    def accepts(self, address: str) -> bool:
        """Whether mail for ``address`` is delivered here (a known BAL, or any patient BAL)."""
        return self.get(address) is not None or is_patient_address(address)

    def authenticate(self, login: str, password: str) -> Mailbox | None:
        """The BAL whose login (its address) and password these are, or None."""
        box = self.get(login)
        if box is None or not box.password or box.password != password:
            return None
        return box

    def addresses(self) -> list[str]:
        with self._lock:
            return sorted(self._boxes)

    def messages(self, address: str) -> list[StoredMail]:
        """A copy of the BAL's INBOX (empty for an unknown BAL)."""
        with self._lock:
            box = self._boxes.get(normalised(address))
            return list(box.inbox) if box is not None else []

    # -- changes --------------------------------------------------------------------------------
    def deliver(self, address: str, raw: bytes) -> StoredMail:
        """Append ``raw`` to the INBOX of ``address`` (a patient BAL is created on first delivery).

        Raises:
            KeyError: no such BAL.
        """
        key = normalised(address)
        with self._lock:
            box = self._boxes.get(key)
            if box is None:
                if not _PATIENT_ADDRESS.match(key):
                    raise KeyError(f"no BAL {address!r} at this operator")
                box = self._boxes[key] = Mailbox(key, "PATIENT")
            mail = StoredMail(box.next_uid, raw, utcnow())
            box.next_uid += 1
            box.inbox.append(mail)
            return mail

    def set_flags(self, address: str, uid: int, flags: set[str], mode: int) -> set[str]:
        """Replace (``mode`` 0), add (1) or remove (-1) flags of one message; its flags after."""
        with self._lock:
            box = self._boxes.get(normalised(address))
            for mail in box.inbox if box is not None else []:
                if mail.uid == uid:
                    if mode == 0:
                        mail.flags = set(flags)
                    elif mode > 0:
                        mail.flags |= flags
                    else:
                        mail.flags -= flags
                    return set(mail.flags)
        return set()

    def expunge(self, address: str) -> list[int]:
        """Remove the messages flagged ``\\Deleted``; their UIDs."""
        with self._lock:
            box = self._boxes.get(normalised(address))
            if box is None:
                return []
            gone = [m.uid for m in box.inbox if "\\Deleted" in m.flags]
            box.inbox = [m for m in box.inbox if "\\Deleted" not in m.flags]
            return gone


def load_mailboxes(path: Path) -> list[Mailbox]:
    """The BALs of a seed file (``fixtures/mssante/mailboxes.toml``: ``[[mailbox]]`` address, type, owner, password).

    Raises:
        ValueError: a row misses its address or has an unknown type (the message names it).
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    boxes: list[Mailbox] = []
    for index, row in enumerate(data.get("mailbox", []), start=1):
        address, kind = str(row.get("address", "")), str(row.get("type", ""))
        if "@" not in address or kind not in BAL_TYPES:
            raise ValueError(f"{path}: mailbox {index} needs an address and a type among {', '.join(BAL_TYPES)}")
        boxes.append(Mailbox(normalised(address), kind, str(row.get("owner", "")), str(row.get("password", ""))))
    return boxes
