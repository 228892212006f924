"""``segur-harness``: the command line over the pytest core.

Commands: ``run`` (a conformance run, then the evidence pack, verified),
``serve`` (the simulators, for manual testing), ``validate`` (CI-SIS CDA documents
against the ANS rules), ``catalog`` (the requirements and
how each is covered), ``pack`` and ``verify-pack``, ``import-rem`` (catalogue
skeletons from an ANS REM export).

Exit codes fit CI: 0 every applicable scenario conforms, 1 non-conformities,
2 errors (SUT or harness) or bad usage.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

EXIT_OK = 0
EXIT_NONCONFORMING = 1
EXIT_ERROR = 2

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ségur conformance harness (ANS referencing).")
console = Console()


def scenarios_dir() -> Path:
    """Where the conformance scenarios live (the installed ``scenarios`` package)."""
    import scenarios

    return Path(scenarios.__file__).resolve().parent


class _Progress:
    """A pytest plugin driving a rich progress bar, one tick per finished scenario."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def pytest_collection_finish(self, session: Any) -> None:
        self.task = self.progress.add_task("scenarios", total=len(session.items))

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "teardown" and self.task is not None:
            self.progress.advance(self.task)


@app.command()
def run(
    sut: Annotated[str, typer.Option(help="'reference[:defect,...]', a control-API URL, or 'python:module:Class'")] = (
        "reference"
    ),
    dsr: Annotated[str, typer.Option(help="DSR whose catalogue applies")] = "LGC",
    catalog_dir: Annotated[Path | None, typer.Option(help="catalogue data folder; default: the built-in one")] = None,
    cda_rules: Annotated[
        Path | None,
        typer.Option(help="TestContenuCDA folder judging produced documents; default: $SEGUR_HARNESS_CDA_RULES"),
    ] = None,
    profile: Annotated[
        list[str] | None, typer.Option(help="ANS profile claimed (repeatable); default: the SUT's")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="evidence folder; default reports/<run-id>")] = None,
    out: Annotated[Path, typer.Option(help="where the evidence pack zip is written")] = Path("reports"),
    sut_timeout: Annotated[float, typer.Option(help="per-call SUT timeout, seconds")] = 10.0,
    signing_key: Annotated[Path | None, typer.Option(help="PEM private key signing the manifest")] = None,
    signing_cert: Annotated[Path | None, typer.Option(help="PEM certificate of the signing key")] = None,
    select: Annotated[str | None, typer.Option("-k", help="only scenarios matching this pytest -k expression")] = None,
    junitxml: Annotated[Path | None, typer.Option(help="also write a JUnit XML report")] = None,
    alluredir: Annotated[Path | None, typer.Option(help="also write Allure results")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show pytest's own output")] = False,
    scenario_option: Annotated[
        list[str] | None,
        typer.Option(
            help="an option of the scenarios given to pytest as is (repeatable), e.g. "
            "--scenario-option=--portability-layout=layout.toml"
        ),
    ] = None,
) -> None:
    """Run the conformance scenarios against a SUT, then build and verify the evidence pack."""
    import pytest

    from harness.evidence.journal import read_verdicts
    from harness.evidence.pack import PackError, build_pack
    from harness.evidence.verify import verify_pack
    from harness.plugin.session import new_run_id

    started = time.monotonic()
    folder = (run_dir or Path("reports") / new_run_id(datetime.now(UTC))).resolve()
    args = [str(scenarios_dir()), "-p", "no:cacheprovider", f"--sut={sut}", f"--dsr={dsr}", f"--run-dir={folder}"]
    args += [f"--sut-timeout={sut_timeout}", f"--rootdir={scenarios_dir().parent}"]
    if catalog_dir:
        args.append(f"--catalog-dir={catalog_dir.resolve()}")
    if cda_rules:
        from harness.validators.cda import RulesError, RuleSet

        try:
            RuleSet.open(cda_rules)
        except RulesError as exc:
            console.print(f"[red]--cda-rules: {exc}[/red]")
            raise typer.Exit(EXIT_ERROR) from None
        args.append(f"--cda-rules={cda_rules.resolve()}")
    for name in profile or []:
        args.append(f"--profile={name}")
    if signing_key and signing_cert:
        args += [f"--signing-key={signing_key}", f"--signing-cert={signing_cert}"]
    if select:
        args += ["-k", select]
    if junitxml:
        args.append(f"--junitxml={junitxml}")
    if alluredir:
        args.append(f"--alluredir={alluredir}")
    for option in scenario_option or []:
        if not option.startswith("--") or "=" not in option:
            console.print(f"[red]--scenario-option {escape(option)!r}: give it as --name=value[/red]")
            raise typer.Exit(EXIT_ERROR)
        args.append(option)
    if not verbose:
        args += ["-p", "no:terminal"]
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        code = pytest.main(args, plugins=[_Progress(progress)])
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR) or not (folder / "journal.jsonl").exists():
        console.print(f"[red]the run did not complete (pytest exit code {int(code)})[/red]")
        raise typer.Exit(EXIT_ERROR)
    verdicts = read_verdicts(folder)
    try:
        pack = build_pack(folder, out)
    except PackError as exc:
        console.print(f"[red]the evidence pack could not be built: {exc}[/red]")
        raise typer.Exit(EXIT_ERROR) from None
    check = verify_pack(pack)
    _print_summary(verdicts, _requirement_counts(folder), folder, pack, check.ok, time.monotonic() - started)
    if not check.ok:
        for problem in check.problems:
            console.print(f"[red]pack problem:[/red] {problem}")
        raise typer.Exit(EXIT_ERROR)
    statuses = {v.status.value for v in verdicts}
    if "error" in statuses:
        raise typer.Exit(EXIT_ERROR)
    if "failed" in statuses:
        raise typer.Exit(EXIT_NONCONFORMING)
    raise typer.Exit(EXIT_OK)


