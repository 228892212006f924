"""Reading HL7 v2.5 PAM-FR identity messages from another domain, and answering them.

The practice only needs the identity part of ADT messages (A28/A31, and the admission
family that carries the same PID): strict traits, used names, identifiers with the INS
and the sender's identity-reliability code. Parsing is hl7apy's; this module picks the
PAM-FR fields out of it and never lets a malformed message escape as an exception: it
raises :class:`FeedRejected`, which becomes an AE/AR acknowledgement.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from harness.reference.model import ExternalId, InvalidInput, Traits, check_birth_date

INS_OIDS = {
    "1.2.250.1.213.1.4.8": "NIR",
    "1.2.250.1.213.1.4.9": "NIA",
    "1.2.250.1.213.1.4.10": "NIR de test",
    "1.2.250.1.213.1.4.11": "NIR de démonstration",
}
SUPPORTED_EVENTS = frozenset({"A28", "A31", "A01", "A04", "A05", "A08"})
APPLICATION = "CABINET-TEMOIN"
_COG = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


@dataclass(frozen=True, slots=True)
class ReceivedIns:
    """The INS another domain sent in PID-3."""

    matricule: str
    oid: str
    namespace: str

    def to_json(self) -> dict[str, str]:
        return {"matricule": self.matricule, "oid": self.oid, "namespace": self.namespace}


@dataclass(frozen=True, slots=True)
class FeedMessage:
    """The identity part of a PAM-FR message."""

    control_id: str
    event: str
    sending_application: str
    sending_facility: str
    traits: Traits
    ins: ReceivedIns | None
    external_ids: tuple[ExternalId, ...]
    reliability: str
    """PID-32 as received (e.g. ``VALI``, ``QUAL``); never trusted as a local status."""

    def summary(self) -> dict[str, Any]:
        return {
            "control_id": self.control_id,
            "event": self.event,
            "sender": f"{self.sending_application}^{self.sending_facility}",
            "traits": self.traits.to_json(),
            "ins": self.ins.to_json() if self.ins else None,
            "reliability": self.reliability,
        }


class FeedRejected(Exception):
    """A message the practice cannot take: answered with AE or AR and an ERR segment."""

    def __init__(self, ack_code: str, error_code: str, text: str, control_id: str = "", event: str = "") -> None:
        super().__init__(text)
        self.ack_code = ack_code
        self.error_code = error_code
        self.text = text
        self.control_id = control_id
        self.event = event


_ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "207": "Application internal error",
}


def parse_feed(text: str) -> FeedMessage:
    """The identity carried by an ER7 message; raises FeedRejected."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\n\t ")
    if not text.startswith("MSH") or len(text.split("\r", 1)[0]) < 8:
        raise FeedRejected("AR", "100", "the message does not start with an MSH segment")
    control_id, message_type, event = _header_facts(text)
    try:
        message = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    except Exception as exc:  # hl7apy raises many kinds on hostile input
        raise FeedRejected("AR", "102", f"unreadable HL7 v2 message: {_short(exc)}", control_id, event) from None
    escapes = _Escapes(str(message.msh.msh_1.to_er7()), str(message.msh.msh_2.to_er7()))
    if message_type != "ADT":
        raise FeedRejected("AR", "200", f"message type {message_type!r} is not handled", control_id, event)
    if event not in SUPPORTED_EVENTS:
        raise FeedRejected("AR", "201", f"event {event!r} is not handled", control_id, event)
    if not message.pid:
        raise FeedRejected("AE", "100", "no PID segment", control_id, event)
    try:
        return _feed_message(message, escapes, control_id, event)
    except InvalidInput as exc:
        raise FeedRejected("AE", "101" if "missing" in str(exc) else "102", str(exc), control_id, event) from None
    except FeedRejected:
        raise
    except Exception as exc:
        raise FeedRejected("AE", "102", f"unreadable PID: {_short(exc)}", control_id, event) from None


def _header_facts(text: str) -> tuple[str, str, str]:
    """MSH-10 and MSH-9 read directly, so even an unparseable message gets an ACK naming it."""
    header = text.split("\r", 1)[0]
    separator = header[3]
    fields = header.split(separator)
    component = fields[1][:1] if len(fields) > 1 and fields[1] else "^"

    def field(n: int) -> str:
        return fields[n - 1] if len(fields) >= n else ""

    type_parts = field(9).split(component)
    return field(10), type_parts[0], type_parts[1] if len(type_parts) > 1 else ""


