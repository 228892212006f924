"""Secure messaging through MSSanté (REM LGC section MSS): the SUT as a mail client of the operator.

The SUT is pointed at the harness's MSSanté operator simulator (SMTP submission and IMAP,
both STARTTLS, on loopback; DST-style HTTPS entry points for "Opérateur Mailiz"). Every
message the SUT submits is judged whole with the MSSanté rules
(:mod:`harness.validators.mss`: headers, subject, one patient, the ``IHE_XDM.ZIP``
through :mod:`harness.validators.xdm` and its CDAs through the CDA validator) and kept
as evidence: its SMTP source is the proof most MSS rows ask for. TLS requirements are
judged by switching the operator's TLS policy (old versions, a cipher outside the list,
an expired or non-IGC certificate) and checking the SUT refuses to go on.

Where ANS's proof is an execution id on its own MSSanté test tool (``MSS-LPS-SEGUR-*``),
a configuration or code extract, a video or a screenshot, that proof stays ``manual``;
the recorded sessions and messages support it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from harness.findings import Finding, Severity
from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.insi import IdentityBase
from harness.simulators.mssante import MailSession, MssanteSimulator, SubmittedMessage, TlsPolicy
from harness.simulators.mssante import offered_outside_policy as outside_policy
from harness.simulators.mssante.correspondent import XdmDocument, correspondent_message, patient_cx, xdm_package
from harness.sut.base import SutAdapter, SutError
from harness.sut.model import MssOutcome, MssSendRequest, PatientRecord, ReceivedMessage
from harness.validators import mss, xdm
from harness.validators.cda import CdaValidator
from scenarios.insi_steps import identity_named, qualified_patient, retrieved_patient

pytestmark = pytest.mark.usefixtures("insi")

LETTRE_DE_LIAISON = "11490-0"
CORRESPONDENT = "helene.lefevre@ch-test.mssante.fr"
SEND_TIMEOUT_S = 15.0
"""How long a scenario waits for a message the SUT must submit."""
SILENCE_S = 3.0
"""How long a scenario listens when the SUT must submit nothing."""
SILENCE_AFTER_NOT_SENT_S = 1.0
"""The same once the SUT has answered ``not-sent`` (it says it did not try), as in the DMP scenarios."""
PATIENT_DOMAIN = "patient.mssante.fr"
RECORD_TARGET_IDS = "{urn:hl7-org:v3}recordTarget/{urn:hl7-org:v3}patientRole/{urn:hl7-org:v3}id"


# -- steps ----------------------------------------------------------------------------------------
def _patient_with_document(
    sut: SutAdapter, identities: IdentityBase, key: str = "ordinary-1"
) -> tuple[PatientRecord, str]:
    """A QUAL patient and the id of a lettre de liaison (CDA R2 N1 + PDF/A-1) produced for them."""
    patient = qualified_patient(sut, identity_named(identities, key))
    produced = sut.produce_document(patient.id, LETTRE_DE_LIAISON, "N1")
    return patient, produced.document_id


def _keep(evidence: ScenarioEvidence, message: SubmittedMessage) -> None:
    evidence.attach(
        f"message-{message.seq}.eml", message.raw, "message/rfc822", "the SMTP source of the message the SUT sent"
    )


def _submit(
    sut: SutAdapter, operator: MssanteSimulator, evidence: ScenarioEvidence, request: MssSendRequest, what: str
) -> tuple[MssOutcome, SubmittedMessage | None]:
    """Ask the SUT to send, then wait for what reaches the operator (a missing message is a finding)."""
    before = operator.last_message_seq()
    outcome = sut.send_mss(request)
    evidence.note(f"{what}: the SUT reports {outcome.result} ({outcome.detail})")
    message = operator.wait_for_message(before, timeout=SEND_TIMEOUT_S)
    if evidence.expect(
        message is not None, "mss.send.none", f"{what}: no message reached the operator within {SEND_TIMEOUT_S:g} s"
    ):
        assert message is not None
        _keep(evidence, message)
    return outcome, message


def _sent_document(
    sut: SutAdapter,
    identities: IdentityBase,
    operator: MssanteSimulator,
    evidence: ScenarioEvidence,
    delivery_receipt: bool = False,
) -> tuple[PatientRecord, SubmittedMessage | None]:
    """A lettre de liaison sent to a professional correspondent."""
    patient, document_id = _patient_with_document(sut, identities)
    request = MssSendRequest(patient.id, (document_id,), (CORRESPONDENT,), delivery_receipt=delivery_receipt)
    _, message = _submit(sut, operator, evidence, request, "sending the lettre de liaison to a correspondent")
    return patient, message


def _findings(
    message: SubmittedMessage, rules: Iterable[str], record: PatientRecord | None = None, **checks: object
) -> list[Finding]:
    """The validator's non-info findings on ``message`` whose rule starts with one of ``rules``.

    ``record`` is the patient the message is about (its INS is the one expected); ``checks``
    are :func:`harness.validators.mss.check_message`'s keyword options.
    """
    expected_ins = record.ins.matricule if record is not None and record.ins is not None else None
    found = mss.check_message(message.raw, expected_ins=expected_ins, **checks)  # type: ignore[arg-type]
    prefixes = tuple(rules)
    return [f for f in found if f.severity is not Severity.INFO and f.rule.startswith(prefixes)]


def _sessions_since(operator: MssanteSimulator, after: int, protocol: str | None = None) -> list[MailSession]:
    return [s for s in operator.sessions if s.seq > after and (protocol is None or s.protocol == protocol)]


def _keep_sessions(evidence: ScenarioEvidence, sessions: list[MailSession], name: str = "tls-sessions.json") -> None:
    summary = [dict(s.summary(), transcript=s.transcript) for s in sessions]
    evidence.attach(
        name,
        json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8"),
        "application/json",
        "the SUT's connections to the operator: TLS version, cipher, suites offered, certificate, transcript",
    )


def _settle(operator: MssanteSimulator, after: int, protocol: str) -> list[MailSession]:
    """The SUT's sessions of ``protocol`` since ``after``, once at least one has ended (bounded wait)."""
    operator.wait_for_session(after, protocol, timeout=SILENCE_S)
    return _sessions_since(operator, after, protocol)