def _requirement_counts(run_folder: Path) -> dict[str, int]:
    """How many requirements the matrix gives each status (read back from ``matrix.csv``)."""
    import csv
    from collections import Counter

    from harness.evidence.layout import MATRIX_CSV

    with (run_folder / MATRIX_CSV).open(encoding="utf-8-sig", newline="") as fh:
        statuses = {row["N° exigence"]: row["Statut harness"] for row in csv.DictReader(fh)}
    return dict(Counter(statuses.values()))


def _print_summary(
    verdicts: list[Any], requirement_counts: dict[str, int], run_folder: Path, pack: Path, pack_ok: bool, seconds: float
) -> None:
    from collections import Counter

    from harness.evidence.layout import case_name

    automated = [v for v in verdicts if v.nodeid]
    by_status = Counter(v.status.value for v in automated)
    table = Table(title="Conformance scenarios")
    table.add_column("scenario")
    table.add_column("case")
    table.add_column("requirements")
    table.add_column("verdict")
    table.add_column("reason", overflow="fold")
    colours = {
        "passed": "green",
        "failed": "red",
        "error": "magenta",
        "not-applicable": "dim",
        "not-supported": "yellow",
    }
    for v in automated:
        colour = colours.get(v.status.value, "cyan")
        table.add_row(
            " ".join(v.scenario_refs),
            case_name(v.nodeid),
            " ".join(v.requirement_refs),
            f"[{colour}]{v.status.value}[/{colour}]",
            "" if v.status.value == "passed" else v.reason,
        )
    console.print(table)
    console.print("scenarios:    " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
    console.print("requirements: " + ", ".join(f"{n} {s}" for s, n in sorted(requirement_counts.items())))
    console.print(f"evidence folder: {run_folder}")
    console.print(f"evidence pack:   {pack} ({'verified' if pack_ok else 'VERIFICATION FAILED'})")
    console.print(f"wall time: {seconds:.1f} s")


@app.command()
def pack(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by 'run'")],
    out: Annotated[Path, typer.Option(help="folder for the zip")] = Path("reports"),
    catalog_dir: Annotated[Path | None, typer.Option(help="catalogue data folder; default: the built-in one")] = None,
    signing_key: Annotated[Path | None, typer.Option(help="PEM private key signing the manifest")] = None,
    signing_cert: Annotated[Path | None, typer.Option(help="PEM certificate of the signing key")] = None,
) -> None:
    """Build the evidence-pack zip of a run (deterministic: same run, same bytes).

    A run that was interrupted (killed, crashed: a journal but no manifest) is first
    finalised from its journal, so every scenario it finished reaches the pack.
    """
    from harness.catalog import CatalogError, load_catalog
    from harness.evidence.journal import read_journal
    from harness.evidence.manifest import finalize_run
    from harness.evidence.pack import PackError, build_pack

    if not (run_dir / "manifest.json").exists():
        contents = read_journal(run_dir) if (run_dir / "journal.jsonl").exists() else None
        if contents is None or contents.run is None:
            console.print(f"[red]{run_dir} is not a run folder (no journal with a run-started line)[/red]")
            raise typer.Exit(EXIT_ERROR)
        try:
            catalog = load_catalog(contents.run.dsr, catalog_dir)
        except CatalogError as exc:
            console.print(str(exc), style="red", markup=False)
            raise typer.Exit(EXIT_ERROR) from None
        state = "interrupted" if not contents.finished else "not finalised"
        console.print(f"[yellow]{run_dir}: run {state}; finalising it from its journal[/yellow]")
        console.print(f"{len(contents.records)} verdicts journaled" + (", last line cut" if contents.truncated else ""))
        signer = (signing_key, signing_cert) if signing_key and signing_cert else None
        finalize_run(run_dir, catalog, signer=signer)
    try:
        console.print(str(build_pack(run_dir, out)))
    except PackError as exc:
        console.print(f"[red]cannot build the pack: {exc}[/red]")
        raise typer.Exit(EXIT_ERROR) from None


@app.command("verify-pack")
def verify_pack_command(
    path: Annotated[Path, typer.Argument(help="an evidence-pack zip or a run folder")],
    trust: Annotated[Path | None, typer.Option(help="certificate the manifest signer must match")] = None,
) -> None:
    """Check every hash of a pack and its manifest signature; name what differs."""
    from harness.evidence.verify import verify_pack

    result = verify_pack(path, trusted_cert=trust)
    for problem in result.problems:
        console.print(f"[red]problem:[/red] {problem}")
    for warning in getattr(result, "warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not result.ok:
        raise typer.Exit(EXIT_NONCONFORMING)
    console.print(f"[green]pack verified[/green]: {path}")


@app.command()
def catalog(
    dsr: Annotated[str, typer.Option(help="DSR")] = "LGC",
    section: Annotated[list[str] | None, typer.Option(help="area filter (INS, DMP, MSS...), repeatable")] = None,
    profile: Annotated[list[str] | None, typer.Option(help="profile filter, repeatable")] = None,
    show: Annotated[str | None, typer.Option(help="show one requirement in full")] = None,
    catalog_dir: Annotated[Path | None, typer.Option(help="catalogue data folder; default: the built-in one")] = None,
) -> None:
    """List the requirements and whether each is automated, partly automated, manual or not covered."""
    from harness.catalog import CatalogError, load_catalog
    from harness.plugin.coverage import Coverage, CoverageError, coverage_of

    try:
        cat = load_catalog(dsr, catalog_dir)
    except CatalogError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(EXIT_ERROR) from None
    if show and show not in cat:
        console.print(f"[red]no requirement {show!r} in the {dsr} catalogue[/red]")
        raise typer.Exit(EXIT_ERROR)
    try:
        coverage = coverage_of(cat, scenarios_dir(), catalog_dir)
    except CoverageError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(EXIT_ERROR) from None
    if show:
        req = cat.get(show)
        console.print(
            f"[bold]{req.ref}[/bold] ({', '.join(req.va1_refs) or 'va2'}) — {req.nature.value}, {req.profile}"
        )
        console.print(f"{req.section} / {req.bloc} / {req.fonction}")
        console.print(req.statement)
        console.print(f"coverage: {coverage[req.ref].value}")
        for sc in req.scenarios:
            console.print(f"  [bold]{sc.ref}[/bold] {sc.summary}")
            for step in sc.steps:
                console.print(f"    - {step}")
            for proof in sc.proofs:
                console.print(f"    proof {proof.ref} [{proof.kind.value}] {proof.text}")
        return
    table = Table(title=f"Catalogue {dsr} ({cat.version})")
    for column in ("ref", "va1", "profile", "nature", "coverage", "statement"):
        table.add_column(column, overflow="fold")
    rows = cat.select(section or (), profile or ())
    for req in rows:
        cov = coverage[req.ref]
        colour = {
            Coverage.AUTOMATED: "green",
            Coverage.PARTIAL: "cyan",
            Coverage.MANUAL: "yellow",
            Coverage.NOT_COVERED: "red",
        }[cov]
        table.add_row(
            req.ref,
            " ".join(req.va1_refs),
            req.profile,
            req.nature.value,
            f"[{colour}]{cov.value}[/{colour}]",
            req.statement[:90] + ("…" if len(req.statement) > 90 else ""),
        )
    console.print(table)
    counts: dict[str, int] = {}
    for req in rows:
        counts[coverage[req.ref].value] = counts.get(coverage[req.ref].value, 0) + 1
    console.print(f"{len(rows)} requirements: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())))


SERVE_PSC_CLIENT = (
    "segur-harness-demo",
    "demo-secret",
    ("http://127.0.0.1:8400/callback",),
    ("http://127.0.0.1:8400/",),
)
"""The client ``serve`` registers at its Pro Santé Connect simulator: id, secret, redirect URIs, post-logout URIs."""


@app.command()
def serve(
    duration: Annotated[float, typer.Option(help="stop after this many seconds (0 = until Ctrl-C)")] = 0.0,
    port: Annotated[int, typer.Option(help="INSi port (0 = any free port)")] = 0,
    dmp_port: Annotated[int, typer.Option(help="DMP port (0 = any free port)")] = 0,
    annuaire_port: Annotated[int, typer.Option(help="Annuaire Santé port (0 = any free port)")] = 0,
    annuaire_api_key: Annotated[
        str, typer.Option(help="the ESANTE-API-KEY the Annuaire Santé simulator accepts")
    ] = "test-api-key",
    psc_port: Annotated[int, typer.Option(help="Pro Santé Connect port (0 = any free port)")] = 0,
    smtp_port: Annotated[int, typer.Option(help="MSSanté SMTP submission port (0 = any free port)")] = 0,
    imap_port: Annotated[int, typer.Option(help="MSSanté IMAP port (0 = any free port)")] = 0,
    mss_tls: Annotated[
        str,
        typer.Option(
            help="MSSanté TLS policy: conforming, tls1.0-only, tls1.1-only, weak-cipher, expired-certificate, "
            "non-igc-certificate"
        ),
    ] = "conforming",
    pki_dir: Annotated[Path, typer.Option(help="where the test PKI is written")] = Path("reports/serve-pki"),
    fault: Annotated[
        str | None,
        typer.Option(
            help="inject a fault in every INSi call: unavailable, slow, soap-fault, malformed, not-found-as-fault"
        ),
    ] = None,
    fault_delay: Annotated[float, typer.Option(help="seconds of delay for --fault slow")] = 10.0,
    save_exchanges: Annotated[
        Path | None, typer.Option(help="on stop, write every recorded exchange (secrets redacted) to this folder")
    ] = None,
) -> None:
    """Start the simulators on loopback for manual testing and print how to reach them."""
    from harness.evidence.journal import exchange_evidence
    from harness.evidence.layout import exchange_name
    from harness.pki import TestPki
    from harness.simulators.annuaire import AnnuaireSimulator
    from harness.simulators.dmp import DmpSimulator
    from harness.simulators.insi import InsiSimulator
    from harness.simulators.insi.faults import FaultKind, InsiFault
    from harness.simulators.mssante import MssanteSimulator, TlsPolicy
    from harness.simulators.psc import PscSimulator

    try:
        mss_policy = TlsPolicy(mss_tls)
    except ValueError:
        console.print(
            f"[red]unknown MSSanté TLS policy {mss_tls!r}; known: {', '.join(p.value for p in TlsPolicy)}[/red]"
        )
        raise typer.Exit(EXIT_ERROR) from None
    injected: InsiFault | None = None
    if fault is not None:
        try:
            injected = InsiFault(FaultKind(fault), delay_s=fault_delay if fault == "slow" else 0.0)
        except ValueError:
            console.print(f"[red]unknown fault {fault!r}; known: {', '.join(k.value for k in FaultKind)}[/red]")
            raise typer.Exit(EXIT_ERROR) from None
    pki = TestPki.generate(pki_dir)
    simulator = InsiSimulator(pki=pki, port=port)
    simulator.start()
    if injected is not None:
        simulator.set_fault(injected)
    dmp = DmpSimulator(pki=pki, port=dmp_port).start()
    dmp.set_patient("279035121518989", "1.2.250.1.213.1.4.10")  # the ANS test patient, so a feed can succeed
    annuaire = AnnuaireSimulator(pki=pki, port=annuaire_port, api_key=annuaire_api_key).start()
    mssante = MssanteSimulator(pki, smtp_port=smtp_port, imap_port=imap_port).start()
    mssante.set_tls_policy(mss_policy)
    psc = PscSimulator(pki, port=psc_port).start()
    psc.register_client(*SERVE_PSC_CLIENT)
    try:
        table = Table(title="Simulators (127.0.0.1)")
        table.add_column("service")
        table.add_column("endpoint")
        table.add_column("notes", overflow="fold")
        notes = f"WSDL: {simulator.wsdl_url}" + (f"; fault injected: {fault}" if fault else "")
        table.add_row("INSi", simulator.url, notes)
        table.add_row(
            "DMP",
            dmp.url,
            "SOAP 1.2 + MTOM (ITI-41/18/43/57, TD0.2/TD0.3); mutual TLS and VIHF signed with the organisation "
            "certificate; patient known: INS 279035121518989 (1.2.250.1.213.1.4.10)",
        )
        counts = annuaire.directory.counts()
        table.add_row(
            "Annuaire Santé",
            annuaire.url,
            f"FHIR R4 JSON (Practitioner, PractitionerRole, Organization: {counts['Practitioner']}/"
            f"{counts['PractitionerRole']}/{counts['Organization']} seeded); header ESANTE-API-KEY: {annuaire.api_key}",
        )
        smtp_host, smtp_at = mssante.smtp_address
        imap_host, imap_at = mssante.imap_address
        table.add_row(
            "MSSanté SMTP",
            f"smtp://{smtp_host}:{smtp_at}",
            f"submission, STARTTLS required, AUTH PLAIN/LOGIN; TLS policy: {mss_policy.value}",
        )
        table.add_row("MSSanté IMAP", f"imap://{imap_host}:{imap_at}", "IMAP4rev1, STARTTLS required (Twisted)")
        for kind, url in mssante.dst_urls.items():
            table.add_row(f"MSSanté DST ({kind})", url, "POST /messages, body message/rfc822")
        table.add_row(
            "Pro Santé Connect",
            psc.discovery_url,
            "OpenID Connect (realm esante-wallet): authorization code + PKCE S256, acr eidas1, refresh, userinfo, "
            "introspection, end-session, CIBA (poll)",
        )
        console.print(table)
        console.print(
            "Mail client: server 127.0.0.1, SMTP port "
            f"{smtp_at} and IMAP port {imap_at}, both 'STARTTLS', normal password; login {mssante.sut_address}, "
            f"password {mssante.sut_password()}; trust the CA bundle below; client certificate: the organisation one"
        )
        console.print(f"Annuaire Santé base URL / API key: {annuaire.url} / ESANTE-API-KEY: {annuaire.api_key}")
        client_id, client_secret, (redirect_uri,), (logout_uri,) = SERVE_PSC_CLIENT
        console.print(f"PSC discovery URL:                 {psc.discovery_url}")
        console.print(
            f"PSC demo client id / secret:       {client_id} / {client_secret} (client_secret_basic or _post); "
            f"redirect URI {redirect_uri}, post-logout redirect URI {logout_uri}"
        )
        console.print(
            "PSC test professionals (SubjectNameID): "
            + ", ".join(f"{p.subject_name_id} {p.given_name} {p.family_name}" for p in psc.professionals)
        )
        console.print(f"CA bundle (trust this):            {pki.ca_bundle_path}")
        console.print(f"organisation certificate / key:    {pki.organisation.chain_path} / {pki.organisation.key_path}")
        console.print(f"CPS-like certificate / key:        {pki.cps.chain_path} / {pki.cps.key_path}")
        console.print("Ctrl-C to stop." if not duration else f"stopping in {duration:g} s")
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
        dmp.stop()
        annuaire.stop()
        mssante.stop()
        psc.stop()
        recorded = (
            simulator.recorder.all()
            + dmp.recorder.all()
            + annuaire.recorder.all()
            + mssante.recorder.all()
            + psc.recorder.all()
        )
        exchanges = sorted(recorded, key=lambda e: e.started)
        console.print(f"{len(exchanges)} exchanges recorded")
        if save_exchanges is not None:
            save_exchanges.mkdir(parents=True, exist_ok=True)
            for position, exchange in enumerate(exchanges, start=1):
                _, data = exchange_evidence(exchange)
                (save_exchanges / exchange_name(position, exchange.simulator)).write_bytes(data)
            console.print(f"exchanges written to {save_exchanges}")


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="CDA files, or folders searched for *.xml")],
    rules: Annotated[
        Path | None,
        typer.Option(
            help="TestContenuCDA folder (schematrons/, jeuxDeValeurs/, infrastructure/); "
            "default: $SEGUR_HARNESS_CDA_RULES"
        ),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="table, json, svrl or html")] = "table",
    output: Annotated[Path | None, typer.Option(help="write the json/svrl/html report here instead of stdout")] = None,
    volet: Annotated[
        str | None, typer.Option(help="force this volet schematron (file name) for every document")
    ] = None,
    route: Annotated[str, typer.Option(help="schematron compiler: auto, harness or ans-skeleton")] = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="compiled schematron cache; default ~/.cache/segur-harness")
    ] = None,
    no_profiles: Annotated[bool, typer.Option("--no-profiles", help="run the volet schematron only")] = False,
) -> None:
    """Validate CDA documents as ANS does (schema, volet and profile schematrons) plus the harness's header rules.

    Exit 0 when every document passes, 1 when any has an error finding, 2 on bad usage.
    """
    import sys

    from harness.validators.cda import CdaValidator, RulesError, RuleSet
    from harness.validators.cda.engine import SchematronError
    from harness.validators.cda.render import to_html, to_json, to_svrl

    if output_format not in ("table", "json", "svrl", "html"):
        console.print(f"[red]unknown --format {output_format!r}: table, json, svrl or html[/red]")
        raise typer.Exit(EXIT_ERROR)
    try:
        ruleset = RuleSet.open(rules) if rules is not None else RuleSet.from_environment()
        validator = CdaValidator(ruleset, cache_dir=cache_dir, route=route, profiles=not no_profiles)
    except (RulesError, SchematronError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_ERROR) from None
    files = _documents(paths)
    if not files:
        console.print("[red]no documents: give CDA files or folders holding *.xml[/red]")
        raise typer.Exit(EXIT_ERROR)
    err = Console(stderr=True)
    if ruleset is None:
        err.print(
            "[yellow]no ANS rules folder (--rules or $SEGUR_HARNESS_CDA_RULES): "
            "only the harness's own header and PDF rules apply[/yellow]"
        )
    reports = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=len(files) < 2,
    ) as progress:
        task = progress.add_task("validating", total=len(files))
        for path in files:
            reports.append(_validate_one(validator, path, volet))
            progress.advance(task)
    if output_format == "table":
        _print_validation_table(reports, validator.ruleset)
    else:
        rendered = {
            "json": lambda: to_json(reports, validator.ruleset),
            "svrl": lambda: to_svrl(reports),
            "html": lambda: to_html(reports, validator.ruleset),
        }[output_format]()
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(rendered)
            err.print(f"{output_format} report written to {output}")
        else:
            sys.stdout.buffer.write(rendered)
            sys.stdout.flush()
    raise typer.Exit(EXIT_OK if all(r.ok for r in reports) else EXIT_NONCONFORMING)