def _feed_message(message: Any, escapes: _Escapes, control_id: str, event: str) -> FeedMessage:
    pid = message.pid
    read = escapes.read
    ins: ReceivedIns | None = None
    external: list[ExternalId] = []
    for rep in pid.pid_3:
        value = read(rep.cx_1)
        namespace, oid, type_code = read(rep.cx_4.hd_1), read(rep.cx_4.hd_2), read(rep.cx_5)
        if not value:
            continue
        if type_code == "INS" or oid in INS_OIDS or namespace.startswith("ASIP-SANTE-INS"):
            if ins is None:
                ins = ReceivedIns(value, oid, namespace)
        else:
            external.append(ExternalId(value, namespace, oid, type_code))

    legal, used = None, None
    for rep in pid.pid_5:
        kind = read(rep.xpn_7)
        if kind == "L" and legal is None:
            legal = rep
        elif kind == "D" and used is None:
            used = rep
    if legal is None and pid.pid_5:
        legal = pid.pid_5[0]
    if legal is None:
        raise InvalidInput("PID-5 (birth name) missing")
    birth_name = read(legal.xpn_1.fn_1)
    first_name = read(legal.xpn_2)
    if not birth_name or not first_name:
        raise InvalidInput("PID-5 birth name or first name missing")
    others = read(legal.xpn_3).split()
    first_names = tuple(others) if others and others[0] == first_name else (first_name, *others)

    birth_date = _birth_date(read(pid.pid_7.ts_1) if pid.pid_7 else "")
    sex = read(pid.pid_8)
    if sex not in ("M", "F"):
        raise InvalidInput(f"PID-8 sex {sex!r} is not M or F" if sex else "PID-8 (sex) missing")

    cog = ""
    for rep in pid.pid_11:
        if read(rep.xad_7) == "BDL":
            candidate = read(rep.xad_9).upper()
            cog = candidate if _COG.match(candidate) else ""
            break
    reliability = read(pid.pid_32[0]) if pid.pid_32 else ""

    traits = Traits(
        birth_name=birth_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        birthplace_cog=cog,
        used_name=read(used.xpn_1.fn_1) if used is not None else "",
        used_first_name=read(used.xpn_2) if used is not None else "",
    )
    return FeedMessage(
        control_id=control_id,
        event=event,
        sending_application=read(message.msh.msh_3.hd_1),
        sending_facility=read(message.msh.msh_4.hd_1),
        traits=traits,
        ins=ins,
        external_ids=tuple(external),
        reliability=reliability,
    )


def _birth_date(value: str) -> str:
    if not value:
        raise InvalidInput("PID-7 (birth date) missing")
    if len(value) < 8 or not value[:8].isdigit():
        raise InvalidInput(f"PID-7 {value[:20]!r} is not an HL7 date")
    iso = f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    check_birth_date(iso)
    return iso


class _Escapes:
    """ER7 escape sequences of one message (``\\F\\``, ``\\S\\``, ``\\T\\``, ``\\R\\``, ``\\E\\``)."""

    def __init__(self, field_separator: str, encoding: str) -> None:
        defaults = "^~\\&"
        chars = [encoding[i] if i < len(encoding) else defaults[i] for i in range(4)]
        self.component, self.repetition, self.escape, self.subcomponent = chars[0], chars[1], chars[2], chars[3]
        self.table = {
            "F": field_separator,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": self.escape,
        }
        esc = re.escape(self.escape)
        self.pattern = re.compile(f"{esc}([^{esc}]*){esc}")

    def read(self, element: Any) -> str:
        """The unescaped text of an hl7apy element, '' when absent."""
        raw = element.to_er7() if element is not None else ""
        if not isinstance(raw, str):
            return ""
        return self.pattern.sub(lambda m: self.table.get(m.group(1), ""), raw).strip()


def build_ack(
    ack_code: str,
    control_id: str,
    event: str,
    now: datetime,
    receiver: tuple[str, str] = ("", ""),
    error: tuple[str, str] | None = None,
) -> str:
    """An HL7 v2.5 ACK; ``error`` is (HL7 table 0357 code, text) for AE/AR."""
    try:
        return _ack_with_hl7apy(ack_code, control_id, event, now, receiver, error)
    except Exception:  # an echoed value hl7apy refuses: answer with the bare minimum
        return _ack_with_hl7apy(ack_code, "", "", now, ("", ""), error and (error[0], "message refused"))


def _ack_with_hl7apy(
    ack_code: str,
    control_id: str,
    event: str,
    now: datetime,
    receiver: tuple[str, str],
    error: tuple[str, str] | None,
) -> str:
    ack = Message("ACK", version="2.5", validation_level=VALIDATION_LEVEL.TOLERANT)
    ack.msh.msh_3 = APPLICATION
    ack.msh.msh_4 = APPLICATION
    if receiver[0]:
        ack.msh.msh_5 = _plain(receiver[0])
    if receiver[1]:
        ack.msh.msh_6 = _plain(receiver[1])
    ack.msh.msh_7 = now.strftime("%Y%m%d%H%M%S")
    ack.msh.msh_9 = f"ACK^{_plain(event)}^ACK" if event else "ACK"
    ack.msh.msh_10 = f"ACK{uuid.uuid4().hex[:17]}"
    ack.msh.msh_11 = "P"
    ack.msh.msh_12 = "2.5"
    ack.msh.msh_17 = "FRA"
    ack.msh.msh_18 = "UNICODE UTF-8"
    ack.msa.msa_1 = ack_code
    if control_id:
        ack.msa.msa_2 = _plain(control_id)
    if error is not None:
        code, text = error
        err = ack.add_segment("ERR")
        err.err_3 = f"{code}^{_ERROR_NAMES.get(code, 'Error')}^HL70357"
        err.err_4 = "E"
        err.err_8 = _plain(text)[:200]
    return str(ack.to_er7())


def _plain(value: str) -> str:
    """A value safe to put in one ER7 field: no delimiters, no control characters."""
    return "".join(c for c in value if c.isprintable() and c not in "|^~\\&")[:199]


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return _plain(text)[:120]
