"""INS rules: NIR/NIA key, matricule checks, trait normalisation, RNIV status transitions."""

from __future__ import annotations

from datetime import date

import pytest

from harness.findings import Finding, Severity
from harness.sut.model import IdentityStatus, PatientTraits
from harness.validators.ins import (
    TRANSITIONS,
    IdentityEvent,
    InsOid,
    check_ins_record,
    check_matricule,
    check_matricule_against_traits,
    check_traits,
    expected_status,
    ins_oid,
    may_carry_ins,
    nir_key,
    normalise_trait,
    same_strict_traits,
)

TODAY = date(2025, 1, 1)
TEST = InsOid.TEST_NIR.value


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def errors(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity is Severity.ERROR}


# --- OIDs --------------------------------------------------------------------------------


def test_oids_are_the_fr_core_ones() -> None:
    assert InsOid.NIR.value == "1.2.250.1.213.1.4.8"
    assert InsOid.NIA.value == "1.2.250.1.213.1.4.9"
    assert InsOid.TEST_NIR.value == "1.2.250.1.213.1.4.10"
    assert InsOid.DEMO_NIR.value == "1.2.250.1.213.1.4.11"


def test_demo_oid_is_a_nir_not_a_test_nia() -> None:
    assert not InsOid.DEMO_NIR.is_nia
    assert InsOid.DEMO_NIR.is_test
    assert InsOid.DEMO_NIR.namespace == "ASIP-SANTE-INS-NIR"
    assert InsOid.NIA.namespace == "ASIP-SANTE-INS-NIA"
    assert ins_oid(" 1.2.250.1.213.1.4.10 ") is InsOid.TEST_NIR
    assert ins_oid("1.2.250.1.213.1.4.2") is None


# --- key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "key"),
    [
        ("2790351215189", 89),  # PAT-TROIS DOMINIQUE, the ANS reference test patient
        ("297022A020778", 78),  # Corsica 2A
        ("2751263220749", 74),
        ("1090763220834", 89),
        ("2090763220834", 39),
        ("2090663220123", 55),
    ],
)
def test_published_keys(number: str, key: int) -> None:
    assert nir_key(number) == key


def test_corsica_2b_counts_as_18() -> None:
    same_with_18 = 97 - int("1850218" + "005123") % 97
    assert nir_key("18502" + "2B" + "005123") == same_with_18
    assert nir_key("18502" + "2A" + "005123") == 97 - int("1850219005123") % 97
    assert nir_key("18502" + "2A" + "005123") != nir_key("18502" + "2B" + "005123")


def test_key_97_when_divisible() -> None:
    number = str(97 * 10**11 + 97 * 12345)  # 13 digits, a multiple of 97
    assert len(number) == 13 and int(number) % 97 == 0
    assert nir_key(number) == 97


@pytest.mark.parametrize(
    "bad", ["", "279035121518", "27903512151899", "2790351A15189", "27903512151 9", "2790351215189x"]
)
def test_nir_key_refuses_malformed_numbers(bad: str) -> None:
    with pytest.raises(ValueError):
        nir_key(bad)


# --- matricule -----------------------------------------------------------------------------


@pytest.mark.parametrize("matricule", ["279035121518989", "297022A02077878", "275126322074974", "109076322083489"])
def test_published_matricules_are_clean(matricule: str) -> None:
    assert check_matricule(matricule, TEST) == []
    assert check_matricule(matricule, InsOid.NIR) == []


@pytest.mark.parametrize(
    ("matricule", "rule"),
    [
        ("279035121518988", "ins.matricule.key"),
        ("297022A02077877", "ins.matricule.key"),
        ("2790351215189", "ins.matricule.length"),
        ("2790351215189890", "ins.matricule.length"),
        ("27903512151898X", "ins.matricule.format"),
        ("2790351C1518989", "ins.matricule.format"),
        ("2790352A1518989", "ins.matricule.format"),  # 2A at positions 7-8, not 6-7
        ("2790351215 8989", "ins.matricule.format"),
        ("379035121518989", "ins.matricule.sex"),
        ("279005121518989", "ins.matricule.month"),
        ("279155121518989", "ins.matricule.month"),
    ],
)
def test_bad_matricules(matricule: str, rule: str) -> None:
    assert rule in errors(check_matricule(matricule, TEST))


def test_pseudo_month_is_only_information() -> None:
    number = "1" + "60" + "30" + "99" + "216" + "123"
    findings = check_matricule(number + f"{nir_key(number):02d}", InsOid.NIR)
    assert rules(findings) == {"ins.matricule.month-pseudo"}
    assert all(f.severity is Severity.INFO for f in findings)


def test_wrong_key_message_gives_the_expected_key() -> None:
    [finding] = check_matricule("279035121518900", TEST, location="PID-3[2].1")
    assert finding.rule == "ins.matricule.key"
    assert "89" in finding.message
    assert finding.location == "PID-3[2].1"