@app.command("check-export")
def check_export_command(
    archive: Annotated[Path, typer.Argument(help="a portability export (zip) the SUT produced")],
    layout: Annotated[
        Path | None, typer.Option(help="TOML [portability] table renaming the non-XDM parts of the archive")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(help="TestContenuCDA folder judging the CDA files; default: $SEGUR_HARNESS_CDA_RULES")
    ] = None,
    no_cda: Annotated[bool, typer.Option("--no-cda", help="do not run the CDA validator on the documents")] = False,
    output_format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Check a portability archive (PORT/va1.01) on its own: layout, metadata, identity, PDF copies, agenda, traces,
    dictionary, integrity report, and each CDA by the CDA validator.

    Without the seeded data of a run, completeness and depth cannot be judged: the scenarios do that.
    Exit 0 without error findings, 1 with some, 2 on bad usage.
    """
    import json as json_module
    import sys

    from harness.findings import Severity
    from harness.validators import portability
    from harness.validators.cda import CdaValidator, RulesError, RuleSet

    if output_format not in ("table", "json"):
        console.print(f"[red]unknown --format {output_format!r}: table or json[/red]")
        raise typer.Exit(EXIT_ERROR)
    try:
        shape = portability.PortabilityLayout.from_toml(layout) if layout else portability.PortabilityLayout()
        size = archive.stat().st_size
        if size > portability.DEFAULT_MAX_BYTES:
            raise ValueError(f"{archive} is {size:,} bytes, above {portability.DEFAULT_MAX_BYTES:,}")
        data = archive.read_bytes()
        check_cda = None
        if not no_cda:
            ruleset = RuleSet.open(rules) if rules is not None else RuleSet.from_environment()
            check_cda = portability.cda_check(CdaValidator(ruleset))

    except (OSError, ValueError, RulesError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(EXIT_ERROR) from None
    report = portability.check_export(data, None, layout=shape, check_cda=check_cda)
    shown = [f for f in report.findings if f.severity is not Severity.INFO]
    if output_format == "json":
        body = {**report.inventory(), "findings": [f.to_dict() for f in shown]}
        sys.stdout.write(json_module.dumps(body, indent=2, ensure_ascii=False) + "\n")
    else:
        table = Table(title=f"portability archive {archive.name}")
        for column in ("severity", "rule", "where", "message"):
            table.add_column(column, overflow="fold")
        for finding in shown[:200]:
            table.add_row(finding.severity.value, finding.rule, escape(finding.location), escape(finding.message))
        console.print(table)
        counts = report.inventory()
        console.print(
            f"{counts['members']} files, {len(report.folders)} patient folder(s), {counts['document_entries']} "
            f"document entries ({counts['cda_validated']} CDA validated), {counts['appointments']} appointment(s), "
            f"{counts['trace_lines']} trace line(s): {len(report.errors)} error(s)"
        )
    raise typer.Exit(EXIT_NONCONFORMING if report.errors else EXIT_OK)


def _documents(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".xml"))
        else:
            found.append(path)
    return found


def _validate_one(validator: Any, path: Path, volet: str | None) -> Any:
    """One report per file; a file that cannot be read gets a report saying so, and the batch goes on."""
    from harness.findings import error
    from harness.validators.cda import CdaReport, Stage, StageReport

    try:
        data = path.read_bytes()
    except OSError as exc:
        stage = StageReport(Stage.PARSE, "file", findings=[error("cda.file.unreadable", str(exc), source="cda")])
        return CdaReport(subject=str(path), ruleset=validator.ruleset, stages=[stage])
    try:
        return validator.validate(data, str(path), volet=volet)
    except Exception as exc:
        stage = StageReport(
            Stage.PARSE,
            "harness",
            findings=[error("cda.harness.failure", f"{type(exc).__name__}: {exc}", source="cda")],
        )
        return CdaReport(subject=str(path), ruleset=validator.ruleset, stages=[stage])


def _print_validation_table(reports: list[Any], ruleset: str) -> None:
    from rich.markup import escape

    from harness.validators.cda import Stage
    from harness.validators.cda.render import stage_cell

    table = Table(title="CDA validation")
    for column in ("document", "volet", "XSD", "volet sch.", "profiles", "header", "PDF", "errors", "ANS", "verdict"):
        table.add_column(column, overflow="fold")
    for report in reports:
        volet = report.volet.schematron.rsplit("/", 1)[-1].removesuffix(".sch") if report.volet else ""
        table.add_row(
            Path(report.subject).name,
            volet or "-",
            stage_cell(report, Stage.XSD),
            stage_cell(report, Stage.SCHEMATRON, profiles=False),
            stage_cell(report, Stage.SCHEMATRON, profiles=True),
            stage_cell(report, Stage.HEADER),
            stage_cell(report, Stage.PDF),
            str(len(report.errors)),
            "pass" if report.ans_ok else "[red]FAIL[/red]",
            "pass" if report.ok else "[red]FAIL[/red]",
        )
    console.print(table)
    passed = sum(1 for r in reports if r.ok)
    ans_passed = sum(1 for r in reports if r.ans_ok)
    console.print(
        f"{len(reports)} documents: {passed} pass, {len(reports) - passed} fail "
        f"(ANS rules alone: {ans_passed} pass, {len(reports) - ans_passed} fail; "
        "'verdict' adds the harness's header and PDF rules)"
    )
    console.print(f"rules: {ruleset or 'harness rules only'}")
    for report in reports:
        for finding in report.errors[:5]:
            where = f" at {finding.location}" if finding.location else ""
            console.print(escape(f"  {Path(report.subject).name}: [{finding.rule}] {finding.message[:200]}{where}"))
        if len(report.errors) > 5:
            console.print(f"  {Path(report.subject).name}: … {len(report.errors) - 5} more errors (use --format json)")


@app.command("import-rem")
def import_rem(
    rem_csv: Annotated[Path, typer.Argument(help="rem-<dsr>.csv (one row per requirement × scenario)")],
    proofs_csv: Annotated[Path, typer.Argument(help="rem-<dsr>-proofs.csv (one row per proof)")],
    out: Annotated[Path, typer.Option(help="folder for the skeleton files")] = Path("catalog-skeleton"),
    area: Annotated[list[str] | None, typer.Option(help="areas to import, repeatable")] = None,
    include_obsolete: Annotated[list[str] | None, typer.Option(help="obsolete refs to keep anyway")] = None,
) -> None:
    """Write catalogue skeletons from an ANS REM export (ids exact; wording left to paraphrase)."""
    from harness.catalog.import_rem import write_skeletons

    areas = area or ["INS", "DMP", "MSS", "PSC", "ANN", "CDA", "DOC", "PORT"]
    for path in write_skeletons(rem_csv, proofs_csv, out, areas, include_obsolete or ()):
        console.print(str(path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
