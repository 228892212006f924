"""The ``segur-harness`` command line, run as a vendor's CI runs it: a separate process, exit codes checked.

Each conformance run here is a short one (``-k`` selects a few scenarios) against
the built-in reference system; the full main job is exercised by the README's
first command and by ``bench/bench_main_job.py``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

QUICK = "centre_de_sante or typed_matricule or fifteen_characters"
"""A -k expression selecting four fast INSi scenario cases."""


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``segur-harness ARGS`` in a fresh process, with a wide terminal so tables do not fold."""
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def only_pack(folder: Path) -> Path:
    packs = sorted(folder.glob("*.zip"))
    assert len(packs) == 1, packs
    return packs[0]


@pytest.fixture(scope="module")
def conforming_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """One short conforming run, shared by the tests that read what it wrote."""
    work = tmp_path_factory.mktemp("cli-run")
    done = cli("run", "-k", QUICK, f"--run-dir={work / 'run'}", f"--out={work / 'out'}")
    return done, work / "run", work / "out"


def test_a_conforming_run_exits_0_with_a_summary_and_a_verified_pack(
    conforming_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    done, run_dir, out = conforming_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Conformance scenarios" in done.stdout and "INS/va1.14.01" in done.stdout
    assert "scenarios:    4 passed" in done.stdout
    assert "requirements: " in done.stdout and "(verified)" in done.stdout.replace("\n", "")
    pack = only_pack(out)
    assert pack.name.startswith("segur-harness-reference-cabinet-temoin-0.1.0-lgc-") and pack.suffix == ".zip"
    assert (run_dir / "manifest.json").exists() and (run_dir / "manifest.sig").exists()


def test_a_run_whose_evidence_holds_a_huge_exchange_still_packs_and_verifies(tmp_path: Path) -> None:
    """The huge-userinfo fault records a 4 MB answer: the pack keeps it and its verifier accepts it."""
    done = cli("run", "-k", "broken_provider", f"--run-dir={tmp_path / 'run'}", f"--out={tmp_path}", timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "scenarios:    4 passed" in done.stdout and "(verified)" in done.stdout.replace("\n", "")


def test_verify_pack_accepts_the_pack_and_names_a_tampered_file(
    conforming_run: tuple[subprocess.CompletedProcess[str], Path, Path], tmp_path: Path
) -> None:
    _, _, out = conforming_run
    pack = only_pack(out)
    ok = cli("verify-pack", str(pack))
    assert ok.returncode == 0 and "pack verified" in ok.stdout, ok.stdout + ok.stderr

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(pack) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "run.json":
                data = data[:10] + bytes([data[10] ^ 0x01]) + data[11:]
            target.writestr(info, data)
    bad = cli("verify-pack", str(tampered))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "run.json" in bad.stdout and "problem" in bad.stdout


def test_pack_rebuilds_the_same_bytes(
    conforming_run: tuple[subprocess.CompletedProcess[str], Path, Path], tmp_path: Path
) -> None:
    _, run_dir, out = conforming_run
    again = cli("pack", str(run_dir), f"--out={tmp_path}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert only_pack(tmp_path).read_bytes() == only_pack(out).read_bytes()


def test_a_defect_makes_the_run_exit_1(tmp_path: Path) -> None:
    done = cli(
        "run",
        "--sut=reference:cps-assertion-in-centre",
        "-k",
        "centre_de_sante",
        f"--run-dir={tmp_path / 'run'}",
        f"--out={tmp_path}",
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "failed" in done.stdout and "organisation certificate" in done.stdout
    assert "(verified)" in done.stdout.replace("\n", ""), "a non-conforming run still gets a verified pack"


def test_an_unreachable_sut_makes_the_run_exit_2_with_its_evidence(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = cli(
        "run", f"--sut=http://127.0.0.1:{port}", "-k", QUICK, f"--run-dir={tmp_path / 'run'}", f"--out={tmp_path}"
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" in done.stdout and "cannot connect" in done.stdout
    assert (tmp_path / "run" / "manifest.json").exists()


def test_scenario_options_reach_the_scenarios(tmp_path: Path) -> None:
    statement = tmp_path / "statement.toml"
    statement.write_text('[portability]\nlaunch = "Menu Administration > Portabilite"\n', encoding="utf-8")
    done = cli(
        "run",
        "-k",
        "test_the_export_holds_the_data_within_the_depth and unitaire",
        f"--scenario-option=--portability-statement={statement}",
        f"--run-dir={tmp_path / 'run'}",
        f"--out={tmp_path}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [documentation] = (tmp_path / "run").rglob("PORT-va1.01-documentation.md")
    assert "Menu Administration > Portabilite" in documentation.read_text(encoding="utf-8")
    bad = cli("run", "--scenario-option=portability", f"--run-dir={tmp_path / 'bad'}", f"--out={tmp_path}")
    assert bad.returncode == 2 and "give it as --name=value" in bad.stdout


def test_an_unknown_profile_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("run", "--profile=Cabinet lunaire", f"--run-dir={tmp_path / 'run'}", f"--out={tmp_path}")
    assert done.returncode == 2
    assert "did not complete" in done.stdout


def test_catalog_lists_with_filters_and_coverage() -> None:
    done = cli("catalog", "--section", "PSC")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 requirements" in done.stdout and "PSC.01" in done.stdout
    centre = cli("catalog", "--profile", "Centres de santé")
    assert "INS/va1.14" in centre.stdout and "automated" in centre.stdout and "1 requirements" in centre.stdout


def test_catalog_shows_one_requirement_with_its_proofs() -> None:
    done = cli("catalog", "--show", "INS/va1.38")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LGC.INS" in done.stdout and "INS/va1.38.01.01" in done.stdout
    assert "coverage: automated" in done.stdout
    cnda = cli("catalog", "--show", "INS/va1.15")
    assert "coverage: manual" in cnda.stdout


def test_catalog_refuses_an_unknown_id_and_a_broken_catalogue(tmp_path: Path) -> None:
    unknown = cli("catalog", "--show", "INS/va1.999")
    assert unknown.returncode == 2 and "no requirement 'INS/va1.999'" in unknown.stdout
    (tmp_path / "lgc").mkdir()
    (tmp_path / "profiles.toml").write_text('[[profile]]\nname = "Général"\n', encoding="utf-8")
    (tmp_path / "lgc" / "x.toml").write_text("[[requirement]\n", encoding="utf-8")
    broken = cli("catalog", f"--catalog-dir={tmp_path}")
    assert broken.returncode == 2 and "x.toml: cannot read" in broken.stdout
    assert "Traceback" not in broken.stdout + broken.stderr


def test_serve_prints_the_endpoints_and_the_certificates(tmp_path: Path) -> None:
    done = cli("serve", "--duration=0.5", f"--pki-dir={tmp_path}", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "https://127.0.0.1:" in done.stdout and "WSDL" in done.stdout
    assert str(tmp_path / "ca-bundle.pem") in done.stdout.replace("\n", "")
    assert (tmp_path / "organisation-chain.pem").exists() and (tmp_path / "organisation.key").exists()


def _serve(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``serve`` started for 20 s (PKI in ``tmp_path/pki``), and what it printed until it announced its endpoints."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "harness.cli", "serve", "--duration=20", f"--pki-dir={tmp_path / 'pki'}"),
            *options,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not any("stopping in" in line for line in lines):
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError("serve stopped before announcing its endpoints: " + "".join(lines))
        lines.append(line)
    return process, lines


def test_serve_with_a_fault_answers_a_zeep_client_and_saves_what_it_recorded(tmp_path: Path) -> None:
    """A QA engineer's manual session: start ``serve`` with a fault, call it with zeep, read the saved exchanges."""
    import requests
    from zeep import Client
    from zeep.exceptions import Fault
    from zeep.transports import Transport

    saved = tmp_path / "exchanges"
    process, lines = _serve(tmp_path, "--fault=soap-fault", f"--save-exchanges={saved}")
    try:
        url = next(word for line in lines for word in line.split() if word.startswith("https://127.0.0.1:"))
        pki = tmp_path / "pki"
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
        session.verify = str(pki / "ca-bundle.pem")
        session.cert = (str(pki / "organisation-chain.pem"), str(pki / "organisation.key"))
        client = Client(url + "?wsdl", transport=Transport(session=session, timeout=10))
        with pytest.raises(Fault, match="Erreur technique"):
            client.service.rechercherInsAvecTraitsIdentite(
                NomNaissance="SEGURUN", Prenom="ANNE", Sexe="F", DateNaissance="1985-04-17"
            )
        process.send_signal(2)  # Ctrl-C
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "exchanges recorded" in out and "exchanges written to" in out
    files = sorted(saved.glob("*-insi.json"))
    assert len(files) >= 2, "the WSDL fetch and the SOAP call"
    assert any("Erreur technique" in f.read_text(encoding="utf-8") for f in files)


def test_serve_takes_mail_from_smtplib_and_saves_the_session(tmp_path: Path) -> None:
    """A QA engineer points a mail client (here smtplib) at ``serve``'s MSSanté operator, as it prints how to."""
    import re
    import smtplib
    import ssl

    saved = tmp_path / "exchanges"
    process, lines = _serve(tmp_path, f"--save-exchanges={saved}")
    try:
        text = "".join(lines)
        found = re.search(r"SMTP port (\d+) and IMAP port (\d+).*login (\S+), password (\S+);", text, re.S)
        assert found, text
        smtp_port, login, password = int(found[1]), found[3], found[4]
        context = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca-bundle.pem"))
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.starttls(context=context)
            client.login(login, password)
            client.sendmail(login, ["helene.lefevre@ch-test.mssante.fr"], b"Subject: hello\r\n\r\nhello\r\n")
        process.send_signal(2)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out
    files = sorted(saved.glob("*-mssante.json"))
    assert files and any("hello" in f.read_text(encoding="utf-8") for f in files)


def test_serve_starts_pro_sante_connect_with_a_demo_client_an_oidc_client_can_use(tmp_path: Path) -> None:
    """A QA engineer reads the discovery URL, the demo client and the professionals ``serve`` prints, and logs in."""
    import re

    import requests

    from harness.simulators.psc import PscUserAgent

    saved = tmp_path / "exchanges"
    process, lines = _serve(tmp_path, f"--save-exchanges={saved}")
    try:
        text = "".join(lines)
        discovery = re.search(r"PSC discovery URL:\s+(\S+)", text)
        client = re.search(r"PSC demo client id / secret:\s+(\S+) / (\S+) .*redirect URI (\S+),", text)
        professionals = re.search(r"PSC test professionals \(SubjectNameID\): (.+)", text)
        assert discovery and client and professionals, text
        assert discovery[1].endswith("/auth/realms/esante-wallet/.well-known/wallet-openid-configuration")
        assert client[3] == "http://127.0.0.1:8400/callback" and "899700012345 JEAN TESTEUR" in professionals[1]
        session = requests.Session()
        session.trust_env = False
        session.verify = str(tmp_path / "pki" / "ca-bundle.pem")
        document = session.get(discovery[1], timeout=10).json()
        query = {
            "response_type": "code",
            "client_id": client[1],
            "redirect_uri": client[3],
            "scope": "openid scope_all",
            "state": "etat-de-test-0123456789",
            "nonce": "nonce-de-test-0123456789",
            "acr_values": "eidas1",
        }
        login = PscUserAgent(tmp_path / "pki" / "ca-bundle.pem").login(
            document["authorization_endpoint"] + "?" + "&".join(f"{k}={v}" for k, v in query.items()),
            "899700012345",
            stop_at=client[3],
        )
        assert login.stopped and "code" in login.query, login
        token = session.post(
            document["token_endpoint"],
            data={"grant_type": "authorization_code", "code": login.query["code"], "redirect_uri": client[3]},
            auth=(client[1], client[2]),
            timeout=10,
        )
        assert token.status_code == 200 and "id_token" in token.json()
        process.send_signal(2)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out
    files = sorted(saved.glob("*-psc.json"))
    assert len(files) >= 4, "discovery, authorization, login, token"
    assert not any("demo-secret" in f.read_text(encoding="utf-8") for f in files), "secrets redacted"


def test_serve_refuses_an_unknown_mssante_tls_policy(tmp_path: Path) -> None:
    done = cli("serve", "--duration=0.1", f"--pki-dir={tmp_path}", "--mss-tls=ssl3", timeout=60)
    assert done.returncode == 2 and "unknown MSSanté TLS policy" in done.stdout


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _scenario_verdicts(text: str) -> int:
    """Journaled verdicts of scenarios that ran (not the manual ones written at the end)."""
    count = 0
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line of a killed run may be cut
        count += record.get("type") == "verdict" and bool(record["verdict"].get("nodeid"))
    return count


def _journaled_scenarios(journal: Path) -> int:
    return _scenario_verdicts(journal.read_text(encoding="utf-8")) if journal.exists() else 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the reference process")
def test_a_killed_run_keeps_its_finished_scenarios_and_can_still_be_packed(tmp_path: Path) -> None:
    import os
    import signal
    import time

    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", f"--run-dir={run_dir}", f"--out={tmp_path / 'never'}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _journaled_scenarios(run_dir / "journal.jsonl") < 5 and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    reference = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    finished = _journaled_scenarios(run_dir / "journal.jsonl")
    assert finished >= 5
    assert not (run_dir / "manifest.json").exists()

    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in reference) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in reference:  # zombies are reaped by init; a live reference process would still be "R"/"S"
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", "reference outlived its run"

    packed = cli("pack", str(run_dir), f"--out={tmp_path / 'out'}")
    assert packed.returncode == 0, packed.stdout + packed.stderr
    assert "interrupted" in packed.stdout and "finalising it from its journal" in packed.stdout
    assert cli("verify-pack", str(only_pack(tmp_path / "out"))).returncode == 0
    with zipfile.ZipFile(only_pack(tmp_path / "out")) as archive:
        journal = archive.read("journal.jsonl").decode("utf-8")
    assert _scenario_verdicts(journal) == finished
