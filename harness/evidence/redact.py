"""Remove secrets from recorded exchanges before they are written as evidence.

Simulators record exchanges whole (DESIGN.md); an evidence pack travels to ANS
and to reviewers, so credentials must not. This module replaces secret values
with :data:`MARKER` and says *what* it removed (never the value), keeping every
other byte as recorded so the evidence still shows what the SUT sent: JSON stays
JSON, XML stays XML, a form stays a form.

What counts as a secret:

- PEM private-key blocks (``-----BEGIN … PRIVATE KEY-----``), wherever they appear;
- credential headers: ``Authorization`` and ``Proxy-Authorization`` (the scheme is
  kept: ``Bearer «redacted»``), ``Cookie`` and ``Set-Cookie`` (cookie names kept),
  API-key headers (``ESANTE-API-KEY``, ``X-API-Key``...) and any header whose name
  says secret, password or token;
- fields named ``client_secret``, ``password``, ``access_token``, ``refresh_token``,
  ``id_token``, ``api_key`` and kin, in JSON, in forms and query strings, as XML
  elements (WS-Security ``Password``) or attributes; private members of a JWK;
- SMTP ``AUTH`` initial responses and IMAP ``LOGIN`` passwords.

All functions are pure: they return new values and a list of notes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from harness.simulators.recording import Exchange

MARKER = "«redacted»"
"""What a secret value is replaced with in text."""
ASCII_MARKER = "[redacted]"
"""The marker in bodies that are not UTF-8 (kept single-byte so the encoding stays valid)."""
META_KEY = "redactions"
"""Key of the note added to :attr:`Exchange.meta`: a list of what was redacted, and where."""

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "esante-api-key",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
    }
)
SENSITIVE_FIELDS = frozenset(
    {
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "secret",
        "access_token",
        "refresh_token",
        "id_token",
        "id_token_hint",
        "token",
        "bearer",
        "api_key",
        "apikey",
        "esante_api_key",
        "private_key",
    }
)
XML_SENSITIVE = frozenset(
    {"password", "passwd", "client_secret", "access_token", "refresh_token", "id_token", "api_key"}
)
JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})

_HEADER_HINT = re.compile(r"(api-?key|secret|passw|(^|-)token$)")
_FIELD_SUFFIXES = ("_secret", "_password", "_token", "_api_key", "_apikey")

_PEM_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----"
    r"(?:(?:(?!-----BEGIN ).)*?-----END \1PRIVATE KEY-----|[A-Za-z0-9+/=\s\\:,.-]*)",
    re.DOTALL,
)
_HEADER_LINE = re.compile(r"(?m)^([A-Za-z0-9][A-Za-z0-9_-]{0,80})([ \t]*:[ \t]*)([^\r\n]*)")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*("?)|[^"]+')
"""A JSON string (possibly unterminated) or a run of anything else: scanning with it is linear."""
_JSON_COLON = re.compile(r"^(\s*:\s*)(-?\d[\d.eE+-]*)?")
_PARAM = re.compile(r"(^|[?&;\s])([A-Za-z0-9_.\-]{1,80})=([^&#\s\"'<>]*)", re.MULTILINE)
_XML_ELEMENT = re.compile(r"<((?:[\w.-]+:)?)([\w.-]+)(\s[^<>]*)?>([^<]*)</\1\2\s*>")
_XML_ATTRIBUTE = re.compile(r"(\s)([\w.:-]{1,80})(\s*=\s*)([\"'])(.*?)\4", re.DOTALL)
_SMTP_AUTH = re.compile(
    r"(?im)^(AUTH[ \t]+(PLAIN|LOGIN|XOAUTH2|OAUTHBEARER|CRAM-MD5))(?:([ \t]+)(\S+))?[ \t]*((?:\r?\n[^\r\n]*){0,2})"
)
_IMAP_LOGIN = re.compile(r"(?im)^(\S+[ \t]+LOGIN[ \t]+(?:\"[^\"\r\n]*\"|\S+)[ \t]+)(\"[^\"\r\n]*\"|\S+)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_sensitive_header(name: str) -> bool:
    """True when a header with this name carries a credential."""
    norm = name.strip().lower().replace("_", "-")
    return norm in SENSITIVE_HEADERS or bool(_HEADER_HINT.search(norm))


def _is_sensitive_key(name: str) -> bool:
    """A JSON key or metadata key: a secret field, or a credential header by its exact name."""
    return is_sensitive_field(name) or name.strip().lower() in SENSITIVE_HEADERS


def is_sensitive_field(name: str) -> bool:
    """True when a JSON/form field with this name holds a secret (``client_secret``, ``id_token``...)."""
    norm = _CAMEL.sub("_", name.strip()).lower().replace("-", "_")
    return norm in SENSITIVE_FIELDS or norm.endswith(_FIELD_SUFFIXES) or "password" in norm


def redact_header_value(name: str, value: str, marker: str = MARKER) -> str:
    """The value of a credential header with the secret part replaced.

    The authentication scheme and cookie names stay visible because they are
    part of what conformance checks look at; the credentials go.
    """
    norm = name.strip().lower()
    if norm in ("authorization", "proxy-authorization"):
        scheme, sep, _rest = value.strip().partition(" ")
        return f"{scheme} {marker}" if sep and scheme.isascii() and scheme.isalpha() else marker
    if norm == "cookie":
        return "; ".join(_cookie_pair(part, marker) for part in value.split(";"))
    if norm == "set-cookie":
        first, sep, attributes = value.partition(";")
        return _cookie_pair(first, marker) + (sep + attributes if sep else "")
    return marker


def _cookie_pair(pair: str, marker: str) -> str:
    cookie, sep, _value = pair.strip().partition("=")
    return f"{cookie}={marker}" if sep else marker


class _Notes:
    """Counts what was redacted, for the note in the exchange meta."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, what: str) -> None:
        self.counts[what] += 1

    def render(self) -> list[str]:
        return [what + (f" (×{n})" if n > 1 else "") for what, n in self.counts.items()]