def test_oid_rules() -> None:
    assert "ins.oid.unknown" in errors(check_matricule("279035121518989", "1.2.250.1.213.1.4.2"))
    assert "ins.oid.test" in errors(check_matricule("279035121518989", TEST, allow_test=False))
    assert "ins.oid.test" in errors(check_matricule("279035121518989", InsOid.DEMO_NIR, allow_test=False))
    assert check_matricule("279035121518989", InsOid.NIR, allow_test=False) == []


def test_nia_skips_nir_only_structure_rules() -> None:
    number = "7" + "79" + "00" + "51215" + "189"  # neither a NIR sex digit nor a real month
    matricule = number + f"{nir_key(number):02d}"
    assert check_matricule(matricule, InsOid.NIA) == []
    assert {"ins.matricule.sex", "ins.matricule.month"} <= errors(check_matricule(matricule, InsOid.NIR))
    assert "ins.matricule.key" in errors(check_matricule(number + "00", InsOid.NIA))


def test_matricule_against_traits() -> None:
    traits = PatientTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28", "63220")
    assert check_matricule_against_traits("279035121518989", TEST, traits) == []
    other = PatientTraits("PAT-TROIS", ("DOMINIQUE",), "M", "1980-04-28", "63220")
    findings = check_matricule_against_traits("279035121518989", TEST, other)
    assert rules(findings) == {"ins.matricule.traits-sex", "ins.matricule.traits-year", "ins.matricule.traits-month"}
    assert all(f.severity is Severity.WARNING for f in findings)
    assert check_matricule_against_traits("279035121518989", InsOid.NIA, other) == []


def test_non_text_inputs_do_not_raise() -> None:
    assert "ins.matricule.format" in errors(check_matricule(None, TEST))  # type: ignore[arg-type]
    assert "ins.oid.unknown" in errors(check_matricule("279035121518989", None))  # type: ignore[arg-type]


# --- traits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Pat-Trois", "PAT-TROIS"),
        ("Hélène", "HELENE"),
        ("françois", "FRANCOIS"),
        ("Œdipe", "OEDIPE"),
        ("Lætitia", "LAETITIA"),
        ("Strauß", "STRAUSS"),
        ("Ñúñez", "NUNEZ"),
        ("d’Arc", "D'ARC"),
        ("D ' ARC", "D'ARC"),
        ("O`Neil", "O'NEIL"),
        ("Jean – Pierre", "JEAN-PIERRE"),
        ("Jean‑Pierre", "JEAN-PIERRE"),
        ("  jean   pierre  ", "JEAN PIERRE"),
        ("Jean\u00a0Pierre\t", "JEAN PIERRE"),
        ("DUPONT--DURAND", "DUPONT--DURAND"),
        ("", ""),
    ],
)
def test_normalise_trait(raw: str, normalised: str) -> None:
    assert normalise_trait(raw) == normalised


def test_hyphen_and_space_stay_different() -> None:
    assert normalise_trait("Jean-Pierre") != normalise_trait("Jean Pierre")
    assert normalise_trait("D'Arc") != normalise_trait("Darc")