def _fetch(sut: SutAdapter, evidence: ScenarioEvidence) -> list[ReceivedMessage]:
    """Have the SUT read its BAL; a SUT that says it cannot (its answer, not a broken adapter) is a finding."""
    try:
        received = sut.fetch_mss()
    except SutError as exc:
        evidence.expect(False, "mss.imap.read-failed", f"the SUT must read its BAL at the operator; it failed: {exc}")
        return []
    evidence.note(f"the SUT read {len(received)} message(s): {[(r.subject, r.status) for r in received]}")
    return received


# -- TLS ------------------------------------------------------------------------------------------
@pytest.mark.requirement("MSS/va1.03", scenario="MSS/va1.03.01", manual_proofs=("MSS/va1.03.01.01", "MSS/va1.03.01.02"))
def test_every_protocol_to_the_operator_runs_over_tls(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """Sending (SMTP) and reading the BAL (IMAP) both start TLS before any credential, at TLS 1.2 or later."""
    mark = mssante.last_session_seq()
    _sent_document(sut, insi_identities, mssante, evidence)
    mssante.deliver(mssante.sut_address, correspondent_message(CORRESPONDENT, mssante.sut_address, "Bonjour", "x")[1])
    _fetch(sut, evidence)
    sessions = _settle(mssante, mark, "smtp") + _settle(mssante, mark, "imap")
    _keep_sessions(evidence, sessions)
    for protocol in ("smtp", "imap"):
        evidence.expect(
            any(s.protocol == protocol for s in sessions),
            f"mss.tls.{protocol}-unused",
            f"the SUT must reach the operator over {protocol.upper()}; no such session was seen",
        )
    for session in sessions:
        where = f"{session.protocol} session {session.seq}"
        evidence.expect(
            session.tls_established and not session.credentials_in_clear,
            f"mss.tls.{session.protocol}-plaintext",
            f"{where}: the connection must switch to TLS (STARTTLS) before any login or message; "
            f"TLS {session.tls.get('version') or 'never started'}, "
            f"credentials in clear: {session.credentials_in_clear}",
        )
        version = str(session.tls.get("version") or "")
        evidence.expect(
            not version or version in ("TLSv1.2", "TLSv1.3"),
            "mss.tls.version",
            f"{where}: TLS 1.2 or later is required; {version} was negotiated",
        )
    evidence.conclude()


def _refused_under(
    policy: TlsPolicy,
    rule: str,
    sut: SutAdapter,
    identities: IdentityBase,
    operator: MssanteSimulator,
    evidence: ScenarioEvidence,
) -> None:
    """With the operator running ``policy``, the SUT must refuse the handshake: nothing gets submitted."""
    patient, document_id = _patient_with_document(sut, identities)
    operator.set_tls_policy(policy)
    mark, before = operator.last_session_seq(), operator.last_message_seq()
    outcome = sut.send_mss(MssSendRequest(patient.id, (document_id,), (CORRESPONDENT,)))
    evidence.note(f"operator TLS policy {policy.value}: the SUT reports {outcome.result} ({outcome.detail})")
    sessions = _settle(operator, mark, "smtp")
    # A SUT that says it failed, and whose handshake the operator saw refused, has given its answer:
    # no need to listen the whole silence for a late submission.
    answered = outcome.result != "sent" and any(s.tls_error for s in sessions)
    accepted = operator.wait_for_message(before, timeout=0.05 if answered else SILENCE_S)
    sessions = _sessions_since(operator, mark, "smtp")
    _keep_sessions(evidence, sessions)
    if accepted is not None:
        _keep(evidence, accepted)
    evidence.expect(
        accepted is None,
        rule,
        f"the operator offered {policy.value}: the SUT must refuse the TLS session and send nothing; "
        f"it completed the handshake ({accepted.tls.get('version') if accepted else ''}, "
        f"{accepted.tls.get('cipher') if accepted else ''}) and submitted message {accepted.seq if accepted else ''}",
    )
    evidence.expect(
        outcome.result != "sent",
        f"{rule}.reported",
        f"the SUT reports the message as sent although the operator's TLS ({policy.value}) had to be refused",
    )


@pytest.mark.parametrize("policy", [TlsPolicy.TLS_1_0_ONLY, TlsPolicy.TLS_1_1_ONLY], ids=["tls1.0", "tls1.1"])
@pytest.mark.requirement("MSS/CONF.01", scenario="MSS/CONF.01.01", manual_proofs=("MSS/CONF.01.01.01",))
def test_an_operator_offering_only_tls_before_1_2_is_refused(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    mssante: MssanteSimulator,
    evidence: ScenarioEvidence,
    policy: TlsPolicy,
) -> None:
    """TLS 1.2 at least: an operator that offers only TLS 1.0 or 1.1 gets no message."""
    _refused_under(policy, "mss.tls.old-version-accepted", sut, insi_identities, mssante, evidence)
    evidence.conclude()


@pytest.mark.requirement("MSS/va1.31", scenario="MSS/va1.31.01", manual_proofs=("MSS/va1.31.01.01", "MSS/va1.31.01.02"))
def test_the_client_negotiates_tls_1_2_or_later_only(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The negotiated version is 1.2+, and an operator limited to TLS 1.0 is refused."""
    mark = mssante.last_session_seq()
    _, message = _sent_document(sut, insi_identities, mssante, evidence)
    if message is not None:
        evidence.expect(
            message.tls.get("version") in ("TLSv1.2", "TLSv1.3"),
            "mss.tls.version",
            f"the message went over {message.tls.get('version')}; TLS 1.2 or later is required",
        )
    _keep_sessions(evidence, _sessions_since(mssante, mark), "conforming-sessions.json")
    _refused_under(TlsPolicy.TLS_1_0_ONLY, "mss.tls.old-version-accepted", sut, insi_identities, mssante, evidence)
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.03", scenario="MSS/CONF.03.01", manual_proofs=("MSS/CONF.03.01.01",))
def test_only_the_allowed_cipher_suites_are_offered(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The TLS 1.2 suites offered are within CONF.03's six; an operator with another suite only is refused."""
    mark = mssante.last_session_seq()
    _sent_document(sut, insi_identities, mssante, evidence)
    sessions = [s for s in _settle(mssante, mark, "smtp") if s.tls_established]
    _keep_sessions(evidence, sessions, "conforming-sessions.json")
    for session in sessions:
        extra = outside_policy(list(session.tls.get("offered") or []))
        evidence.expect(
            not extra,
            "mss.tls.cipher-offered",
            f"smtp session {session.seq}: only 0xC030, 0xC02F, 0xC028, 0xC027, 0x009F, 0x009E may be offered on "
            f"TLS 1.2 (TLS 1.3 suites aside); the SUT also offered {', '.join(extra)}",
        )
    _refused_under(TlsPolicy.WEAK_CIPHER, "mss.tls.weak-cipher-accepted", sut, insi_identities, mssante, evidence)
    evidence.conclude()


@pytest.mark.requirement("MSS/va1.04", scenario="MSS/va1.04.01", manual_proofs=("MSS/va1.04.01.01", "MSS/va1.04.01.02"))
def test_an_expired_operator_certificate_is_refused(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The operator shows an IGC-Santé-like certificate that expired yesterday: the SUT must not go on."""
    _refused_under(TlsPolicy.EXPIRED_CERTIFICATE, "mss.tls.expired-accepted", sut, insi_identities, mssante, evidence)
    evidence.conclude()


@pytest.mark.parametrize("case", ["igc-sante", "non-igc"])
@pytest.mark.requirement("MSS/va1.06", scenario="MSS/va1.06.01", manual_proofs=("MSS/va1.06.01.01",))
def test_igc_sante_operator_certificates_are_accepted_and_only_those(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    mssante: MssanteSimulator,
    evidence: ScenarioEvidence,
    case: str,
) -> None:
    """An operator certificate from the IGC-Santé-like ``ORG`` authority works; a self-signed one is refused."""
    if case == "non-igc":
        _refused_under(
            TlsPolicy.NON_IGC_CERTIFICATE, "mss.tls.non-igc-accepted", sut, insi_identities, mssante, evidence
        )
    else:
        patient, document_id = _patient_with_document(sut, insi_identities)
        request = MssSendRequest(patient.id, (document_id,), (CORRESPONDENT,))
        outcome, message = _submit(
            sut, mssante, evidence, request, "sending to an operator with an IGC-Santé certificate"
        )
        evidence.expect(
            message is not None and outcome.result == "sent",
            "mss.tls.igc-refused",
            f"the SUT must accept the operator's IGC-Santé certificate and send; it reports {outcome.result} "
            f"({outcome.detail})",
        )
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.05", scenario="MSS/CONF.05.01", manual_proofs=("MSS/CONF.05.01.01",))
def test_messages_are_submitted_over_smtp_with_starttls(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """RFC 5321 submission with STARTTLS (RFC 3207) before AUTH and MAIL."""
    mark = mssante.last_session_seq()
    _, message = _sent_document(sut, insi_identities, mssante, evidence)
    sessions = _settle(mssante, mark, "smtp")
    _keep_sessions(evidence, sessions, "smtp-sessions.json")
    evidence.expect(
        message is not None and message.via == "smtp", "mss.smtp.unused", "the message must be submitted over SMTP"
    )
    for session in sessions:
        evidence.expect(
            session.starttls and session.tls_established and not session.credentials_in_clear,
            "mss.smtp.starttls",
            f"smtp session {session.seq}: STARTTLS must come before AUTH and MAIL "
            f"(STARTTLS: {session.starttls}, credentials in clear: {session.credentials_in_clear})",
        )
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.06", scenario="MSS/CONF.06.01", manual_proofs=("MSS/CONF.06.01.01",))
def test_the_bal_is_read_over_imap_with_starttls(
    sut: SutAdapter, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The SUT reads its BAL over IMAP4rev1, STARTTLS before LOGIN, and gets the message waiting there."""
    message_id, raw = correspondent_message(CORRESPONDENT, mssante.sut_address, "Demande d'avis", "Bonjour, ...")
    mssante.deliver(mssante.sut_address, raw)
    mark = mssante.last_session_seq()
    received = _fetch(sut, evidence)
    sessions = _settle(mssante, mark, "imap")
    _keep_sessions(evidence, sessions, "imap-sessions.json")
    evidence.expect(bool(sessions), "mss.imap.unused", "the SUT must read its BAL over IMAP")
    for session in sessions:
        evidence.expect(
            session.starttls and session.tls_established and not session.credentials_in_clear,
            "mss.imap.starttls",
            f"imap session {session.seq}: STARTTLS must come before LOGIN "
            f"(STARTTLS: {session.starttls}, credentials in clear: {session.credentials_in_clear})",
        )
    evidence.expect(
        any(r.message_id.strip("<>") == message_id.strip("<>") for r in received),
        "mss.imap.not-read",
        f"the message {message_id} waiting in the BAL must be read",
    )
    evidence.conclude()


# -- headers -------------------------------------------------------------------------------------
def _header_scenario(
    sut: SutAdapter,
    identities: IdentityBase,
    operator: MssanteSimulator,
    evidence: ScenarioEvidence,
    rules: tuple[str, ...],
    bal_type: str | None = None,
) -> None:
    _, message = _sent_document(sut, identities, operator, evidence)
    if message is not None:
        evidence.add(*_findings(message, rules, bal_type=bal_type))


@pytest.mark.requirement("MSS/va1.12", scenario="MSS/va1.12.01", manual_proofs=("MSS/va1.12.01.01",))
def test_a_new_message_has_a_message_id(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """``Message-ID`` per RFC 5322 (``<left@right>``) on every new message."""
    _header_scenario(sut, insi_identities, mssante, evidence, ("mss.message-id",))
    evidence.conclude()


@pytest.mark.requirement("MSS/va1.16", scenario="MSS/va1.16.01", manual_proofs=("MSS/va1.16.01.01",))
def test_the_from_label_names_the_professional(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The SUT writes from a personal BAL: the From label reads title, first name, NAME, entity."""
    _header_scenario(sut, insi_identities, mssante, evidence, ("mss.from",), bal_type="PER")
    evidence.conclude()


@pytest.mark.requirement("MSS/va1.15", scenario="MSS/va1.15.01", manual_proofs=("MSS/va1.15.01.01",))
def test_a_delivery_receipt_can_be_asked_for(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """Asked for a DSN, the SUT sets ``Return-Receipt-To`` to the sender's BAL; the operator then returns one."""
    _, message = _sent_document(sut, insi_identities, mssante, evidence, delivery_receipt=True)
    if message is not None:
        evidence.add(*_findings(message, ("mss.return-receipt-to",), delivery_receipt_expected=True))
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.14", scenario="MSS/CONF.14.01", manual_proofs=("MSS/CONF.14.01.01",))
def test_x_mss_ins_says_whether_the_xdm_carries_a_qualified_ins(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """A document of a QUAL patient: ``X-MSS-INS: O``, consistent with the CDA's recordTarget."""
    patient, message = _sent_document(sut, insi_identities, mssante, evidence)
    if message is not None:
        evidence.add(*_findings(message, ("mss.x-mss-ins",), patient))
    evidence.conclude()


@pytest.mark.requirement(
    "MSS/CONF.15", scenario="MSS/CONF.15.01", manual_proofs=("MSS/CONF.15.01.01", "MSS/CONF.15.01.03")
)
def test_x_mss_codecda_gives_the_code_of_each_cda(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """One ``X-MSS-CODECDA`` value per CDA of the XDM, equal to its ``ClinicalDocument/code/@code``."""
    _header_scenario(sut, insi_identities, mssante, evidence, ("mss.x-mss-codecda",))
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.16", scenario="MSS/CONF.16.01", manual_proofs=("MSS/CONF.16.01.01",))
def test_x_mss_nil_is_on_every_message(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """``X-MSS-NIL`` on a message with documents and on a plain one."""
    _header_scenario(sut, insi_identities, mssante, evidence, ("mss.x-mss-nil",))
    patient = sut.list_patients()[0]
    request = MssSendRequest(patient.id, (), (CORRESPONDENT,), text="Message sans document.")
    _, plain = _submit(sut, mssante, evidence, request, "sending a message with no document")
    if plain is not None:
        evidence.add(*_findings(plain, ("mss.x-mss-nil",)))
    evidence.conclude()


@pytest.mark.requirement(
    "MSS/CONF.25", scenario="MSS/CONF.25.01", manual_proofs=("MSS/CONF.25.01.01", "MSS/CONF.25.01.02")
)
def test_the_subject_follows_the_xdm_convention(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """``XDM/1.0/DDM+<title> <NAME> <first name> <dd/mm/yyyy>``, with the patient's birth name and birth date."""
    patient, message = _sent_document(sut, insi_identities, mssante, evidence)
    if message is not None:
        evidence.add(*_findings(message, ("mss.subject",)))
        parsed, _ = mss.parse_message(message.raw)
        subject = str(parsed.get("Subject", "")) if parsed is not None else ""
        year, month, day = patient.traits.birth_date.split("-")
        evidence.expect(
            patient.traits.birth_name.upper() in subject and f"{day}/{month}/{year}" in subject,
            "mss.subject.patient",
            f"the subject must name the patient {patient.traits.birth_name} born {day}/{month}/{year}: {subject!r}",
        )
    evidence.conclude()


# -- replies ------------------------------------------------------------------------------------
@pytest.mark.requirement("MSS/va1.08", scenario="MSS/va1.08.01", manual_proofs=("MSS/va1.08.01.01",))
def test_a_reply_is_threaded(sut: SutAdapter, mssante: MssanteSimulator, evidence: ScenarioEvidence) -> None:
    """A reply carries its own ``Message-ID``, ``In-Reply-To`` the original and ``References`` ending with it."""
    original_id, raw = correspondent_message(
        CORRESPONDENT, mssante.sut_address, "Demande d'avis", "Pouvez-vous me rappeler ?"
    )
    mssante.deliver(mssante.sut_address, raw)
    received = _fetch(sut, evidence)
    read = next((r for r in received if r.message_id.strip("<>") == original_id.strip("<>")), None)
    if evidence.expect(read is not None, "mss.imap.not-read", f"the SUT must read the message {original_id}"):
        before = mssante.last_message_seq()
        outcome = sut.reply_mss(read.message_id if read else original_id, "Je vous rappelle demain.")
        evidence.note(f"reply: the SUT reports {outcome.result} ({outcome.detail})")
        reply = mssante.wait_for_message(before, timeout=SEND_TIMEOUT_S)
        if evidence.expect(reply is not None, "mss.send.none", "the reply must reach the operator"):
            assert reply is not None
            _keep(evidence, reply)
            evidence.add(
                *_findings(
                    reply, ("mss.message-id", "mss.in-reply-to", "mss.references"), in_reply_to_expected=original_id
                )
            )
    evidence.conclude()


# -- patients -------------------------------------------------------------------------------------
def _patient_address(patient: PatientRecord) -> str:
    assert patient.ins is not None
    return f"{patient.ins.matricule}@{PATIENT_DOMAIN}"


@pytest.mark.parametrize("status", ["QUAL", "RECUP"])
@pytest.mark.requirement(
    "MSS/va1.17",
    "MSS/va1.19",
    scenario=("MSS/va1.17.01", "MSS/va1.19.01"),
    manual_proofs=("MSS/va1.17.01.01", "MSS/va1.17.01.02"),
)
def test_a_patient_is_written_to_only_with_a_qualified_ins(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    mssante: MssanteSimulator,
    evidence: ScenarioEvidence,
    status: str,
) -> None:
    """QUAL: the document goes to ``<matricule INS>@patient.mssante.fr``; RECUP: the SUT does not write at all."""
    identity = identity_named(insi_identities, "ordinary-2")
    patient = qualified_patient(sut, identity) if status == "QUAL" else retrieved_patient(sut, identity)
    produced = sut.produce_document(patient.id, LETTRE_DE_LIAISON, "N1")
    request = MssSendRequest(patient.id, (produced.document_id,), to_patient=True)
    if status == "QUAL":
        _, message = _submit(sut, mssante, evidence, request, "sending the document to the patient's BAL")
        if message is not None:
            evidence.expect(
                _patient_address(patient) in [r.lower() for r in message.recipients],
                "mss.patient.address",
                f"the patient BAL is {_patient_address(patient)}; the SUT wrote to {message.recipients}",
            )
            evidence.add(*_findings(message, ("mss.patient", "mss.x-mss-ins"), patient, patient=True))
    else:
        before = mssante.last_message_seq()
        outcome = sut.send_mss(request)
        evidence.note(f"RECUP identity, patient sending: the SUT reports {outcome.result} ({outcome.detail})")
        sent = mssante.wait_for_message(
            before, timeout=SILENCE_AFTER_NOT_SENT_S if outcome.result == "not-sent" else SILENCE_S
        )
        if sent is not None:
            _keep(evidence, sent)
        evidence.expect(
            sent is None,
            "mss.patient.unqualified",
            f"a patient BAL address may be built only from a qualified INS; the identity is {status} "
            f"and the SUT wrote to {sent.recipients if sent else ''}",
        )
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.21", scenario="MSS/CONF.21.01", manual_proofs=("MSS/CONF.21.01.01",))
def test_a_patient_message_can_forbid_replies(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The professional wants no reply: ``X-MSS-MES: FIN`` on the message to the patient's BAL."""
    patient, document_id = _patient_with_document(sut, insi_identities, "ordinary-2")
    request = MssSendRequest(patient.id, (document_id,), to_patient=True, no_reply=True)
    _, message = _submit(sut, mssante, evidence, request, "sending to the patient with no reply wanted")
    if message is not None:
        evidence.add(*_findings(message, ("mss.x-mss-mes",), patient, patient=True, no_reply_expected=True))
    evidence.conclude()


@pytest.mark.requirement("MSS/CONF.23", scenario="MSS/CONF.23.01", manual_proofs=("MSS/CONF.23.01.02",))
def test_a_message_carries_one_patient_as_xdm_and_pdf(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    mssante: MssanteSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
) -> None:
    """One patient per message; an IHE_XDM.ZIP (checked whole, METADATA.XML and CDAs) and the PDF/A-1 beside it."""
    _patient_with_document(sut, insi_identities, "ordinary-3")  # another patient with a document, in the practice
    patient, document_id = _patient_with_document(sut, insi_identities, "ordinary-1")
    request = MssSendRequest(patient.id, (document_id,), (CORRESPONDENT,))
    _, message = _submit(sut, mssante, evidence, request, "sending the patient's lettre de liaison")
    if message is None:
        evidence.conclude()
        return
    evidence.add(*_findings(message, ("mss.xdm", "mss.pdf", "mss.patient", "mss.mime", "mss.parse")))
    archive = mss.xdm_attachment(message.raw)
    if not evidence.expect(archive is not None, "mss.xdm.missing", "the message must carry an IHE_XDM.ZIP"):
        evidence.conclude()
        return
    assert archive is not None and patient.ins is not None
    evidence.attach("IHE_XDM.ZIP", archive, "application/zip", "the XDM package the SUT attached")
    report = xdm.check_xdm(archive, expected_ins=(patient.ins.matricule, patient.ins.oid))
    evidence.add(*[f for f in report.findings if f.severity is Severity.ERROR])
    patients = set(_cda_patients(report.documents))
    evidence.expect(
        len(patients) <= 1,
        "mss.one-patient",
        f"a message concerns one patient only; its CDAs name {len(patients)}: {sorted(patients)}",
    )
    for name, content in report.documents.items():
        if name.upper().endswith(".XML") and not name.upper().endswith("METADATA.XML"):
            evidence.add(*cda_validator.validate(content, name).errors[:50])
    evidence.conclude()


def _cda_patients(documents: dict[str, bytes]) -> Iterable[str]:
    from harness.validators.cda.parsing import parse_cda

    for name, content in documents.items():
        if not name.upper().endswith(".XML") or name.upper().endswith("METADATA.XML"):
            continue
        parsed, _ = parse_cda(content)
        if parsed is None:
            continue
        for found in parsed.document.iterfind(
            "{urn:hl7-org:v3}recordTarget/{urn:hl7-org:v3}patientRole/{urn:hl7-org:v3}id"
        ):
            if found.get("root", "").startswith("1.2.250.1.213.1.4."):
                yield f"{found.get('extension', '')} ({found.get('root')})"


# -- reception -----------------------------------------------------------------------------------
@pytest.mark.requirement(
    "MSS/CONF.24",
    "MSS/UX.39",
    scenario=("MSS/CONF.24.01", "MSS/UX.39.01"),
    manual_proofs=("MSS/CONF.24.01.01", "MSS/CONF.24.01.02", "MSS/UX.39.01.01", "MSS/UX.39.01.02"),
)
def test_a_received_xdm_is_integrated_for_the_patient_of_its_metadata(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The XDM's ``patientId`` names patient A while the subject names patient B: A gets the document."""
    patient_a = qualified_patient(sut, identity_named(insi_identities, "ordinary-4"))
    patient_b = qualified_patient(sut, identity_named(insi_identities, "ordinary-5"))
    assert patient_a.ins is not None
    produced = sut.produce_document(patient_a.id, LETTRE_DE_LIAISON, "N1")
    assert produced.cda is not None, "precondition: the SUT produces a CDA to stand for the correspondent's"
    unique = f"2.25.{abs(hash((produced.document_id, 'correspondent'))) % 10**30}"
    cda = _renumbered(produced.cda, produced.document_id, unique)
    package = xdm_package(
        [XdmDocument(cda, unique, produced.pdf)], patient_cx(patient_a.ins.matricule, patient_a.ins.oid)
    )
    b = patient_b.traits
    year, month, day = b.birth_date.split("-")
    subject = f"XDM/1.0/DDM+Lettre de liaison {b.birth_name} {b.first_names[0]} {day}/{month}/{year}"
    message_id, raw = correspondent_message(
        CORRESPONDENT, mssante.sut_address, subject, "Lettre de liaison ci-jointe.", xdm=package, pdf=produced.pdf
    )
    evidence.attach("received.eml", raw, "message/rfc822", "the message the correspondent sent to the SUT")
    mssante.deliver(mssante.sut_address, raw)
    received = _fetch(sut, evidence)
    read = next((r for r in received if r.message_id.strip("<>") == message_id.strip("<>")), None)
    if evidence.expect(read is not None, "mss.imap.not-read", f"the SUT must read the message {message_id}"):
        assert read is not None
        evidence.expect(
            read.status == "integrated" and read.patient_id == patient_a.id,
            "mss.receive.patient",
            f"the patient is the one of METADATA.XML's patientId ({patient_a.ins.matricule}, local {patient_a.id}); "
            f"the SUT says {read.status} for patient {read.patient_id or 'none'} (error {read.error_code or 'none'})",
        )
        listed = {d.document_id for d in sut.list_documents(patient_a.id) if d.origin == "imported"}
        evidence.expect(
            bool(listed & set(read.document_ids)) or bool(listed),
            "mss.receive.document",
            f"the received CDA must be in patient A's record as an imported document; found {sorted(listed)}",
        )
    evidence.conclude()


def _renumbered(cda: bytes, document_id: str, unique: str) -> bytes:
    """The CDA with another ``ClinicalDocument/id``: the correspondent's own document, not a copy of the SUT's."""
    root = document_id.split("^", 1)[0]
    extension = document_id.split("^", 1)[1] if "^" in document_id else ""
    old = f'root="{root}"' + (f' extension="{extension}"' if extension else "")
    return cda.replace(old.encode(), f'root="{unique}"'.encode(), 1) if old.encode() in cda else cda


# -- receipts -------------------------------------------------------------------------------------
@pytest.mark.requirement("MSS/va1.14", scenario="MSS/va1.14.01", manual_proofs=("MSS/va1.14.01.01",))
def test_a_delivery_receipt_is_read_as_a_receipt(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """The operator's DSN for a message sent with a receipt request is recognised as a receipt when the BAL is read."""
    _, message = _sent_document(sut, insi_identities, mssante, evidence, delivery_receipt=True)
    dsns = [m for m in mssante.mailbox(mssante.sut_address) if b"delivery-status" in m.raw[:4096]]
    if message is None or not dsns:
        evidence.expect(False, "mss.receipt.none", "precondition: the operator returned a DSN to the SUT's BAL")
        evidence.conclude()
        return
    evidence.attach("dsn.eml", dsns[0].raw, "message/rfc822", "the delivery report the operator returned")
    received = _fetch(sut, evidence)
    evidence.expect(
        any(r.status == "receipt" for r in received),
        "mss.receipt.not-recognised",
        f"the DSN in the BAL must be read as the delivery receipt of the message sent; the SUT read "
        f"{[(r.subject, r.status) for r in received]}",
    )
    evidence.conclude()


def _mdn_for(operator: MssanteSimulator, original_id: str) -> bytes | None:
    for mail in operator.mailbox(CORRESPONDENT):
        if original_id.strip("<>").encode() in mail.raw and b"disposition-notification" in mail.raw:
            return mail.raw
    return None


@pytest.mark.parametrize("case", ["known-patient", "unknown-patient"])
@pytest.mark.requirement("MSS/UX.34", scenario="MSS/UX.34.01", manual_proofs=("MSS/UX.34.01.01",))
def test_a_read_receipt_is_sent_back_when_asked(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence, case: str
) -> None:
    """A message asking for an MDN gets one (RFC 8098); an XDM for a patient unknown to the SUT gets error 902."""
    patient = qualified_patient(sut, identity_named(insi_identities, "ordinary-6"))
    produced = sut.produce_document(patient.id, LETTRE_DE_LIAISON, "N1")
    assert produced.cda is not None and patient.ins is not None
    matricule = (
        patient.ins.matricule if case == "known-patient" else identity_named(insi_identities, "ordinary-7").matricule
    )
    unique = f"2.25.{abs(hash((produced.document_id, case))) % 10**30}"
    package = xdm_package(
        [XdmDocument(_renumbered(produced.cda, produced.document_id, unique), unique, produced.pdf)],
        patient_cx(matricule, patient.ins.oid),
    )
    original_id, raw = correspondent_message(
        CORRESPONDENT, mssante.sut_address, "XDM/1.0/DDM+Lettre de liaison", "Ci-joint.", xdm=package, read_receipt=True
    )
    mssante.deliver(mssante.sut_address, raw)
    _fetch(sut, evidence)
    mdn = _mdn_for(mssante, original_id)
    if not evidence.expect(mdn is not None, "mss.mdn.none", f"the message {original_id} asked for an MDN; none came"):
        evidence.conclude()
        return
    assert mdn is not None
    evidence.attach("mdn.eml", mdn, "message/rfc822", "the read receipt the SUT sent back")
    evidence.add(*[f for f in mss.check_mdn(mdn, original_message_id=original_id) if f.severity is not Severity.INFO])
    disposition, code = mss.mdn_disposition(mdn)
    expected = "" if case == "known-patient" else "902"
    evidence.expect(
        code == expected,
        "mss.mdn.integration-code",
        f"the MDN must say {'processed' if not expected else 'processed/Error: 902 (unknown patient)'}; "
        f"it says {disposition!r}",
    )
    evidence.conclude()


# -- Mailiz DST -------------------------------------------------------------------------------------
@pytest.mark.requirement("MSS/va1.07", scenario="MSS/va1.07.01", manual_proofs=("MSS/va1.07.01.01", "MSS/va1.07.01.02"))
def test_dst_submissions_use_the_igc_sante_entry_point(
    sut: SutAdapter, insi_identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence
) -> None:
    """Through the DST interface, the message arrives at the ``igc-sante`` entry point, with the client certificate."""
    patient, document_id = _patient_with_document(sut, insi_identities)
    request = MssSendRequest(patient.id, (document_id,), (CORRESPONDENT,), transport="dst")
    _, message = _submit(sut, mssante, evidence, request, "sending through the Mailiz DST interface")
    if message is not None:
        evidence.expect(
            message.via == "dst" and message.entry_point == "igc-sante",
            "mss.dst.entry-point",
            f"the DST submission must use the IGC Santé entry point; it came via {message.via} "
            f"{message.entry_point or ''}",
        )
        evidence.expect(
            bool(message.tls.get("client_certificate")),
            "mss.dst.client-certificate",
            "the DST submission must be authenticated by the organisation certificate",
        )
    evidence.conclude()
