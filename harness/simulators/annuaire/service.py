"""The Annuaire Santé FHIR API as the simulator answers it: routing, API key, formats, search, paging, faults.

One request in, one :class:`HttpAnswer` out, never an exception: every refusal is an
``OperationOutcome`` with the status the real gateway documents (400, 401, 403, 404, 405, 406,
410, 503). Bundles and outcomes are built as ``fhir.resources.R4B`` models, so what the practice
reads is valid FHIR (R4B, structurally the same as R4 for these resources).

Paging follows the HAPI FHIR shape the real API shows: the ``next`` link is
``[base]?_getpages=<id>&_getpagesoffset=<n>&_count=<n>&_bundletype=searchset``, the search
being kept in memory (the most recent :data:`MAX_KEPT_SEARCHES`); an unknown id is a 410.
"""

from __future__ import annotations

import hmac
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from harness.simulators.annuaire.directory import RESOURCE_TYPES, Directory
from harness.simulators.annuaire.faults import AnnuaireFaultKind, FaultSwitch
from harness.simulators.annuaire.search import REFERENCE_ELEMENTS, Search, SearchError, parse_search
from harness.simulators.https import HttpAnswer

PATH = "/fhir/v2"
API_KEY_HEADER = "ESANTE-API-KEY"
CONTENT_TYPE = "application/fhir+json;charset=utf-8"
MAX_KEPT_SEARCHES = 500
MAX_FIELDS = 200
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_XML_FORMATS = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml"})
_PAGE_PARAMETERS = frozenset({"_getpages", "_getpagesoffset", "_count", "_bundletype", "_format", "_pretty"})


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the server read from the socket."""

    method: str
    target: str
    headers: Message
    body: bytes


def base_meta() -> dict[str, Any]:
    """The meta keys every Annuaire exchange carries, with their 'nothing known' values."""
    return {
        "interaction": None,
        "resource_type": None,
        "parameters": [],
        "api_key": None,
        "total": None,
        "returned": None,
        "fault": None,
        "outcome": None,
    }


def outcome_json(diagnostics: str, code: str = "invalid", severity: str = "error") -> bytes:
    """An R4B ``OperationOutcome`` with one issue, serialised."""
    model = OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
        }
    )
    return model.model_dump_json().encode("utf-8")


class Refused(Exception):
    """A request answered by an OperationOutcome."""

    def __init__(
        self, status: int, diagnostics: str, code: str = "invalid", headers: list[tuple[str, str]] | None = None
    ):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.headers = headers or []


def refusal(status: int, diagnostics: str, code: str = "invalid", meta: dict[str, Any] | None = None) -> HttpAnswer:
    """An ``OperationOutcome`` answer (also used by the server for unreadable requests)."""
    full = base_meta()
    full.update(meta or {})
    full["outcome"] = diagnostics
    return HttpAnswer(
        status, outcome_json(diagnostics, code), CONTENT_TYPE, meta=full, action=full.get("action", "") or ""
    )


def internal_error(exc: BaseException) -> HttpAnswer:
    return refusal(500, f"erreur interne du simulateur: {type(exc).__name__}", "exception")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A search kept for paging: the matched ids, in order, and what each page includes."""

    search: Search
    ids: tuple[str, ...]