def redact_text(text: str, marker: str = MARKER) -> tuple[str, list[str]]:
    """``text`` with every secret replaced by ``marker``, and notes of what was removed.

    Example:
        >>> redact_text('{"client_secret": "s3cr3t", "scope": "openid"}')
        ('{"client_secret": "«redacted»", "scope": "openid"}', ["JSON field 'client_secret'"])
    """
    notes = _Notes()
    out = _redact_text(text, marker, notes)
    return out, notes.render()


def _redact_text(text: str, marker: str, notes: _Notes) -> str:
    if not text:
        return text
    text = _PEM_KEY.sub(lambda m: _pem(m, marker, notes), text)
    text = _HEADER_LINE.sub(lambda m: _header_line(m, marker, notes), text)
    if '"' in text:
        text = _redact_json_pairs(text, marker, notes)
    if "<" in text:
        text = _XML_ELEMENT.sub(lambda m: _xml_element(m, marker, notes), text)
        text = _XML_ATTRIBUTE.sub(lambda m: _xml_attribute(m, marker, notes), text)
    if "=" in text:
        encoded = quote(marker, safe="[]")
        text = _PARAM.sub(lambda m: _param(m, encoded, notes), text)
    text = _SMTP_AUTH.sub(lambda m: _smtp_auth(m, marker, notes), text)
    return _IMAP_LOGIN.sub(lambda m: _simple(m, marker, notes, "IMAP LOGIN password"), text)


def _pem(match: re.Match[str], marker: str, notes: _Notes) -> str:
    label = match.group(1)
    notes.add(f"PEM {label}private key")
    end = f"-----END {label}PRIVATE KEY-----" if "-----END " in match.group(0) else ""
    return f"-----BEGIN {label}PRIVATE KEY-----{marker}{end}"


def _header_line(match: re.Match[str], marker: str, notes: _Notes) -> str:
    name, sep, value = match.groups()
    if not is_sensitive_header(name) or not value.strip() or marker in value:
        return match.group(0)
    notes.add(f"header '{name}'")
    return name + sep + redact_header_value(name, value, marker)


