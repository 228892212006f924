"""Redaction: secrets leave exchanges, structure and everything else stay."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
from lxml import etree

from harness.evidence.redact import (
    ASCII_MARKER,
    MARKER,
    is_sensitive_field,
    is_sensitive_header,
    redact_bytes,
    redact_exchange,
    redact_meta,
    redact_text,
)
from tests.test_evidence_support import insi_exchange, psc_exchange

PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB2x\nAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"


def test_json_secrets_are_replaced_and_the_json_still_parses() -> None:
    body = json.dumps(
        {
            "client_secret": "s3cr3t",
            "access_token": "at",
            "refresh_token": "rt",
            "id_token": "it",
            "password": 1234,
            "token_type": "Bearer",
            "nested": {"api_key": "k", "scope": "openid"},
        },
        indent=2,
    )
    out, notes = redact_text(body)
    data = json.loads(out)
    assert data["client_secret"] == data["access_token"] == data["refresh_token"] == data["id_token"] == MARKER
    assert data["password"] == MARKER and data["nested"]["api_key"] == MARKER
    assert data["token_type"] == "Bearer" and data["nested"]["scope"] == "openid"
    assert "s3cr3t" not in out and "JSON field 'client_secret'" in notes
    assert out.count("\n") == body.count("\n"), "formatting is kept"


def test_jwk_private_members_go_public_ones_stay() -> None:
    out, notes = redact_text('{"kty":"EC","crv":"P-256","x":"pub-x","y":"pub-y","d":"private-d"}')
    data = json.loads(out)
    assert data["d"] == MARKER and data["x"] == "pub-x"
    assert notes == ["JWK private member 'd'"]


def test_form_body_stays_a_form() -> None:
    out, notes = redact_bytes(b"grant_type=authorization_code&code=abc&client_secret=topsecret&password=p")
    fields = parse_qs(out.decode())
    assert fields["client_secret"] == [MARKER] and fields["password"] == [MARKER]
    assert fields["code"] == ["abc"] and fields["grant_type"] == ["authorization_code"]
    assert b"topsecret" not in out and len(notes) == 2


def test_raw_http_headers_keep_scheme_and_cookie_names() -> None:
    text = (
        "POST /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer eyJabc\r\nProxy-Authorization: Basic dXNlcg==\r\n"
        "Cookie: sid=1; theme=dark\r\nESANTE-API-KEY: 0123\r\nX-Custom-Token: tok\r\n\r\nbody"
    )
    out, _notes = redact_text(text)
    assert f"Authorization: Bearer {MARKER}\r\n" in out
    assert f"Proxy-Authorization: Basic {MARKER}\r\n" in out
    assert f"Cookie: sid={MARKER}; theme={MARKER}\r\n" in out
    assert f"ESANTE-API-KEY: {MARKER}\r\n" in out and f"X-Custom-Token: {MARKER}" in out
    assert "Host: h\r\n" in out and out.endswith("\r\n\r\nbody")
    for secret in ("eyJabc", "dXNlcg==", "0123", "tok\r"):
        assert secret not in out


def test_xml_password_redacted_and_xml_stays_well_formed() -> None:
    exchange = insi_exchange()
    out, notes = redact_bytes(exchange.request)
    root = etree.fromstring(out.replace(b"wsse:", b""), parser=etree.XMLParser(resolve_entities=False))
    assert root.findtext(".//Password") == MARKER
    assert root.findtext(".//Username") == "doc"
    assert notes == ["XML element 'Password'"]


def test_xml_attribute_secret() -> None:
    out, _ = redact_text('<conf user="u" password="p4ss"/>')
    assert out == f'<conf user="u" password="{MARKER}"/>'


def test_pem_private_key_blocks_anywhere() -> None:
    out, notes = redact_text(f"before\n{PEM_KEY}after -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")
    assert "MHcCAQEEIB2x" not in out
    assert f"-----BEGIN EC PRIVATE KEY-----{MARKER}-----END EC PRIVATE KEY-----" in out
    assert "-----BEGIN CERTIFICATE-----\nMIIB" in out, "certificates are public"
    assert notes == ["PEM EC private key"]
    inside_json, _ = redact_text(json.dumps({"pem": PEM_KEY}))
    assert "MHcCAQEEIB2x" not in inside_json and json.loads(inside_json)["pem"].startswith("-----BEGIN")


def test_smtp_and_imap_credentials() -> None:
    smtp, _ = redact_text("EHLO me\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nMAIL FROM:<a@b.fr>\r\n")
    assert smtp == f"EHLO me\r\nAUTH LOGIN\r\n{MARKER}\r\n{MARKER}\r\nMAIL FROM:<a@b.fr>\r\n"
    plain, _ = redact_text("AUTH PLAIN AGJvYgBwdw==\r\nQUIT\r\n")
    assert plain == f"AUTH PLAIN {MARKER}\r\nQUIT\r\n"
    imap, _ = redact_text('a1 LOGIN bob "my pass"\r\n')
    assert imap == f"a1 LOGIN bob {MARKER}\r\n"


def test_query_string_in_action() -> None:
    out, notes = redact_text("GET /authorize?client_id=app&id_token_hint=eyJx&state=s1")
    assert "eyJx" not in out and "client_id=app" in out and "state=s1" in out
    assert notes == ["parameter 'id_token_hint'"]


def test_non_utf8_body_keeps_its_encoding() -> None:
    body = "<a>é</a><password>x</password>".encode("latin-1")
    out, notes = redact_bytes(body)
    assert out == f"<a>é</a><password>{ASCII_MARKER}</password>".encode("latin-1") and notes


def test_nothing_to_redact_returns_the_same_bytes() -> None:
    body = b'{"scope": "openid", "token_type": "Bearer"}'
    assert redact_bytes(body) == (body, [])


def test_meta_headers_as_mapping_and_as_pairs() -> None:
    notes: list[str] = []
    meta: dict[str, Any] = {
        "headers": {"Authorization": "Basic abc", "Content-Type": "text/xml"},
        "response_headers": [["Set-Cookie", "sid=9; Path=/; HttpOnly"], ["Server", "sim"]],
        "fault": {"expired_token": True},
        "url": "https://h/cb?code=1&access_token=zzz",
    }
    out = redact_meta(meta, notes)
    assert out["headers"] == {"Authorization": f"Basic {MARKER}", "Content-Type": "text/xml"}
    assert out["response_headers"] == [["Set-Cookie", f"sid={MARKER}; Path=/; HttpOnly"], ["Server", "sim"]]
    assert out["fault"] == {"expired_token": True}, "booleans are not secrets"
    assert "zzz" not in out["url"]
    assert meta["headers"]["Authorization"] == "Basic abc", "the input is not modified"
    assert all("abc" not in n and "zzz" not in n for n in notes)


def test_redact_exchange_notes_what_never_the_value() -> None:
    original = psc_exchange()
    safe = redact_exchange(original)
    assert b"topsecret" not in safe.request and b"at-123" not in safe.response and b"idt-456" not in safe.response
    notes = safe.meta["redactions"]
    assert "request: parameter 'client_secret'" in notes
    assert "response: JSON field 'access_token'" in notes and "response: JSON field 'id_token'" in notes
    assert not any(secret in " ".join(notes) for secret in ("topsecret", "at-123", "idt-456"))
    assert original.request.endswith(b"topsecret"), "the recorded exchange is untouched"
    assert json.loads(safe.response)["token_type"] == "Bearer"


def test_name_classifiers() -> None:
    assert is_sensitive_header("ESANTE-API-KEY") and is_sensitive_header("set-cookie")
    assert not is_sensitive_header("Content-Type") and not is_sensitive_header("Token-Type")
    assert is_sensitive_field("clientSecret") and is_sensitive_field("subject_token")
    assert not is_sensitive_field("token_type") and not is_sensitive_field("token_type_hint")


@pytest.mark.parametrize(
    "body",
    [
        b'"a\\' * 70_000,
        b'"k":' * 50_000,
        b' a="' * 50_000,
        b"&password=" * 20_000,
        b"<" + b"a" * 200_000,
        b"-----BEGIN PRIVATE KEY-----" * 10_000,
        b"<Password>" + b"x" * 200_000,
    ],
    ids=["json-escapes", "colons", "attributes", "params", "xml-name", "pem-begins", "xml-content"],
)
def test_hostile_bodies_take_linear_time(body: bytes) -> None:
    """A quadratic pattern takes minutes on these; linear scanning takes milliseconds."""
    started = time.perf_counter()
    redact_bytes(body)
    assert time.perf_counter() - started < 5.0