class AnnuaireService:
    """Answers FHIR REST requests from a :class:`Directory`, checking the API key, with injected faults."""

    def __init__(
        self,
        directory: Directory,
        faults: FaultSwitch,
        base_url: Callable[[], str],
        api_key: str,
        page_size: int,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.directory = directory
        self.faults = faults
        self.base_url = base_url
        self.api_key = api_key
        self.page_size = page_size
        self._searches: OrderedDict[str, _Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def forget_searches(self) -> None:
        with self._lock:
            self._searches.clear()

    # -- entry point ---------------------------------------------------------------------------
    def handle(self, request: HttpRequest) -> HttpAnswer:
        meta = base_meta()
        fault = self.faults.take(AnnuaireFaultKind.UNAVAILABLE, AnnuaireFaultKind.SLOW, AnnuaireFaultKind.MALFORMED)
        if fault is not None:
            meta["fault"] = fault.kind.value
        if fault is not None and fault.kind is AnnuaireFaultKind.UNAVAILABLE:
            answer = refusal(503, "service Annuaire Santé indisponible (faute injectée)", "transient", meta)
        elif fault is not None and fault.kind is AnnuaireFaultKind.MALFORMED:
            answer = HttpAnswer(
                200, b'{"resourceType": "Bundle", "type": "searchset", "entry": [<<not json', CONTENT_TYPE, meta=meta
            )
        else:
            try:
                answer = self._answer(request, meta)
            except Refused as refused:
                answer = refusal(refused.status, refused.diagnostics, refused.code, meta)
                answer.headers.extend(refused.headers)
            if fault is not None:
                answer.delay_s = fault.delay_s
        answer.action = answer.action or _action(meta)
        return answer

    def _answer(self, request: HttpRequest, meta: dict[str, Any]) -> HttpAnswer:
        target = urlsplit(request.target)
        path = target.path.rstrip("/")
        if path != PATH and not path.startswith(PATH + "/"):
            raise Refused(404, f"aucune ressource à {target.path!r}: la base FHIR est {PATH}", "not-found")
        segments = [s for s in path[len(PATH) :].split("/") if s]
        self._check_api_key(request, meta)
        pairs = self._parameters(request, target.query, segments)
        meta["parameters"] = [[name, value] for name, value in pairs]
        self._check_format(request, pairs)
        if request.method not in ("GET", "POST"):
            raise Refused(405, f"{request.method} non autorisé: l'API est en lecture seule", "not-supported", _ALLOW)
        if not segments:
            if request.method != "GET" or not any(name == "_getpages" for name, _ in pairs):
                raise Refused(
                    405 if request.method == "POST" else 400, "seule la pagination (_getpages) est servie à la base"
                )
            meta["interaction"] = "search-page"
            return self._page(pairs, meta)
        resource_type = segments[0]
        meta["resource_type"] = resource_type
        if resource_type not in RESOURCE_TYPES:
            raise Refused(
                404,
                f"type de ressource {resource_type[:64]!r} non servi (servis: {', '.join(RESOURCE_TYPES)})",
                "not-found",
            )
        if len(segments) == 1:
            if request.method == "POST":
                raise Refused(405, "création (POST) non autorisée: l'API est en lecture seule", "not-supported", _ALLOW)
            return self._search(resource_type, pairs, meta)
        if len(segments) == 2 and segments[1] == "_search":
            return self._search(resource_type, pairs, meta)
        if len(segments) == 2:
            if request.method != "GET":
                raise Refused(405, f"{request.method} sur une instance non autorisé", "not-supported", _ALLOW)
            return self._read(resource_type, segments[1], pairs, meta)
        raise Refused(400, f"chemin non servi: {path[:200]!r} (opérations et historique non simulés)", "not-supported")

    # -- checks --------------------------------------------------------------------------------
    def _check_api_key(self, request: HttpRequest, meta: dict[str, Any]) -> None:
        given = request.headers.get(API_KEY_HEADER)
        if given is None:
            meta["api_key"] = "missing"
            raise Refused(401, f"en-tête {API_KEY_HEADER} absent", "login")
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.api_key.encode("utf-8")):
            meta["api_key"] = "wrong"
            raise Refused(403, f"clé {API_KEY_HEADER} refusée", "forbidden")
        meta["api_key"] = "valid"

    def _parameters(self, request: HttpRequest, query: str, segments: list[str]) -> list[tuple[str, str]]:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
            if request.method == "POST" and segments[-1:] == ["_search"] and request.body:
                kind = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
                if kind != "application/x-www-form-urlencoded":
                    raise Refused(
                        415, f"_search attend application/x-www-form-urlencoded, pas {kind!r}", "not-supported"
                    )
                form = request.body.decode("utf-8")
                pairs += parse_qsl(form, keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(400, f"paramètres illisibles: {exc}") from None
        return pairs

    def _check_format(self, request: HttpRequest, pairs: list[tuple[str, str]]) -> None:
        formats = [value.strip().lower() for name, value in pairs if name == "_format"]
        if formats:
            wanted = formats[-1].split(";", 1)[0].strip()
            if wanted in _JSON_FORMATS:
                return
            if wanted in _XML_FORMATS:
                raise Refused(406, "XML non servi par le simulateur: utiliser _format=json", "not-supported")
            raise Refused(400, f"_format {formats[-1][:64]!r} inconnu")
        accept = request.headers.get("Accept", "")
        if not accept.strip():
            return
        kinds = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
        if any(k in _JSON_FORMATS or k in ("*/*", "application/*") for k in kinds):
            return
        raise Refused(406, f"Accept {accept[:100]!r} non servi: application/fhir+json seulement", "not-supported")

    # -- interactions --------------------------------------------------------------------------
    def _read(
        self, resource_type: str, resource_id: str, pairs: list[tuple[str, str]], meta: dict[str, Any]
    ) -> HttpAnswer:
        meta["interaction"] = "read"
        unknown = [name for name, _ in pairs if name not in ("_format", "_pretty")]
        if unknown:
            raise Refused(400, f"paramètre {unknown[0][:64]!r} non admis sur une lecture")
        resource = self.directory.get(resource_type, resource_id)
        if resource is None:
            raise Refused(404, f"{resource_type}/{resource_id[:64]} inconnu", "not-found")
        return HttpAnswer(200, json.dumps(resource, ensure_ascii=False).encode("utf-8"), CONTENT_TYPE, meta=meta)

    def _search(self, resource_type: str, pairs: list[tuple[str, str]], meta: dict[str, Any]) -> HttpAnswer:
        meta["interaction"] = "search-type"
        try:
            search = parse_search(resource_type, pairs, self.page_size)
        except SearchError as exc:
            raise Refused(exc.status, str(exc), exc.code) from None
        if self.faults.take(AnnuaireFaultKind.EMPTY) is not None:
            meta["fault"] = AnnuaireFaultKind.EMPTY.value
            ids: tuple[str, ...] = ()
        else:
            try:
                ids = tuple(r["id"] for r in self.directory.all(resource_type) if search.matches(r))
            except SearchError as exc:  # a value only a matcher can judge (active=maybe)
                raise Refused(exc.status, str(exc), exc.code) from None
        count = self.page_size if search.count is None else search.count
        self_link = f"{self.base_url()}/{resource_type}?" + urlencode(
            [(n, v) for n, v in pairs if n != "_format"] or [("_count", str(count))]
        )
        return self._bundle(_Snapshot(search, ids), None, 0, count, self_link, meta)

    def _page(self, pairs: list[tuple[str, str]], meta: dict[str, Any]) -> HttpAnswer:
        unknown = [name for name, _ in pairs if name not in _PAGE_PARAMETERS]
        if unknown:
            raise Refused(400, f"paramètre {unknown[0][:64]!r} non admis en pagination")
        values = dict(pairs)
        token = values.get("_getpages", "")
        with self._lock:
            snapshot = self._searches.get(token)
        if snapshot is None:
            raise Refused(410, f"recherche {token[:64]!r} inconnue ou expirée: relancer la recherche", "not-found")
        meta["resource_type"] = snapshot.search.resource_type
        offset_text = values.get("_getpagesoffset", "0")
        count_text = values.get("_count", str(self.page_size))
        if not (offset_text.isdigit() and len(offset_text) < 10 and count_text.isdigit() and len(count_text) < 10):
            raise Refused(400, "_getpagesoffset et _count doivent être des entiers positifs")
        offset, count = int(offset_text), min(int(count_text), self.page_size)
        if offset > len(snapshot.ids):
            raise Refused(400, f"_getpagesoffset {offset} au-delà des {len(snapshot.ids)} résultats")
        return self._bundle(snapshot, token, offset, count, self._page_link(token, offset, count), meta)

    # -- bundles -------------------------------------------------------------------------------
    def _page_link(self, token: str, offset: int, count: int) -> str:
        query = urlencode(
            [
                ("_getpages", token),
                ("_getpagesoffset", str(offset)),
                ("_count", str(count)),
                ("_bundletype", "searchset"),
            ]
        )
        return f"{self.base_url()}?{query}"

    def _keep(self, snapshot: _Snapshot) -> str:
        token = str(uuid.uuid4())
        with self._lock:
            self._searches[token] = snapshot
            while len(self._searches) > MAX_KEPT_SEARCHES:
                self._searches.popitem(last=False)
        return token

    def _bundle(
        self, snapshot: _Snapshot, token: str | None, offset: int, count: int, self_link: str, meta: dict[str, Any]
    ) -> HttpAnswer:
        """The searchset page ``[offset, offset + count)`` of ``snapshot`` (kept for paging when a next page exists)."""
        search = snapshot.search
        page_ids = snapshot.ids[offset : offset + count]
        base = self.base_url()
        entries: list[dict[str, Any]] = []
        for resource_id in page_ids:
            resource = self.directory.get(search.resource_type, resource_id)
            if resource is not None:
                entries.append(_entry(base, resource, "match"))
        entries += [_entry(base, r, "include") for r in self._included(search, entries)]
        links = [{"relation": "self", "url": self_link}]
        if count and offset + count < len(snapshot.ids):
            token = token or self._keep(snapshot)
            links.append({"relation": "next", "url": self._page_link(token, offset + count, count)})
        if offset > 0 and token:
            links.append({"relation": "previous", "url": self._page_link(token, max(0, offset - count), count)})
        bundle = Bundle.model_validate(
            {
                "resourceType": "Bundle",
                "id": str(uuid.uuid4()),
                "meta": {"lastUpdated": _now()},
                "type": "searchset",
                "total": len(snapshot.ids),
                "link": links,
                "entry": entries or None,
            }
        )
        meta["total"] = len(snapshot.ids)
        meta["returned"] = sum(1 for e in entries if e["search"]["mode"] == "match")
        return HttpAnswer(200, bundle.model_dump_json().encode("utf-8"), CONTENT_TYPE, meta=meta)

    def _included(self, search: Search, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Resources brought by ``_revinclude``/``_include`` for the matched page, without duplicates."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        matched = [e["resource"] for e in entries]
        for revinclude in search.revinclude:
            source, _, _ = revinclude.partition(":")
            element = REFERENCE_ELEMENTS[revinclude]
            wanted = {f"{r['resourceType']}/{r['id']}" for r in matched}
            for candidate in self.directory.all(source):
                if (candidate.get(element) or {}).get("reference") in wanted:
                    found[(source, candidate["id"])] = candidate
        for include in search.include:
            element = REFERENCE_ELEMENTS[include]
            for resource in matched:
                reference = str((resource.get(element) or {}).get("reference", ""))
                kind, _, resource_id = reference.rpartition("/")
                target = self.directory.get(kind.rsplit("/", 1)[-1], resource_id) if kind else None
                if target is not None:
                    found[(target["resourceType"], target["id"])] = target
        return list(found.values())


_ALLOW = [("Allow", "GET, POST")]


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _action(meta: dict[str, Any]) -> str:
    """``search-type Practitioner``, ``read Organization``, ``search-page``: the record's action."""
    return " ".join(str(part) for part in (meta.get("interaction"), meta.get("resource_type")) if part)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