def _redact_json_pairs(text: str, marker: str, notes: _Notes) -> str:
    """Replace the values of secret keys in every ``"key": value`` pair of ``text``.

    Works on JSON anywhere (a whole body, a JSON string inside a form field, a
    log line) without parsing it, so formatting is kept byte for byte. Strings
    are found by one left-to-right scan, never re-scanned: linear time whatever
    the input (a regex searching for pairs is quadratic on unterminated strings).
    """
    jwk = '"kty"' in text
    matches = list(_JSON_TOKEN.finditer(text))
    tokens = [m.group(0) for m in matches]
    out: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        out.append(token)
        is_key = token.startswith('"') and matches[index].group(1) == '"'
        index += 1
        if not is_key or index >= len(tokens):
            continue
        colon = _JSON_COLON.match(tokens[index])
        if colon is None or (colon.group(2) is None and colon.end() != len(tokens[index])):
            continue
        key = token[1:-1]
        if colon.group(2) is not None:  # a number value, inside the same token
            value, rest = colon.group(2), tokens[index][colon.end() :]
            replacement = _json_value(key, value, marker, notes, jwk)
            if replacement is not None:
                tokens[index] = colon.group(1) + replacement + rest
            continue
        if index + 1 < len(tokens) and tokens[index + 1].startswith('"'):
            replacement = _json_value(key, tokens[index + 1], marker, notes, jwk)
            if replacement is not None:
                tokens[index + 1] = replacement
    return "".join(out)


def _json_value(key: str, value: str, marker: str, notes: _Notes, jwk: bool) -> str | None:
    """The redacted JSON value for ``key``, or None to keep ``value``."""
    if value in ('""', f'"{marker}"') or marker in value:
        return None
    if key.lower() in SENSITIVE_HEADERS and value.startswith('"') and value.endswith('"') and len(value) >= 2:
        notes.add(f"JSON header field '{key}'")
        return f'"{redact_header_value(key, value[1:-1], marker)}"'
    if is_sensitive_field(key) or (jwk and key in JWK_PRIVATE_MEMBERS):
        notes.add(f"JWK private member '{key}'" if key in JWK_PRIVATE_MEMBERS else f"JSON field '{key}'")
        return f'"{marker}"'
    return None


def _xml_element(match: re.Match[str], marker: str, notes: _Notes) -> str:
    prefix, local, attributes, content = match.groups()
    norm = _CAMEL.sub("_", local).lower().replace("-", "_")
    if norm not in XML_SENSITIVE or not content.strip() or content == marker:
        return match.group(0)
    notes.add(f"XML element '{local}'")
    return f"<{prefix}{local}{attributes or ''}>{marker}</{prefix}{local}>"


def _xml_attribute(match: re.Match[str], marker: str, notes: _Notes) -> str:
    space, name, sep, quote_char, value = match.groups()
    local = name.rsplit(":", 1)[-1]
    norm = _CAMEL.sub("_", local).lower().replace("-", "_")
    if norm not in XML_SENSITIVE or not value or value == marker:
        return match.group(0)
    notes.add(f"XML attribute '{name}'")
    return f"{space}{name}{sep}{quote_char}{marker}{quote_char}"


def _param(match: re.Match[str], encoded_marker: str, notes: _Notes) -> str:
    lead, name, value = match.groups()
    if not is_sensitive_field(name) or not value or value == encoded_marker:
        return match.group(0)
    notes.add(f"parameter '{name}'")
    return f"{lead}{name}={encoded_marker}"


def _smtp_auth(match: re.Match[str], marker: str, notes: _Notes) -> str:
    """``AUTH <mechanism> [initial response]``, then the client's continuation lines.

    LOGIN sends user and password on the next two lines when no initial response
    is given (one line after it otherwise); the other mechanisms send at most one.
    """
    command, mechanism, space, initial, following = match.groups()
    wanted = (2 if mechanism.upper() == "LOGIN" else 1) - (1 if initial else 0)
    out = command
    redacted = False
    if initial:
        redacted = initial != marker
        out += space + marker
    parts = re.split(r"(\r?\n)", following)  # ['', sep, line, sep, line]
    for index, line in enumerate(parts[2::2]):
        keep = index >= wanted or line.strip() in ("", "*", marker)
        out += parts[1 + 2 * index] + (line if keep else marker)
        redacted = redacted or not keep
    if redacted:
        notes.add("SMTP AUTH credentials")
    return out


