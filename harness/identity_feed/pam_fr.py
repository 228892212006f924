"""HL7 v2.5 PAM-FR 2.11 identity messages (ADT A28/A31) as the harness sends them, and the ACK it expects.

The harness plays another identification domain. Its messages must look like the
ANS reference examples (``hl7V2-exemples``: SGL templates and the Consentement_DMP
PAM-FR messages) so that a SUT failing on them fails on its own account. hl7apy builds
every segment at STRICT level, so a data-type or length error in what we send is
caught here rather than blamed on the SUT.

Field choices, and where they come from:

* MSH-12 ``2.5^FRA^2.11``, MSH-17 ``FRA``, MSH-18 ``UNICODE UTF-8``, MSH-19 ``FR``,
  MSH-21 ``2.11^IHE_FRANCE-2.11-PAM``: as in every PAM-FR example.
* PID-3: the IPP first (``^^^NAME&OID&ISO^PI``), then the INS
  (``matricule^^^ASIP-SANTE-INS-NIR&OID&ISO^INS``; ``-NIA`` for the NIA authority).
  The examples add CX.8 (an effective date); it is left out, its meaning for the INS
  was not confirmed.
* PID-5: a repetition of type ``L`` = birth name, first birth first name in
  component 2, and **all** birth first names, space-separated, in component 3. The ANS
  examples show ``PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L`` (one first name repeated in
  component 3), which only fits that reading; a third-party PAM-FR example agrees. The
  used name and used first name, when known, go in a second repetition of type ``D``
  (inferred from HL7 table 0200 and the same third-party example).
* PID-7 ``YYYYMMDD`` (``YYYY`` or ``YYYYMM`` for a partial date with ``00``), PID-8 sex.
* PID-11: one repetition of type ``BDL`` with the birthplace COG in component 9
  (``^^^^^^BDL^^63220``), as in the examples; no address is sent.
* PID-32: the identity reliability code exactly as given (``PROV``, ``VALI``, ``QUAL``...).
  The ANS examples send ``VALI`` with an INS; how PAM-FR 2.11 codes a qualified identity
  is not confirmed, so the caller chooses.
* PV1: ``PV1|1|N`` (no visit) as in the identity-only examples.
* ZFD, only when an INS is sent: field 5 = how the INS was obtained (``INSI``), field 6 =
  INSi query date. Read from one example (``ZFD|||Y|N|INSI|20211201||``); fields 1-4 are
  not understood well enough and stay empty. hl7apy drops Z segments when it serialises a
  message, so ZFD is built as a standalone hl7apy segment and appended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message, Segment

from harness.findings import Finding, error, warning
from harness.sut.model import Ins, PatientTraits
from harness.validators.hl7v2 import decode_er7, parse_er7_segment
from harness.validators.ins import InsOid, ins_oid

SOURCE = "identity-feed"
MSH_12 = "2.5^FRA^2.11"
MSH_21 = "2.11^IHE_FRANCE-2.11-PAM"
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

Event = Literal["A28", "A31"]


@dataclass(frozen=True, slots=True)
class FeedPatient:
    """An identity as another domain sends it.

    Attributes:
        ipp: the sender's local patient id (PID-3 type PI).
        ipp_authority_name: namespace of the IPP authority (CX.4.1).
        ipp_authority_oid: OID of the IPP authority (CX.4.2; may be empty).
        traits: strict traits and used names.
        ins: the INS to send, or None.
        identity_reliability: PID-32 as the sender states it (``PROV``, ``VALI``, ``QUAL``...).
        ins_obtained_via: ZFD-5 when an INS is sent.
        ins_query_date: ZFD-6 (date of the INSi call) when an INS is sent.
    """

    ipp: str
    ipp_authority_name: str
    ipp_authority_oid: str
    traits: PatientTraits
    ins: Ins | None
    identity_reliability: str
    ins_obtained_via: str = "INSI"
    ins_query_date: date | None = None


def build_identity_message(
    patient: FeedPatient,
    event: Event,
    *,
    control_id: str,
    timestamp: datetime,
    sending_application: str = "SEGUR-HARNESS",
    sending_facility: str = "SEGUR-HARNESS",
    receiving_application: str = "SUT",
    receiving_facility: str = "SUT",
    processing_id: str = "P",
) -> bytes:
    """The ER7 bytes (UTF-8, segments ended by CR) of an ADT^A28 or ADT^A31 for ``patient``.

    Values are HL7-escaped; control characters in them become spaces. Deliberately bad
    content (a wrong key, an unknown OID) is sent as given: scenarios use it for fault
    injection, and the validator is the judge.

    Raises:
        ValueError: unknown event, empty control id or IPP, a birth date that is not
            ISO ``YYYY-MM-DD``, or a value hl7apy (STRICT) refuses (too long, bad type).
    """
    if event not in ("A28", "A31"):
        raise ValueError(f"event must be A28 or A31, not {event!r}")
    if not control_id:
        raise ValueError("control_id is empty")
    if not patient.ipp:
        raise ValueError("the IPP is empty")
    stamp = _timestamp(timestamp)
    birth_date = _hl7_date(patient.traits.birth_date)
    try:
        message = Message("ADT_A05", version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
        msh = message.msh
        msh.msh_3 = _esc(sending_application)
        msh.msh_4 = _esc(sending_facility)
        msh.msh_5 = _esc(receiving_application)
        msh.msh_6 = _esc(receiving_facility)
        msh.msh_7 = stamp
        msh.msh_9 = f"ADT^{event}^ADT_A05"
        msh.msh_10 = _esc(control_id)
        msh.msh_11 = _esc(processing_id)
        msh.msh_12 = MSH_12
        msh.msh_17 = "FRA"
        msh.msh_18 = "UNICODE UTF-8"
        msh.msh_19 = "FR"
        msh.msh_21 = MSH_21
        message.evn.evn_2 = stamp
        message.evn.evn_6 = stamp
        _fill_pid(message, patient, birth_date)
        message.pv1.pv1_1 = "1"
        message.pv1.pv1_2 = "N"
        message.validate()
        segments = [message.to_er7()]
        if patient.ins is not None:
            segments.append(_zfd(patient))
    except Exception as exc:  # hl7apy's exception types, some of them ValueErrors
        raise ValueError(f"hl7apy refused the message: {type(exc).__name__}: {exc}") from exc
    return ("\r".join(segments) + "\r").encode("utf-8")


def _fill_pid(message: Message, patient: FeedPatient, birth_date: str) -> None:
    pid = message.pid
    traits = patient.traits
    pid.pid_1 = "1"
    authority = _esc(patient.ipp_authority_name)
    if patient.ipp_authority_oid:
        authority += f"&{_esc(patient.ipp_authority_oid)}&ISO"
    pid.add_field("pid_3").value = f"{_esc(patient.ipp)}^^^{authority}^PI"
    if patient.ins is not None:
        known = ins_oid(patient.ins.oid)
        namespace = known.namespace if known is not None else InsOid.NIR.namespace
        pid.add_field("pid_3").value = f"{_esc(patient.ins.matricule)}^^^{namespace}&{_esc(patient.ins.oid)}&ISO^INS"
    first_names = [n for n in traits.first_names if n.strip()]
    first = first_names[0] if first_names else ""
    pid.add_field("pid_5").value = f"{_esc(traits.birth_name)}^{_esc(first)}^{_esc(' '.join(first_names))}^^^^L"
    if traits.used_name or traits.used_first_name:
        used_name = traits.used_name or traits.birth_name
        used_first = traits.used_first_name or first
        pid.add_field("pid_5").value = f"{_esc(used_name)}^{_esc(used_first)}^^^^^D"
    pid.pid_7 = birth_date
    pid.pid_8 = _esc(traits.sex)
    if traits.birthplace_cog:
        pid.add_field("pid_11").value = f"^^^^^^BDL^^{_esc(traits.birthplace_cog)}"
    pid.pid_32 = _esc(patient.identity_reliability)


def _zfd(patient: FeedPatient) -> str:
    zfd = Segment("ZFD", version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
    if patient.ins_obtained_via:
        zfd.zfd_5 = _esc(patient.ins_obtained_via)
    if patient.ins_query_date is not None:
        zfd.zfd_6 = patient.ins_query_date.strftime("%Y%m%d")
    return str(zfd.to_er7())


def _esc(value: str) -> str:
    """``value`` as ER7 text for the standard delimiters ``|^~\\&``; control characters become spaces."""
    text = "".join(" " if ord(c) < 0x20 or c == "\x7f" else c for c in value)
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def _hl7_date(iso: str) -> str:
    """``YYYY-MM-DD`` → ``YYYYMMDD``; a ``00`` month or day shortens it (``YYYY``, ``YYYYMM``)."""
    parts = iso.split("-")
    if len(parts) != 3 or [len(p) for p in parts] != [4, 2, 2] or not all(p.isdigit() for p in parts):
        raise ValueError(f"birth date {iso!r} is not YYYY-MM-DD")
    year, month, day = parts
    if month == "00":
        return year
    if day == "00":
        return year + month
    return year + month + day


def _timestamp(moment: datetime) -> str:
    """HL7 DTM to the second; the UTC offset is appended when ``moment`` is aware."""
    text = moment.strftime("%Y%m%d%H%M%S")
    return text + moment.strftime("%z") if moment.utcoffset() is not None else text


# --------------------------------------------------------------------------------------
# Acknowledgements
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """What a SUT answered to one message.

    Attributes:
        code: MSA-1 (``AA``, ``AE``, ``AR``...), '' when the answer is not a readable ACK.
        control_id: MSA-2, the control id of the message acknowledged.
        text: MSA-3, else ERR-8, else the text of ERR-3.
        message_type: MSH-9.1 of the answer (``ACK`` expected).
        notes: what was odd about the answer (garbage, no MSA, unknown code...).
    """

    code: str
    control_id: str
    text: str
    message_type: str = ""
    notes: tuple[str, ...] = ()


def parse_ack(message: bytes) -> Ack:
    """Read an HL7 v2 acknowledgement; never raises (garbage gives ``code == ''`` and a note)."""
    try:
        return _parse_ack(message)
    except Exception as exc:  # last resort: hostile bytes must not break a scenario
        return Ack("", "", "", notes=(f"unreadable acknowledgement: {type(exc).__name__}",))


def _parse_ack(message: bytes) -> Ack:
    er7, findings = decode_er7(message)
    notes = [f.message for f in findings]
    if er7 is None:
        return Ack("", "", "", notes=tuple(notes) or ("not an HL7 v2 message",))
    msh = parse_er7_segment(er7, er7.segments[0])
    message_type = er7.read(msh, "msh_9.msg_1") if msh is not None else ""
    msa_texts = er7.segments_named("MSA")
    if not msa_texts:
        return Ack("", "", "", message_type, (*notes, "no MSA segment"))
    msa = parse_er7_segment(er7, msa_texts[0])
    if msa is None:
        return Ack("", "", "", message_type, (*notes, "unreadable MSA segment"))
    code = er7.read(msa, "msa_1")
    control_id = er7.read(msa, "msa_2")
    text = er7.read(msa, "msa_3")
    err_texts = er7.segments_named("ERR")
    if not text and err_texts:
        err = parse_er7_segment(er7, err_texts[0])
        if err is not None:
            text = er7.read(err, "err_8") or er7.read(err, "err_3.cwe_2")
    if code not in ACK_CODES:
        notes.append(f"MSA-1 {code!r} is not an acknowledgement code")
    return Ack(code, control_id, text, message_type, tuple(notes))


@dataclass(frozen=True, slots=True)
class AckExpectation:
    """The acknowledgement a message calls for: same control id, an accepting code."""

    control_id: str
    accepted_codes: frozenset[str] = frozenset({"AA", "CA"})

    def check(self, ack: Ack) -> list[Finding]:
        """Findings when ``ack`` does not acknowledge the message as expected.

        Rules: ``hl7v2.ack.unreadable``, ``hl7v2.ack.code``, ``hl7v2.ack.control-id``,
        ``hl7v2.ack.message-type`` (warning).
        """
        if not ack.code:
            notes = "; ".join(ack.notes) or "no acknowledgement code"
            return [error("hl7v2.ack.unreadable", f"the answer is not a readable ACK: {notes}", "MSA-1", SOURCE)]
        findings: list[Finding] = []
        if ack.code not in self.accepted_codes:
            detail = f": {ack.text}" if ack.text else ""
            wanted = "/".join(sorted(self.accepted_codes))
            findings.append(error("hl7v2.ack.code", f"MSA-1 is {ack.code}, {wanted} expected{detail}", "MSA-1", SOURCE))
        if ack.control_id != self.control_id:
            findings.append(
                error(
                    "hl7v2.ack.control-id",
                    f"MSA-2 is {ack.control_id!r}, the message was {self.control_id!r}",
                    "MSA-2",
                    SOURCE,
                )
            )
        if ack.message_type and ack.message_type != "ACK":
            findings.append(
                warning(
                    "hl7v2.ack.message-type",
                    f"MSH-9 of the answer is {ack.message_type}, ACK expected",
                    "MSH-9",
                    SOURCE,
                )
            )
        return findings


def build_ack_expectation(
    message: bytes,
    *,
    accepted_codes: frozenset[str] = frozenset({"AA", "CA"}),
) -> AckExpectation:
    """What the ACK to ``message`` must say: MSA-2 = its MSH-10, MSA-1 in ``accepted_codes``.

    Never raises: an unreadable message gives an expectation with an empty control id.
    """
    control_id = ""
    try:
        er7, _ = decode_er7(message)
        if er7 is not None:
            msh = parse_er7_segment(er7, er7.segments[0])
            if msh is not None:
                control_id = er7.read(msh, "msh_10")
    except Exception:  # the expectation is still useful with no control id
        control_id = ""
    return AckExpectation(control_id, frozenset(accepted_codes))
