"""The Pro Santé Connect simulator's HTTP vocabulary: answers, OAuth errors, HTML pages, request parameters.

Every endpoint answers an :class:`HttpAnswer`; a refusal is raised as :class:`OAuthError` (a JSON
``error``/``error_description`` body, RFC 6749 §5.2) or :class:`PageError` (a small HTML page, for
the browser when it cannot be sent back to the client). :func:`parameters` reads a query string or
a form body under limits, strictly UTF-8, and names the parameters given twice.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from harness.simulators.https import HttpAnswer, HttpRequest

MAX_FIELDS = 100
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


def base_meta() -> dict[str, Any]:
    """The meta keys every PSC exchange carries, with their 'nothing known' values."""
    return {
        "endpoint": None,
        "client_id": None,
        "grant_type": None,
        "error": None,
        "fault": None,
        "misbehaviour": None,
        "record": None,
    }


def json_body(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def oauth_error(status: int, code: str, description: str, meta: dict[str, Any] | None = None) -> HttpAnswer:
    """An OAuth 2.0 JSON error answer (``error``, ``error_description``)."""
    full = base_meta()
    full.update(meta or {})
    full["error"] = code
    body = json_body({"error": code, "error_description": description})
    return HttpAnswer(status, body, headers=list(NO_STORE), meta=full, action=str(full.get("endpoint") or ""))


def refusal(status: int, fault: str, detail: str) -> HttpAnswer:
    """The answer to a request the server could not read (414, 413, 411, 400)."""
    return oauth_error(status, "invalid_request", detail, {"fault": fault})


def internal_error(exc: BaseException) -> HttpAnswer:
    return oauth_error(500, "server_error", f"erreur interne du simulateur: {type(exc).__name__}")


class OAuthError(Exception):
    """A refusal answered with an OAuth JSON error."""

    def __init__(self, status: int, code: str, description: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = headers or []


class PageError(Exception):
    """A refusal answered with a small HTML page (the browser cannot be sent back to the client)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def allow(request: HttpRequest, *methods: str) -> None:
    """Refuse with 405 (and ``Allow``) a method the endpoint does not serve."""
    if request.method not in methods:
        raise OAuthError(
            405, "invalid_request", f"{request.method[:16]} non servi ici", [("Allow", ", ".join(methods))]
        )


def parameters(request: HttpRequest, *, query: bool, form: bool) -> tuple[dict[str, str], list[str]]:
    """The request's parameters (query and/or form body) and the names given more than once.

    Raises:
        OAuthError: too many fields, not UTF-8, or a body that is not a form.
    """
    pairs: list[tuple[str, str]] = []
    try:
        if query:
            query_text = urlsplit(request.target).query
            pairs += parse_qsl(query_text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
        if form and request.body:
            kind = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if kind != FORM_TYPE:
                raise OAuthError(400, "invalid_request", f"corps attendu en {FORM_TYPE}, pas {kind[:64]!r}")
            text = request.body.decode("utf-8")
            pairs += parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "paramètres non UTF-8") from None
    except ValueError as exc:
        raise OAuthError(400, "invalid_request", f"paramètres illisibles: {exc}") from None
    params: dict[str, str] = {}
    repeated: list[str] = []
    for name, value in pairs:
        if name in params and name not in repeated:
            repeated.append(name)
        params[name] = value
    return params, repeated


def page(title: str, body: str) -> bytes:
    """A minimal HTML page (``body`` is already HTML)."""
    return (
        f'<!doctype html>\n<html lang="fr"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    ).encode()
