"""Builders shared by the evidence tests: a tiny catalogue and a small fake run.

No tests here; the ``test_evidence_*`` modules import these functions. Everything
is synthetic and fixed in time so results are deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.catalog.model import (
    Catalog,
    ComplianceScenario,
    ExpectedProof,
    Nature,
    ProofKind,
    Requirement,
)
from harness.evidence.journal import RunInfo, RunJournal
from harness.findings import error, warning
from harness.simulators.recording import Exchange
from harness.verdicts import Artefact, Verdict, VerdictStatus

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
T_END = T0 + timedelta(minutes=7)
HOSTILE_REASON = "the SUT answered <script>alert('x')</script> & more"


def requirement(
    ref: str,
    area: str,
    scenarios: tuple[ComplianceScenario, ...] = (),
    profile: str = "Général",
    statement: str = "",
) -> Requirement:
    return Requirement(
        rem="LGC",
        ref=ref,
        va1_refs=("LGC.X.01",),
        socle_ref="SC." + ref,
        wave="va1",
        section_id=area,
        section=f"Section {area}",
        bloc="Bloc",
        fonction="Fonction",
        nature=Nature.EXIGENCE,
        profile=profile,
        status="Approuvée",
        statement=statement or f"Our paraphrase of {ref}.",
        scenarios=scenarios,
    )


def scenario(ref: str, *proofs: tuple[str, ProofKind]) -> ComplianceScenario:
    return ComplianceScenario(
        ref=ref,
        summary=f"Summary of {ref}",
        steps=("Do this", "Check that"),
        proofs=tuple(ExpectedProof(p, kind, f"proof {p}") for p, kind in proofs),
    )


def small_catalog() -> Catalog:
    """Five requirements over four areas, listed out of ANS order on purpose."""
    reqs = [
        requirement("CDA/DD.04", "CDA", (scenario("CDA/DD.04.01", ("CDA/DD.04.01.01", ProofKind.FILE)),)),
        requirement(
            "MSS/va1.07",
            "MSS",
            (
                scenario("MSS/va1.07.01", ("MSS/va1.07.01.01", ProofKind.LOG)),
                scenario("MSS/va1.07.02", ("MSS/va1.07.02.01", ProofKind.CONFIGURATION_EXTRACT)),
            ),
        ),
        requirement("DMP/va1.16", "DMP"),
        requirement(
            "INS/va1.63",
            "INS",
            (scenario("INS/va1.63.01", ("INS/va1.63.01.01", ProofKind.LOG)),),
            profile="Centres de santé",
        ),
        requirement(
            "INS/va1.06",
            "INS",
            (
                scenario(
                    "INS/va1.06.01",
                    ("INS/va1.06.01.01", ProofKind.LOG),
                    ("INS/va1.06.01.02", ProofKind.DOCUMENTATION),
                ),
            ),
        ),
    ]
    return Catalog(requirements={r.ref: r for r in reqs}, profiles=("Général", "Centres de santé"), version="cat-1")


def run_info(run_id: str = "20260302-093000-abcd") -> RunInfo:
    return RunInfo(
        run_id=run_id,
        sut={"publisher": "Éditeur Démo", "software": "Cabinet Plus", "version": "4.2.0", "adapter": "reference"},
        dsr="LGC",
        profiles=["Général"],
        catalog_version="cat-1",
        started=T0,
        host={"hostname": "test-host", "platform": "test", "python": "3.11"},
        command=["segur-harness", "run"],
    )


def insi_exchange() -> Exchange:
    request = (
        b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
        b"<soap:Header><wsse:Security><wsse:UsernameToken><wsse:Username>doc</wsse:Username>"
        b"<wsse:Password>hunter2</wsse:Password></wsse:UsernameToken></wsse:Security></soap:Header>"
        b"<soap:Body><verify/></soap:Body></soap:Envelope>"
    )
    return Exchange(
        simulator="insi",
        protocol="soap12",
        action="urn:ServiceIdentiteCertifiee:1.0.0:verifierIdentite",
        direction="inbound",
        started=T0 + timedelta(seconds=5),
        ended=T0 + timedelta(seconds=6),
        request=request,
        response=b"<soap:Envelope><ok/></soap:Envelope>",
        peer="127.0.0.1:50000",
        meta={"headers": {"Authorization": "Bearer eyJsecret", "Content-Type": "application/soap+xml"}},
        seq=3,
    )


def psc_exchange() -> Exchange:
    return Exchange(
        simulator="psc",
        protocol="http",
        action="POST /token",
        direction="inbound",
        started=T0 + timedelta(seconds=7),
        ended=T0 + timedelta(seconds=8),
        request=b"grant_type=authorization_code&code=abc&client_secret=topsecret",
        response=b'{"access_token": "at-123", "id_token": "idt-456", "token_type": "Bearer"}',
        seq=1,
    )


def sample_verdicts() -> list[tuple[Verdict, list[Exchange], list[tuple[Artefact, bytes]]]]:
    """Verdicts covering passed, error dominating, failed with a hostile reason, and no verdict."""
    return [
        (
            Verdict(
                nodeid="scenarios/test_insi.py::test_verification_traced[qualifiee-ko]",
                scenario_ref="INS/va1.06.01",
                requirement_refs=["INS/va1.06", "INS/va1.63"],
                title="INSi verification is traced",
                status=VerdictStatus.PASSED,
                started=T0,
                ended=T0 + timedelta(seconds=10),
            ),
            [insi_exchange(), psc_exchange()],
            [(Artefact("trace.json", "application/json", "the SUT's call log"), b'{"calls": 2}\n')],
        ),
        (
            Verdict(
                nodeid="scenarios/test_mss.py::test_tls",
                scenario_ref="MSS/va1.07.01",
                requirement_refs=["MSS/va1.07"],
                title="TLS to the MSSanté operator",
                status=VerdictStatus.PASSED,
            ),
            [],
            [],
        ),
        (
            Verdict(
                nodeid="scenarios/test_mss.py::test_dst",
                scenario_ref="MSS/va1.07.02",
                requirement_refs=["MSS/va1.07"],
                title="DST endpoints",
                status=VerdictStatus.ERROR,
                reason="the SUT timed out",
            ),
            [],
            [],
        ),
        (
            Verdict(
                nodeid="scenarios/test_cda.py::test_header[=cmd|' /C calc'!A0]",
                scenario_ref="CDA/DD.04.01",
                requirement_refs=["CDA/DD.04"],
                title="CDA header",
                status=VerdictStatus.FAILED,
                reason=HOSTILE_REASON,
                findings=[
                    error("cda.header.author", '=HYPERLINK("http://x") the author is missing', "/ClinicalDocument"),
                    warning("cda.style", "odd style"),
                ],
            ),
            [],
            [(Artefact("<img src=x>.xml", "text/xml"), b"<ClinicalDocument/>")],
        ),
    ]


def make_run(run_dir: Path, finished: bool = True) -> Path:
    """A journaled run with the sample verdicts; not finalised."""
    journal = RunJournal(run_dir, durable=False)
    journal.start(run_info(run_dir.name))
    for verdict, exchanges, files in sample_verdicts():
        journal.record(verdict, exchanges, files)
    if finished:
        journal.finish(T_END)
    return run_dir