def test_same_strict_traits() -> None:
    a = PatientTraits("PAT-TROIS", ("DOMINIQUE", "MARIE-LOUISE"), "F", "1979-03-28", "63220", used_name="X")
    b = PatientTraits("Pat-Trois", ("Dominique Marie–Louise",), "F", "1979-03-28", "63220", used_name="Y")
    assert same_strict_traits(a, b)
    assert not same_strict_traits(a, PatientTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28", "63220"))
    assert not same_strict_traits(a, PatientTraits("PAT TROIS", a.first_names, "F", "1979-03-28", "63220"))
    assert not same_strict_traits(a, PatientTraits(a.birth_name, a.first_names, "M", "1979-03-28", "63220"))
    assert not same_strict_traits(a, PatientTraits(a.birth_name, a.first_names, "F", "1979-03-29", "63220"))
    assert not same_strict_traits(a, PatientTraits(a.birth_name, a.first_names, "F", "1979-03-28", "63221"))
    assert not same_strict_traits(a, PatientTraits(a.birth_name, a.first_names, "F", "1979-03-28", ""))


def test_check_traits_clean() -> None:
    for cog in ("63220", "2A020", "2B033", "99134"):
        traits = PatientTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28", cog)
        assert check_traits(traits, today=TODAY) == [], cog


@pytest.mark.parametrize(
    ("changes", "rule", "severity"),
    [
        ({"birth_name": " "}, "ins.traits.birth-name", Severity.ERROR),
        ({"first_names": ()}, "ins.traits.first-names", Severity.ERROR),
        ({"first_names": ("", " ")}, "ins.traits.first-names", Severity.ERROR),
        ({"birth_name": "PAT3"}, "ins.traits.charset", Severity.WARNING),
        ({"sex": "U"}, "ins.traits.sex", Severity.ERROR),
        ({"sex": "f"}, "ins.traits.sex", Severity.ERROR),
        ({"birth_date": "19790328"}, "ins.traits.birth-date", Severity.ERROR),
        ({"birth_date": "1979-02-30"}, "ins.traits.birth-date", Severity.ERROR),
        ({"birth_date": "2030-01-01"}, "ins.traits.birth-date", Severity.ERROR),
        ({"birth_date": "1979-00-12"}, "ins.traits.birth-date", Severity.ERROR),
        ({"birth_date": "1979-03-00"}, "ins.traits.birth-date-partial", Severity.WARNING),
        ({"birth_date": "1979-00-00"}, "ins.traits.birth-date-partial", Severity.WARNING),
        ({"birthplace_cog": ""}, "ins.traits.birthplace-missing", Severity.WARNING),
        ({"birthplace_cog": "6322"}, "ins.traits.birthplace", Severity.ERROR),
        ({"birthplace_cog": "2C020"}, "ins.traits.birthplace", Severity.ERROR),
        ({"birthplace_cog": "00000"}, "ins.traits.birthplace", Severity.ERROR),
        ({"birthplace_cog": "20004"}, "ins.traits.birthplace-corsica", Severity.WARNING),
    ],
)
def test_check_traits_rules(changes: dict[str, object], rule: str, severity: Severity) -> None:
    base = {
        "birth_name": "PAT-TROIS",
        "first_names": ("DOMINIQUE",),
        "sex": "F",
        "birth_date": "1979-03-28",
        "birthplace_cog": "63220",
    }
    traits = PatientTraits(**{**base, **changes})  # type: ignore[arg-type]
    findings = check_traits(traits, today=TODAY)
    assert [(f.rule, f.severity) for f in findings] == [(rule, severity)]


# --- RNIV statuses -----------------------------------------------------------------------

S = IdentityStatus
E = IdentityEvent


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        (S.PROV, E.INSI_RETRIEVAL_OK, S.RECUP),
        (S.VALI, E.INSI_RETRIEVAL_OK, S.QUAL),
        (S.RECUP, E.INSI_RETRIEVAL_OK, S.RECUP),
        (S.QUAL, E.INSI_RETRIEVAL_OK, S.QUAL),
        (S.PROV, E.IDENTITY_DOCUMENT_CHECK, S.VALI),
        (S.RECUP, E.IDENTITY_DOCUMENT_CHECK, S.QUAL),
        (S.VALI, E.IDENTITY_DOCUMENT_CHECK, S.VALI),
        (S.QUAL, E.IDENTITY_DOCUMENT_CHECK, S.QUAL),
        (S.RECUP, E.VERIFICATION_KO, S.PROV),
        (S.QUAL, E.VERIFICATION_KO, S.VALI),
        (S.PROV, E.VERIFICATION_KO, S.PROV),
        (S.VALI, E.VERIFICATION_KO, S.VALI),
        (S.RECUP, E.STRICT_TRAIT_CHANGE, S.PROV),
        (S.QUAL, E.STRICT_TRAIT_CHANGE, S.VALI),
        (S.PROV, E.STRICT_TRAIT_CHANGE, S.PROV),
        (S.VALI, E.STRICT_TRAIT_CHANGE, S.VALI),
        (S.PROV, E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK, S.RECUP),
        (S.RECUP, E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK, S.RECUP),
        (S.VALI, E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK, S.QUAL),
        (S.QUAL, E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK, S.QUAL),
    ],
)
def test_every_transition(current: IdentityStatus, event: IdentityEvent, expected: IdentityStatus) -> None:
    assert expected_status(current, event) is expected


def test_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == {(s, e) for s in IdentityStatus for e in IdentityEvent}


def test_received_identity_never_becomes_qualified_on_its_own() -> None:
    # A fresh identity created from another domain's message starts PROV: its sender's QUAL does not travel.
    assert expected_status(S.PROV, E.RECEIVED_FROM_OTHER_DOMAIN_VERIFIED_OK) is S.RECUP


def test_transitions_accept_plain_strings() -> None:
    assert expected_status("PROV", "insi-retrieval-ok") is S.RECUP  # type: ignore[arg-type]


def test_only_qualified_identities_carry_the_ins() -> None:
    assert [s for s in IdentityStatus if may_carry_ins(s)] == [S.QUAL]


def test_check_ins_record() -> None:
    ins = "279035121518989"
    assert check_ins_record(S.QUAL, ins, TEST) == []
    assert check_ins_record(S.PROV, None, None) == []
    assert check_ins_record(S.VALI, "", None) == []
    assert "ins.record.ins-without-insi" in errors(check_ins_record(S.PROV, ins, TEST))
    assert "ins.record.ins-without-insi" in errors(check_ins_record(S.VALI, ins, TEST))
    assert "ins.record.ins-missing" in errors(check_ins_record(S.QUAL, None, None))
    assert "ins.record.ins-missing" in errors(check_ins_record(S.RECUP, " ", TEST))
    assert "ins.record.oid-missing" in errors(check_ins_record(S.QUAL, ins, ""))
    assert "ins.matricule.key" in errors(check_ins_record(S.QUAL, "279035121518988", TEST))
    assert "ins.oid.test" in errors(check_ins_record(S.QUAL, ins, TEST, allow_test=False))
    recup = check_ins_record(S.RECUP, ins, TEST)
    assert [(f.rule, f.severity) for f in recup] == [("ins.record.not-transmittable", Severity.INFO)]
    assert "ins.record.status" in errors(check_ins_record("GOOD", ins, TEST))