def _simple(match: re.Match[str], marker: str, notes: _Notes, what: str) -> str:
    if match.group(2) == marker:
        return match.group(0)
    notes.add(what)
    return match.group(1) + marker


def redact_bytes(data: bytes) -> tuple[bytes, list[str]]:
    """A body with its secrets replaced, and notes of what was removed.

    UTF-8 bodies get :data:`MARKER`; other bodies are handled as Latin-1 (every
    byte kept) with the ASCII marker, so a non-UTF-8 document keeps its encoding.
    """
    if not data:
        return data, []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out, notes = redact_text(data.decode("latin-1"), ASCII_MARKER)
        return (out.encode("latin-1") if notes else data), notes
    out, notes = redact_text(text, MARKER)
    return (out.encode("utf-8") if notes else data), notes


def redact_meta(value: Any, notes: list[str] | None = None, where: str = "meta") -> Any:
    """A deep copy of exchange metadata with credential headers and secret fields redacted.

    Handles headers as a mapping (``{"Authorization": "..."}``), as a list of
    ``[name, value]`` pairs, and secrets inside any string (PEM keys, query strings).
    Non-string scalars (booleans, numbers) are never secrets and stay as they are.
    """
    sink = notes if notes is not None else []
    return _meta(value, sink, where, force=False)


def _meta(value: Any, notes: list[str], where: str, force: bool) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = str(key)
            if is_sensitive_header(name) or _is_sensitive_key(name):
                label = "header" if is_sensitive_header(name) else "field"
                out[key] = _meta_secret(name, item, notes, f"{where}: {label} '{name}'")
            else:
                out[key] = _meta(item, notes, where if force else f"{where}.{name}", force)
        return out
    if isinstance(value, list | tuple):
        items = [_meta_pair(item, notes, where, force) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, str):
        if force and value and value != MARKER:
            notes.append(where)
            return MARKER
        redacted, found = redact_text(value)
        notes.extend(f"{where}: {what}" for what in found)
        return redacted
    if isinstance(value, bytes):
        redacted_bytes, found = redact_bytes(value)
        notes.extend(f"{where}: {what}" for what in found)
        return redacted_bytes
    return value


def _meta_pair(item: Any, notes: list[str], where: str, force: bool) -> Any:
    """One element of a list; a ``[name, value]`` header pair is redacted by name."""
    if (
        isinstance(item, list | tuple)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], str)
        and is_sensitive_header(item[0])
    ):
        name, value = item
        if not value or value == MARKER:
            return item
        notes.append(f"{where}: header '{name}'")
        pair = [name, redact_header_value(name, value)]
        return pair if isinstance(item, list) else tuple(pair)
    return _meta(item, notes, where, force)


def _meta_secret(name: str, item: Any, notes: list[str], note: str) -> Any:
    """A value under a secret key: strings redacted, containers walked with everything redacted."""
    if isinstance(item, str):
        if not item or MARKER in item:
            return item
        notes.append(note)
        return redact_header_value(name, item) if is_sensitive_header(name) else MARKER
    if isinstance(item, list | tuple):
        return type(item)(_meta_secret(name, sub, notes, note) for sub in item)
    if isinstance(item, dict):
        return _meta(item, notes, note, force=True)
    return item


def redact_exchange(exchange: Exchange) -> Exchange:
    """A copy of ``exchange`` safe to write: secrets out of bodies, action, meta and TLS facts.

    The copy's ``meta["redactions"]`` lists what was removed and where (for
    example ``"request: JSON field 'client_secret'"``); it is absent when
    nothing was.
    """
    notes: list[str] = []
    request, found = redact_bytes(exchange.request)
    notes.extend(f"request: {what}" for what in found)
    response, found = redact_bytes(exchange.response)
    notes.extend(f"response: {what}" for what in found)
    action, found = redact_text(exchange.action)
    notes.extend(f"action: {what}" for what in found)
    meta = {k: v for k, v in exchange.meta.items() if k != META_KEY}
    meta = redact_meta(meta, notes, "meta")
    tls = redact_meta(exchange.tls, notes, "tls")
    if notes:
        meta[META_KEY] = list(dict.fromkeys(notes))
    return replace(exchange, request=request, response=response, action=action, meta=meta, tls=tls)
