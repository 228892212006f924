"""A headless browser for Pro Santé Connect logins: open the authorization URL, pick a professional, follow back.

A scenario starts a login in the SUT, which gives the authorization URL its user's browser
would open. :class:`PscUserAgent` plays that browser: it GETs the URL (trusting the test
PKI's CA bundle), posts the simulator's login form for the chosen professional, and follows
the redirects up to the SUT's redirect URI (plain ``http`` on 127.0.0.1 is fine: the reference
system's control API serves its callback there), with a bounded number of hops, a bounded body
per hop and a time budget for the whole walk. It never raises on network trouble: the
:class:`LoginResult` says what happened, hop by hop. One agent is one browser: not thread-safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urljoin, urlsplit

import lxml.html
import requests
from lxml import etree

if TYPE_CHECKING:
    from harness.simulators.psc.simulator import PscSimulator

MAX_HOPS = 10
MAX_BODY = 1024 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Hop:
    """One request the agent made, and how it was answered."""

    method: str
    url: str
    status: int
    location: str = ""


@dataclass(slots=True)
class LoginResult:
    """Where the walk ended: the last URL reached (or, with ``stop_at``, the one not followed), and each hop."""

    final_url: str
    status: int
    body: bytes
    hops: list[Hop] = field(default_factory=list)
    error: str = ""
    """Why the walk could not finish (timeout, too many hops, no login form, the professional not offered)."""
    stopped: bool = False
    """The walk stopped before requesting ``final_url`` (it matched ``stop_at``)."""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def query(self) -> dict[str, str]:
        """The parameters of ``final_url`` (``code``, ``state``, ``iss``, or ``error``...)."""
        return dict(parse_qsl(urlsplit(self.final_url).query, keep_blank_values=True))


class PscUserAgent:
    """Drives the simulator's login page like a browser would, within bounds.

    Args:
        simulator_or_ca_bundle: the :class:`PscSimulator` (its PKI's CA bundle is trusted), or a CA bundle path.
        timeout: the time budget of one walk, in seconds (each request gets what is left of it).
        max_hops: the most requests in one walk.
    """

    def __init__(
        self,
        simulator_or_ca_bundle: PscSimulator | Path | str,
        timeout: float = 10.0,
        *,
        max_hops: int = MAX_HOPS,
        max_body: int = MAX_BODY,
    ) -> None:
        if isinstance(simulator_or_ca_bundle, (str, Path)):
            ca_bundle = Path(simulator_or_ca_bundle)
        else:
            ca_bundle = simulator_or_ca_bundle.ca_bundle_path
        if timeout <= 0 or max_hops < 1:
            raise ValueError("timeout and max_hops must be positive")
        self.timeout = timeout
        self.max_hops = max_hops
        self.max_body = max_body
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE overriding verify=
        self.session.verify = str(ca_bundle)
        self.session.headers["User-Agent"] = "segur-harness-psc-user-agent"

    def close(self) -> None:
        self.session.close()

    def login(self, authorization_url: str, subject_name_id: str, *, stop_at: str | None = None) -> LoginResult:
        """Log ``subject_name_id`` in: open the URL, choose them on the login page, follow back to the client.

        Args:
            stop_at: a URL prefix (the client's redirect URI) not to request: the walk ends there,
                ``final_url`` holding the redirect with its ``code`` and ``state``.
        """
        return self._walk(authorization_url, ("subject_name_id", subject_name_id), stop_at)

    def deny(self, authorization_url: str, *, stop_at: str | None = None) -> LoginResult:
        """Open the URL and refuse on the login page (the client gets ``error=access_denied``)."""
        return self._walk(authorization_url, ("action", "deny"), stop_at)

    def follow(self, url: str, *, stop_at: str | None = None) -> LoginResult:
        """GET ``url`` (an end-session URL) and follow its redirects."""
        return self._walk(url, None, stop_at)

    def _walk(self, url: str, choice: tuple[str, str] | None, stop_at: str | None) -> LoginResult:
        deadline = time.monotonic() + self.timeout
        hops: list[Hop] = []
        method, data = "GET", None
        posted = choice is None
        status, body = 0, b""
        while True:
            remaining = deadline - time.monotonic()
            if len(hops) >= self.max_hops:
                return LoginResult(url, status, body, hops, f"more than {self.max_hops} hops")
            if remaining <= 0:
                return LoginResult(url, status, body, hops, f"no end within {self.timeout:g} s")
            try:
                status, location, body, html_page = self._request(method, url, data, remaining)
            except requests.RequestException as exc:
                return LoginResult(url, 0, b"", hops, f"{type(exc).__name__}: {exc}")
            hops.append(Hop(method, url, status, location))
            if status in REDIRECTS and location:
                target = urljoin(url, location)
                if urlsplit(target).scheme not in ("http", "https"):
                    return LoginResult(target, status, body, hops, f"redirect to a non-HTTP URL {target[:200]!r}", True)
                if stop_at is not None and target.startswith(stop_at):
                    return LoginResult(target, status, body, hops, stopped=True)
                if status not in (307, 308):
                    method, data = "GET", None
                url = target
                continue
            if posted:
                return LoginResult(url, status, body, hops)
            assert choice is not None
            form = _login_form(body) if html_page else None
            if form is None:
                return LoginResult(url, status, body, hops, "no PSC login form on the way")
            action, fields, choices = form
            if choice not in choices:
                return LoginResult(url, status, body, hops, f"{choice[1]!r} is not offered on the login page")
            method, data, posted = "POST", [*fields, choice], True
            url = urljoin(url, action)

    def _request(
        self, method: str, url: str, data: list[tuple[str, str]] | None, timeout: float
    ) -> tuple[int, str, bytes, bool]:
        """One request without following redirects: status, Location, the body (at most ``max_body``), HTML?"""
        with self.session.request(
            method, url, data=data, allow_redirects=False, stream=True, timeout=min(timeout, self.timeout)
        ) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size >= self.max_body:
                    break
            body = b"".join(chunks)[: self.max_body]
            is_html = "html" in response.headers.get("Content-Type", "").lower()
            return response.status_code, response.headers.get("Location", ""), body, is_html


def _login_form(body: bytes) -> tuple[str, list[tuple[str, str]], set[tuple[str, str]]] | None:
    """The simulator's login form: its action, its hidden fields, and the (name, value) of each button."""
    try:
        document = lxml.html.document_fromstring(body)
    except (etree.ParserError, ValueError):
        return None
    for form in document.iter("form"):
        hidden = [
            (str(i.get("name")), str(i.get("value", "")))
            for i in form.iter("input")
            if i.get("type", "").lower() == "hidden" and i.get("name")
        ]
        if not any(name == "request_id" for name, _ in hidden):
            continue
        buttons = {(str(b.get("name")), str(b.get("value", ""))) for b in form.iter("button") if b.get("name")}
        return str(form.get("action", "")), hidden, buttons
    return None
