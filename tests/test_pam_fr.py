"""PAM-FR identity messages: building them, reading ACKs, and validating HL7 v2 identity messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from harness.findings import Report, Severity
from harness.identity_feed.pam_fr import (
    Ack,
    AckExpectation,
    FeedPatient,
    build_ack_expectation,
    build_identity_message,
    parse_ack,
)
from harness.sut.model import Ins, PatientTraits
from harness.validators.hl7v2 import RULESET, decode_er7, parse_er7_segment, validate_identity_message
from harness.validators.ins import InsOid

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans" / "hl7V2-exemples"
TODAY = date(2025, 1, 1)
STAMP = datetime(2024, 3, 6, 11, 11, 54)

TRAITS = PatientTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28", "63220")
PATIENT = FeedPatient(
    ipp="000003",
    ipp_authority_name="CHU-X",
    ipp_authority_oid="1.2.3.4.5.6.7",
    traits=TRAITS,
    ins=Ins("279035121518989", InsOid.TEST_NIR.value),
    identity_reliability="QUAL",
    ins_query_date=date(2024, 3, 1),
)

GOLDEN_A28 = (
    "MSH|^~\\&|SEGUR-HARNESS|SEGUR-HARNESS|SUT|SUT|20240306111154||ADT^A28^ADT_A05|MSG0001|P|2.5^FRA^2.11"
    "|||||FRA|UNICODE UTF-8|FR||2.11^IHE_FRANCE-2.11-PAM\r"
    "EVN||20240306111154||||20240306111154\r"
    "PID|1||000003^^^CHU-X&1.2.3.4.5.6.7&ISO^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
    "||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L||19790328|F|||^^^^^^BDL^^63220|||||||||||||||||||||QUAL\r"
    "PV1|1|N\r"
    "ZFD|||||INSI|20240301\r"
)


def build(patient: FeedPatient = PATIENT, event: str = "A28", control_id: str = "MSG0001") -> bytes:
    return build_identity_message(patient, event, control_id=control_id, timestamp=STAMP)  # type: ignore[arg-type]


def validate(message: bytes) -> Report:
    return validate_identity_message(message, today=TODAY)


def severe(report: Report) -> list[tuple[str, str]]:
    """(rule, location) of every error and warning."""
    return [(f.rule, f.location) for f in report.findings if f.severity is not Severity.INFO]


def strict_parse(message: bytes) -> object:
    parsed = parse_message(message.decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.validate() is True
    return parsed


# --- building ------------------------------------------------------------------------------


def test_a28_is_exactly_the_expected_er7() -> None:
    assert build().decode("utf-8") == GOLDEN_A28


@pytest.mark.parametrize("event", ["A28", "A31"])
def test_built_message_passes_hl7apy_strict_and_our_validator(event: str) -> None:
    message = build(event=event)
    parsed = strict_parse(message)
    assert parsed.msh.msh_9.to_er7() == f"ADT^{event}^ADT_A05"  # type: ignore[attr-defined]
    reps = parsed.pid.pid_3  # type: ignore[attr-defined]
    assert [r.cx_5.to_er7() for r in reps] == ["PI", "INS"]
    assert reps[1].cx_4.to_er7() == "ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO"
    report = validate(message)
    assert report.ruleset == RULESET
    assert report.findings == []


def test_segments_end_with_cr_and_no_lf() -> None:
    message = build()
    assert b"\n" not in message
    assert message.endswith(b"\r")
    assert [s[:3] for s in message.split(b"\r") if s] == [b"MSH", b"EVN", b"PID", b"PV1", b"ZFD"]


def test_nia_uses_the_nia_namespace() -> None:
    number = "1790375120123"
    from harness.validators.ins import nir_key

    nia = Ins(number + f"{nir_key(number):02d}", InsOid.NIA.value)
    message = build(replace(PATIENT, ins=nia))
    assert b"^^^ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO^INS" in message
    assert severe(validate(message)) == []


def test_identity_without_ins_has_no_ins_and_no_zfd() -> None:
    message = build(replace(PATIENT, ins=None, identity_reliability="PROV"))
    assert b"^INS" not in message and b"ZFD" not in message
    strict_parse(message)
    assert severe(validate(message)) == []


def test_all_birth_first_names_and_used_names() -> None:
    traits = replace(TRAITS, first_names=("DOMINIQUE", "MARIE-LOUISE"), used_name="DUPONT", used_first_name="MARIE")
    message = build(replace(PATIENT, traits=traits))
    assert b"|PAT-TROIS^DOMINIQUE^DOMINIQUE MARIE-LOUISE^^^^L~DUPONT^MARIE^^^^^D|" in message
    strict_parse(message)
    assert validate(message).findings == []


def test_partial_birth_date() -> None:
    message = build(replace(PATIENT, traits=replace(TRAITS, birth_date="1979-03-00")))
    assert b"|197903|F|" in message
    strict_parse(message)
    assert [f.rule for f in validate(message).findings] == ["ins.traits.birth-date-partial"]


def test_delimiters_in_values_are_escaped_and_read_back() -> None:
    name = "O'NEIL^A&B|C~D\\E"
    message = build(replace(PATIENT, traits=replace(TRAITS, birth_name=name)), control_id="ID|1")
    strict_parse(message)
    er7, _ = decode_er7(message)
    assert er7 is not None
    pid = parse_er7_segment(er7, er7.segments_named("PID")[0])
    assert er7.read(pid, "pid_5.xpn_1.fn_1") == name
    assert build_ack_expectation(message).control_id == "ID|1"


def test_aware_timestamp_keeps_its_offset() -> None:
    stamp = datetime(2024, 3, 6, 11, 11, 54, tzinfo=timezone(timedelta(hours=1)))
    message = build_identity_message(PATIENT, "A31", control_id="1", timestamp=stamp)
    assert b"|20240306111154+0100|" in message
    strict_parse(message)


@pytest.mark.parametrize(
    ("patient", "event", "control_id"),
    [
        (PATIENT, "A01", "1"),
        (PATIENT, "A28", ""),
        (replace(PATIENT, ipp=""), "A28", "1"),
        (replace(PATIENT, traits=replace(TRAITS, birth_date="28/03/1979")), "A28", "1"),
        (replace(PATIENT, identity_reliability="X" * 50), "A28", "1"),
        (replace(PATIENT, ipp="1" * 300), "A28", "1"),
    ],
)
def test_builder_refuses_what_it_cannot_encode(patient: FeedPatient, event: str, control_id: str) -> None:
    with pytest.raises(ValueError):
        build(patient, event, control_id)


# --- validator on mutated messages ---------------------------------------------------------


def mutate(old: bytes, new: bytes) -> bytes:
    message = build()
    assert old in message
    return message.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "rule", "location"),
    [
        (b"279035121518989", b"279035121518988", "ins.matricule.key", "PID-3[2].1"),
        (b"&1.2.250.1.213.1.4.10&", b"&1.2.250.1.213.1.4.2&", "ins.oid.unknown", "PID-3[2].1"),
        (b"&1.2.250.1.213.1.4.10&", b"&1.2.250.1.213.1.4.9&", "hl7v2.pid3.ins-namespace", "PID-3[2].4.1"),
        (b"&ISO^INS", b"&ISO^NH", "hl7v2.pid3.ins-type", "PID-3[2].5"),
        (b"4.10&ISO^INS", b"4.10&L^INS", "hl7v2.pid3.ins-authority", "PID-3[2].4.3"),
        (b"|QUAL\r", b"|\r", "hl7v2.pid32.missing", "PID-32"),
        (b"|QUAL\r", b"|PROV\r", "hl7v2.pid32.ins-status", "PID-32"),
        (b"|QUAL\r", b"|RECUP\r", "hl7v2.pid32.ins-status", "PID-32"),
        (b"|QUAL\r", b"|XYZ\r", "hl7v2.pid32.code", "PID-32"),
        (b"2.11^IHE_FRANCE-2.11-PAM", b"", "hl7v2.msh.profile", "MSH-21"),
        (b"2.11^IHE_FRANCE-2.11-PAM", b"2.10^IHE_FRANCE-2.10-PAM", "hl7v2.msh.profile", "MSH-21"),
        (b"|2.5^FRA^2.11|", b"|2.5|", "hl7v2.msh.version", "MSH-12"),
        (b"|2.5^FRA^2.11|", b"|2.5^FRA^2.10|", "hl7v2.msh.version", "MSH-12.3"),
        (b"|MSG0001|", b"||", "hl7v2.msh.control-id", "MSH-10"),
        (b"^BDL^^63220", b"^BDL^^6322", "ins.traits.birthplace", "PID-11(BDL).9"),
        (b"^BDL^^63220", b"^BDL^^", "hl7v2.pid11.bdl-cog", "PID-11(BDL).9"),
        (b"|^^^^^^BDL^^63220|", b"||", "hl7v2.pid11.bdl-missing", "PID-11"),
        (b"|F|", b"|M|", "ins.matricule.traits-sex", "PID-3[2].1"),
        (b"|F|", b"|U|", "ins.traits.sex", "PID-8"),
        (b"^^^^L|", b"^^^^D|", "hl7v2.pid5.birth-name", "PID-5"),
        (b"000003^^^CHU-X&1.2.3.4.5.6.7&ISO^PI~", b"", "hl7v2.pid3.ipp-missing", "PID-3"),
        (b"PV1|1|N", b"PV1|1|I", "hl7v2.pv1.patient-class", "PV1-2"),
        (b"ADT^A28^ADT_A05", b"ADT^A28^ADT_A01", "hl7v2.msh.message-structure", "MSH-9.3"),
        (b"ADT^A28^ADT_A05", b"ORU^R01^ORU_R01", "hl7v2.msh.message-type", "MSH-9"),
        (b"INSI|20240301", b"INSI|2024-03-01", "hl7v2.zfd.insi-date", "ZFD-6"),
        (b"|UNICODE UTF-8|", b"|8859/1|", "hl7v2.msh.charset", "MSH-18"),
    ],
)
def test_mutations_give_the_expected_findings(old: bytes, new: bytes, rule: str, location: str) -> None:
    report = validate(mutate(old, new))
    assert (rule, location) in [(f.rule, f.location) for f in report.findings], report.findings


def test_wrong_key_is_the_only_problem_reported() -> None:
    report = validate(mutate(b"279035121518989", b"279035121518988"))
    assert severe(report) == [("ins.matricule.key", "PID-3[2].1")]
    assert not report.ok


def test_missing_pid32_fails_the_report() -> None:
    report = validate(mutate(b"|QUAL\r", b"|\r"))
    assert severe(report) == [("hl7v2.pid32.missing", "PID-32")]


def test_status_without_ins() -> None:
    message = build(replace(PATIENT, ins=None, identity_reliability="QUAL"))
    assert ("hl7v2.pid32.status-without-ins", "PID-32") in severe(validate(message))


def test_test_oid_refused_in_production_mode() -> None:
    report = validate_identity_message(build(), allow_test=False, today=TODAY)
    assert ("ins.oid.test", "PID-3[2].1") in severe(report)


def test_lf_separators_are_an_error_but_the_rest_is_still_checked() -> None:
    report = validate(mutate(b"279035121518989", b"279035121518988").replace(b"\r", b"\n"))
    assert {f.rule for f in report.errors} == {"hl7v2.segment-separator", "ins.matricule.key"}


def test_crlf_is_a_warning() -> None:
    report = validate(build().replace(b"\r", b"\r\n"))
    assert severe(report) == [("hl7v2.segment-separator", "")]
    assert report.ok


def test_latin1_bytes_are_reported() -> None:
    message = build(replace(PATIENT, traits=replace(TRAITS, used_name="HÉLÈNE")))
    report = validate(message.replace("HÉLÈNE".encode(), "HÉLÈNE".encode("latin-1")))
    assert {"hl7v2.encoding.utf8", "hl7v2.msh.charset"} <= {f.rule for f in report.errors}


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00\xff" * 40,
        b"hello world",
        b"MSH",
        b"MSH|",
        b"MSH|^~\\&",
        b"MSH|^^^^|",
        b"PID|1||x",
        b"\x0bMSH|^~\\&|a\x1c\r",
        "MSH|^~\\&|é".encode("utf-16"),
        b"MSH|^~\\&|A|B|C|D|20240101||ADT^A28^ADT_A05|1|P|9.9\rPID|" + b"^~&" * 5000,
    ],
)
def test_garbage_never_raises(garbage: bytes) -> None:
    report = validate(garbage)
    assert not report.ok
    assert "hl7v2.internal" not in {f.rule for f in report.findings}


def test_every_truncation_never_raises() -> None:
    message = build()
    for end in range(0, len(message), 5):
        report = validate(message[:end])
        assert "hl7v2.internal" not in {f.rule for f in report.findings}, end


def test_hostile_sizes_are_refused_quickly() -> None:
    header = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A28^ADT_A05|1|P|2.5^FRA^2.11\r"
    for message in (header + b"PID|" + b"x~" * 100_000, header + b"PID|1\r" * 10_000):
        report = validate(message)
        assert [f.rule for f in report.findings] == ["hl7v2.limits"]
        assert report.duration_s < 0.5


def test_non_bytes_input_is_a_finding() -> None:
    report = validate_identity_message("MSH|^~\\&|")  # type: ignore[arg-type]
    assert [f.rule for f in report.findings] == ["hl7v2.input"]


# --- ANS examples --------------------------------------------------------------------------


def _examples_with_pid() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    files = [p for p in sorted(EXAMPLES.rglob("*")) if p.suffix in (".hl7", ".er7") and p.is_file()]
    return [p for p in files if b"PID|" in p.read_bytes()]


@pytest.mark.parametrize("path", _examples_with_pid(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_ans_examples_go_through_the_validator(path: Path) -> None:
    report = validate_identity_message(path.read_bytes(), subject=path.name, today=TODAY)
    assert report.findings, "every ANS example file has LF separators at least"
    assert "hl7v2.internal" not in {f.rule for f in report.findings}


def test_ans_examples_were_found() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip(f"ANS examples not found at {EXAMPLES}")
    assert len(_examples_with_pid()) >= 20


def test_ans_pam_fr_reference_message_has_only_the_separator_error() -> None:
    path = EXAMPLES / "SGL" / "admission.er7"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    report = validate_identity_message(path.read_bytes(), today=TODAY)
    assert [f.rule for f in report.errors] == ["hl7v2.segment-separator"]
    assert [f.rule for f in report.findings if f.severity is Severity.WARNING] == []
    fixed = validate_identity_message(path.read_bytes().replace(b"\n", b"\r"), today=TODAY)
    assert fixed.ok


def test_ans_example_with_a_wrong_key_is_caught() -> None:
    path = EXAMPLES / "Volets" / "Trans_LPS_CDA_MSSanté" / "V1.0" / "MDM" / "message.hl7"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    report = validate_identity_message(path.read_bytes(), today=TODAY)
    keys = [f for f in report.findings if f.rule == "ins.matricule.key"]
    assert len(keys) == 1 and "276037510669380" in keys[0].message


# --- acknowledgements ----------------------------------------------------------------------

ACK_AA = b"MSH|^~\\&|SUT|SUT|SEGUR-HARNESS|SEGUR-HARNESS|20240306111155||ACK^A28^ACK|A1|P|2.5\rMSA|AA|MSG0001\r"
ACK_AE = (
    b"MSH|^~\\&|SUT|SUT|H|H|20240306111155||ACK^A28^ACK|A2|P|2.5\rMSA|AE|MSG0001\r"
    b"ERR|||101^Required field missing^HL70357|E||||PID-32 missing\r"
)


def test_parse_ack_accept() -> None:
    ack = parse_ack(ACK_AA)
    assert ack == Ack("AA", "MSG0001", "", "ACK", ())
    assert build_ack_expectation(build()).check(ack) == []


def test_parse_ack_error_with_err_segment() -> None:
    ack = parse_ack(ACK_AE)
    assert (ack.code, ack.control_id, ack.text) == ("AE", "MSG0001", "PID-32 missing")
    findings = build_ack_expectation(build()).check(ack)
    assert [f.rule for f in findings] == ["hl7v2.ack.code"]
    assert "PID-32 missing" in findings[0].message


def test_parse_ack_reads_msa3_and_err3_text() -> None:
    ack = parse_ack(b"MSH|^~\\&|S|S|H|H|20240306||ACK|A|P|2.5\rMSA|AR|X|unsupported event\r")
    assert (ack.code, ack.text) == ("AR", "unsupported event")
    ack = parse_ack(b"MSH|^~\\&|S|S|H|H|20240306||ACK|A|P|2.5\rMSA|AE|X\rERR|||207^Application internal error\r")
    assert ack.text == "Application internal error"


def test_parse_ack_tolerates_lf_and_framing() -> None:
    ack = parse_ack(b"\x0b" + ACK_AA.replace(b"\r", b"\n") + b"\x1c\r")
    assert (ack.code, ack.control_id) == ("AA", "MSG0001")
    assert ack.notes


@pytest.mark.parametrize(
    "garbage", [b"", b"garbage", b"\xff\xfe\x00", b"MSH|^~\\&|S|S|H|H|2024||ACK|A|P|2.5\r", b"MSA|AA|1", b"MSH|"]
)
def test_parse_ack_garbage(garbage: bytes) -> None:
    ack = parse_ack(garbage)
    assert ack.code == ""
    assert ack.notes
    findings = AckExpectation("MSG0001").check(ack)
    assert [f.rule for f in findings] == ["hl7v2.ack.unreadable"]


def test_ack_expectation_rules() -> None:
    expectation = AckExpectation("MSG0001")
    assert [f.rule for f in expectation.check(Ack("AA", "OTHER", ""))] == ["hl7v2.ack.control-id"]
    assert [f.rule for f in expectation.check(Ack("CA", "MSG0001", "", "ADT"))] == ["hl7v2.ack.message-type"]
    assert [f.rule for f in expectation.check(Ack("ZZ", "MSG0001", ""))] == ["hl7v2.ack.code"]
    strict = AckExpectation("MSG0001", frozenset({"AA"}))
    assert [f.rule for f in strict.check(Ack("CA", "MSG0001", ""))] == ["hl7v2.ack.code"]


def test_ack_expectation_from_garbage_has_no_control_id() -> None:
    assert build_ack_expectation(b"\x00garbage").control_id == ""
