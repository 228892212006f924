#!/usr/bin/env python3
"""Benchmark of the Pro Santé Connect simulator: complete logins per second (authorization code, token, userinfo).

Starts a :class:`~harness.simulators.psc.PscSimulator` on loopback and logs professionals in
``--count`` times, each login being what a practice software and its user's browser do: the
independent client (authlib's ``OAuth2Session``, PKCE S256, state, nonce) builds the
authorization URL, :class:`~harness.simulators.psc.PscUserAgent` opens it, picks the
professional on the login page and stops at the redirect URI, the client exchanges the code
(client_secret_basic), checks the ID token's signature, issuer, audience and nonce with PyJWT
against the JWKS fetched once, and reads userinfo. First from one client, then from
``--workers`` concurrent ones (each with its own agent and HTTPS connections).

    python bench/bench_psc.py [--count 100] [--workers 4]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from harness.pki import TestPki
from harness.simulators.psc import PscSimulator, PscUserAgent

REDIRECT = "http://127.0.0.1:8400/callback"
SECRET = "bench-secret"


def login_loop(sim: PscSimulator, count: int, professional: str) -> tuple[list[float], int]:
    """``count`` logins by one client and one agent: the seconds of each, and how many failed."""
    discovery = sim.discovery()
    keys = jwt.PyJWKClient(
        discovery["jwks_uri"], ssl_context=ssl.create_default_context(cafile=str(sim.ca_bundle_path))
    )
    agent = PscUserAgent(sim, timeout=10)
    client = OAuth2Session(
        "bench", SECRET, scope="openid scope_all", redirect_uri=REDIRECT, code_challenge_method="S256"
    )
    client.trust_env = False
    client.verify = str(sim.ca_bundle_path)
    times: list[float] = []
    failures = 0
    try:
        for _ in range(count):
            started = time.perf_counter()
            try:
                one_login(sim, discovery, keys, agent, client, professional)
            except Exception as exc:  # a benchmark reports, it does not stop
                failures += 1
                print(f"warning: a login failed: {type(exc).__name__}: {exc}")
            times.append(time.perf_counter() - started)
    finally:
        agent.close()
        client.close()
    return times, failures


def one_login(
    sim: PscSimulator,
    discovery: dict[str, Any],
    keys: jwt.PyJWKClient,
    agent: PscUserAgent,
    client: OAuth2Session,
    professional: str,
) -> None:
    verifier, nonce = generate_token(64), generate_token(32)
    url, state = client.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce, acr_values="eidas1"
    )
    result = agent.login(url, professional, stop_at=REDIRECT)
    if not result.stopped:
        raise RuntimeError(result.error or f"the walk ended at {result.final_url}")
    token = client.fetch_token(
        discovery["token_endpoint"], authorization_response=result.final_url, code_verifier=verifier, state=state
    )
    key = keys.get_signing_key_from_jwt(token["id_token"])
    claims = jwt.decode(token["id_token"], key.key, algorithms=["RS256"], audience="bench", issuer=sim.issuer)
    if claims.get("nonce") != nonce:
        raise RuntimeError("nonce mismatch")
    userinfo = client.get(discovery["userinfo_endpoint"], timeout=10)
    if userinfo.json().get("SubjectNameID") != professional:
        raise RuntimeError("userinfo for someone else")


def run(sim: PscSimulator, count: int, workers: int) -> tuple[float, list[float], int]:
    """``count`` logins spread over ``workers`` clients: wall seconds, each login's seconds, failures."""
    professionals = [p.subject_name_id for p in sim.professionals]
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(lambda i: login_loop(sim, shares[i], professionals[i % len(professionals)]), range(workers))
        )
    wall = time.perf_counter() - started
    return wall, [t for times, _ in results for t in times], sum(f for _, f in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="logins per run (default 100)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent clients of the second run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-psc-") as tmp:
        pki = TestPki.generate(Path(tmp))
        with PscSimulator(pki) as sim:
            sim.register_client("bench", SECRET, [REDIRECT], ["http://127.0.0.1:8400/"])
            run(sim, 3, 1)  # warm-up: TLS contexts, imports
            for workers in (1, max(1, args.workers)):
                sim.reset()
                rows.append((workers, *run(sim, args.count, workers)))
            exchanges = len(sim.recorder.all())
    print("\nPSC logins: authorization (user agent, login form) + token (PKCE S256) + ID token check + userinfo")
    header = ("clients", 8), ("logins", 7), ("failed", 7), ("seconds", 9), ("per second", 11)
    header += (("median ms", 10), ("p95 ms", 8))
    print(" ".join(f"{name:>{width}}" for name, width in header))
    for workers, wall, latencies, failures in rows:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0
        rate = len(latencies) / wall if wall else 0.0
        median = statistics.median(latencies) * 1000 if latencies else 0.0
        counts = f"{workers:>8} {len(latencies):>7} {failures:>7}"
        print(f"{counts} {wall:>9.2f} {rate:>11.1f} {median:>10.1f} {p95 * 1000:>8.1f}")
    print(f"exchanges recorded in the last run: {exchanges} (the JWKS is fetched once per client)")


if __name__ == "__main__":
    main()
