"""The control API (``harness/sut/openapi.yaml``) of the reference system, as a WSGI app.

This is the only door the harness uses to drive the practice. Every answer is JSON;
every error is ``application/problem+json`` with the status the contract implies:
400 for a body that is not JSON, 404 for an unknown identity, document, message or path, 409 when
the operation does not apply (nothing configured, no INS to verify, a document the practice
did not produce, a login taken), 422 for refused data, 502 when the MSSanté operator, the
Annuaire Santé or Pro Santé Connect cannot be used (the reason in the detail), 400 for a PSC
login refused (a bad token, a wrong state...), 401 for a wrong password, 507 for a raw storage too
large to hand out,
and even an unexpected failure is a 500 with a JSON body, never a bare traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from harness.reference import PUBLISHER, SOFTWARE, __version__
from harness.reference.accounts import LoginFailed, LoginTaken
from harness.reference.annuaire_client import AnnuaireClient, AnnuaireUnavailable
from harness.reference.dmp import DmpService
from harness.reference.documents import DocumentService
from harness.reference.feeds import FeedIntegrator
from harness.reference.id_documents import MAX_BODY_BYTES as ID_DOCUMENT_BODY_BYTES
from harness.reference.id_documents import IdDocumentService, StorageTooLarge
from harness.reference.identity import Conflict, IdentityService, UnknownPatient
from harness.reference.model import InvalidInput
from harness.reference.mss import MssService, OperatorUnavailable, UnknownMessage
from harness.reference.portability import MAX_BODY_BYTES as PORTABILITY_BODY_BYTES
from harness.reference.portability import PortabilityService
from harness.reference.psc import PscRejected, PscService
from harness.reference.psc_client import PscUnavailable
from harness.reference.settings import parse_instant
from harness.reference.store import UnknownDocument

log = logging.getLogger("harness.reference")

CAPABILITIES = (
    "identity",
    "insi",
    "identity-feed",
    "worklist",
    "traces",
    "clock",
    "reset",
    "documents",
    "dmp",
    "mssante",
    "annuaire",
    "psc",
    "id-documents",
    "portability",
)
MAX_QUERY = 200
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_PARAMETER = 4096

Handler = Callable[..., tuple[int, Any]]


class BadJson(ValueError):
    """The request body is not JSON (400)."""


class ControlApi:
    """WSGI application routing the control API to the practice's services."""

    def __init__(
        self,
        service: IdentityService,
        feeds: FeedIntegrator,
        mllp: tuple[str, int] | None,
        documents: DocumentService | None = None,
    ) -> None:
        self.service = service
        self.feeds = feeds
        self.mllp = mllp
        self.documents = documents or DocumentService(service)
        self.dmp = DmpService(self.documents)
        self.mss = MssService(self.documents)
        self.psc = PscService(service)
        self.id_documents = IdDocumentService(service)
        self.portability = PortabilityService(self.documents)
        self.base_url = ""
        """The control API's own URL (``http://127.0.0.1:<port>``), the base of the PSC redirect URIs.

        Set by the process once it listens; until then the request's host is used.
        """
        self._routes: dict[str, Handler] = {
            "capabilities": self.capabilities,
            "endpoints": self.put_endpoints,
            "reset": self.reset,
            "get_clock": self.get_clock,
            "put_clock": self.put_clock,
            "list_patients": self.list_patients,
            "create_patient": self.create_patient,
            "get_patient": self.get_patient,
            "patch_patient": self.patch_patient,
            "identity_check": self.identity_check,
            "ins_search": self.ins_search,
            "ins_verify": self.ins_verify,
            "list_documents": self.list_documents,
            "produce_document": self.produce_document,
            "import_document": self.import_document,
            "visibility": self.document_visibility,
            "validate": self.validate_document,
            "dmp_action": self.dmp_action,
            "dmp_consent": self.dmp_consent,
            "mss_send": self.mss_send,
            "mss_fetch": self.mss_fetch,
            "mss_reply": self.mss_reply,
            "annuaire_search": self.annuaire_search,
            "identity_feed": self.identity_feed,
            "worklist": self.worklist,
            "traces": self.traces,
            "psc_client": self.psc_client,
            "psc_login": self.psc_login,
            "psc_callback": self.psc_callback,
            "psc_ciba": self.psc_ciba,
            "psc_session": self.psc_session,
            "psc_logout": self.psc_logout,
            "psc_logged_out": self.psc_logged_out,
            "create_user": self.create_user,
            "user_login": self.user_login,
            "store_id_document": self.store_id_document,
            "list_id_documents": self.list_id_documents,
            "read_id_document": self.read_id_document,
            "record_activity": self.record_activity,
            "raw_storage": self.raw_storage,
            "run_maintenance": self.run_maintenance,
            "create_appointment": self.create_appointment,
            "list_appointments": self.list_appointments,
            "portability_export": self.portability_export,
            "portability_import": self.portability_import,
        }
        self._map = Map(
            [
                Rule("/capabilities", endpoint="capabilities", methods=["GET"]),
                Rule("/config/endpoints", endpoint="endpoints", methods=["PUT"]),
                Rule("/reset", endpoint="reset", methods=["POST"]),
                Rule("/clock", endpoint="get_clock", methods=["GET"]),
                Rule("/clock", endpoint="put_clock", methods=["PUT"]),
                Rule("/patients", endpoint="list_patients", methods=["GET"]),
                Rule("/patients", endpoint="create_patient", methods=["POST"]),
                Rule("/patients/<patient_id>", endpoint="get_patient", methods=["GET"]),
                Rule("/patients/<patient_id>", endpoint="patch_patient", methods=["PATCH"]),
                Rule("/patients/<patient_id>/identity-check", endpoint="identity_check", methods=["POST"]),
                Rule("/patients/<patient_id>/ins/search", endpoint="ins_search", methods=["POST"]),
                Rule("/patients/<patient_id>/ins/verify", endpoint="ins_verify", methods=["POST"]),
                Rule("/patients/<patient_id>/documents", endpoint="list_documents", methods=["GET"]),
                Rule("/patients/<patient_id>/documents", endpoint="produce_document", methods=["POST"]),
                Rule("/patients/<patient_id>/documents/import", endpoint="import_document", methods=["POST"]),
                Rule("/patients/<patient_id>/documents/<doc>/visibility", endpoint="visibility", methods=["PUT"]),
                Rule("/patients/<patient_id>/documents/<doc>/validate", endpoint="validate", methods=["POST"]),
                Rule("/patients/<patient_id>/documents/<doc>/dmp", endpoint="dmp_action", methods=["POST"]),
                Rule("/patients/<patient_id>/dmp-consent", endpoint="dmp_consent", methods=["PUT"]),
                Rule("/patients/<patient_id>/mss-messages", endpoint="mss_send", methods=["POST"]),
                Rule("/mss/fetch", endpoint="mss_fetch", methods=["POST"]),
                Rule("/mss/replies", endpoint="mss_reply", methods=["POST"]),
                Rule("/annuaire/practitioners", endpoint="annuaire_search", methods=["GET"]),
                Rule("/identity-feeds", endpoint="identity_feed", methods=["POST"]),
                Rule("/worklist", endpoint="worklist", methods=["GET"]),
                Rule("/traces", endpoint="traces", methods=["GET"]),
                Rule("/psc/client", endpoint="psc_client", methods=["GET"]),
                Rule("/psc/login", endpoint="psc_login", methods=["POST"]),
                Rule("/psc/callback", endpoint="psc_callback", methods=["GET"]),
                Rule("/psc/ciba", endpoint="psc_ciba", methods=["POST"]),
                Rule("/psc/session", endpoint="psc_session", methods=["GET"]),
                Rule("/psc/logout", endpoint="psc_logout", methods=["POST"]),
                Rule("/psc/logged-out", endpoint="psc_logged_out", methods=["GET"]),
                Rule("/users", endpoint="create_user", methods=["POST"]),
                Rule("/users/login", endpoint="user_login", methods=["POST"]),
                Rule("/patients/<patient_id>/id-documents", endpoint="store_id_document", methods=["POST"]),
                Rule("/patients/<patient_id>/id-documents", endpoint="list_id_documents", methods=["GET"]),
                Rule("/patients/<patient_id>/id-documents/<doc>", endpoint="read_id_document", methods=["GET"]),
                Rule("/patients/<patient_id>/activities", endpoint="record_activity", methods=["POST"]),
                Rule("/storage/raw", endpoint="raw_storage", methods=["GET"]),
                Rule("/maintenance/run", endpoint="run_maintenance", methods=["POST"]),
                Rule("/patients/<patient_id>/appointments", endpoint="create_appointment", methods=["POST"]),
                Rule("/patients/<patient_id>/appointments", endpoint="list_appointments", methods=["GET"]),
                Rule("/portability/exports", endpoint="portability_export", methods=["POST"]),
                Rule("/portability/imports", endpoint="portability_import", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    # -- WSGI -------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        try:
            endpoint, args = self._map.bind_to_environ(request.environ).match()
            status, body = self._routes[str(endpoint)](request, **args)
        except BadJson as exc:
            return _problem(400, "Bad JSON", str(exc))
        except UnknownPatient as exc:
            return _problem(404, "Unknown identity", str(exc))
        except UnknownDocument as exc:
            return _problem(404, "Unknown document", str(exc))
        except UnknownMessage as exc:
            return _problem(404, "Unknown message", str(exc))
        except (Conflict, LoginTaken) as exc:
            return _problem(409, "Not applicable now", str(exc))
        except PscRejected as exc:
            return _problem(400, "Login refused", str(exc))
        except LoginFailed as exc:
            return _problem(401, "Login failed", str(exc))
        except InvalidInput as exc:
            return _problem(422, "Refused", str(exc))
        except (OperatorUnavailable, AnnuaireUnavailable, PscUnavailable) as exc:
            return _problem(502, "National service unavailable", str(exc))
        except StorageTooLarge as exc:
            return _problem(507, "Insufficient storage", str(exc))
        except HTTPException as exc:
            return _problem(exc.code or 500, exc.name, exc.description or "")
        except Exception as exc:
            log.exception("control API %s %s failed", request.method, request.path)
            return _problem(500, "Internal error", f"{type(exc).__name__}: {exc}"[:500])
        if status == 204:
            return Response(status=204)
        return Response(
            json.dumps(body, ensure_ascii=False), status=status, content_type="application/json; charset=utf-8"
        )

    # -- handlers ---------------------------------------------------------------------------------
    def capabilities(self, request: Request) -> tuple[int, Any]:
        mllp = {"host": self.mllp[0], "port": self.mllp[1]} if self.mllp else None
        return 200, {
            "sut": {"publisher": PUBLISHER, "software": SOFTWARE, "version": __version__},
            "capabilities": list(CAPABILITIES),
            "profiles": list(self.service.profiles),
            "mllp": mllp,
        }

    def put_endpoints(self, request: Request) -> tuple[int, Any]:
        self.service.endpoints.apply(_json(request))
        return 204, None

    def reset(self, request: Request) -> tuple[int, Any]:
        self.service.store.wipe_test_data()
        self.id_documents.reset()
        self.psc.reset()
        return 204, None

    def get_clock(self, request: Request) -> tuple[int, Any]:
        return 200, {"now": self.service.clock.iso()}

    def put_clock(self, request: Request) -> tuple[int, Any]:
        body = _json(request)
        if not isinstance(body, dict) or "now" not in body:
            raise InvalidInput("the body must be an object with 'now'")
        self.service.clock.set(parse_instant(body["now"]))
        return 204, None

    def list_patients(self, request: Request) -> tuple[int, Any]:
        typed = request.args.get("ins")
        patients = self.service.all() if typed is None else self.service.find_by_typed_ins(typed)
        return 200, {"items": [p.to_json() for p in patients]}

    def create_patient(self, request: Request) -> tuple[int, Any]:
        return 201, self.service.create(_json(request)).to_json()

    def get_patient(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, self.service.get(patient_id).to_json()

    def patch_patient(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, self.service.update_traits(patient_id, _json(request)).to_json()

    def identity_check(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, self.service.check_identity(patient_id, _json(request)).to_json()

    def ins_search(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, self.service.search(patient_id, _json(request)).to_json()

    def ins_verify(self, request: Request, patient_id: str) -> tuple[int, Any]:
        _json(request, optional=True)
        return 200, self.service.verify(patient_id).to_json()

    def list_documents(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, {"items": self.documents.list_documents(patient_id, request.args.get("sort"))}

    def produce_document(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 201, self.documents.produce(patient_id, _json(request)).to_json()

    def import_document(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 201, self.documents.import_document(patient_id, _json(request))

    def document_visibility(self, request: Request, patient_id: str, doc: str) -> tuple[int, Any]:
        self.dmp.set_visibility(patient_id, doc, _json(request))
        return 204, None

    def validate_document(self, request: Request, patient_id: str, doc: str) -> tuple[int, Any]:
        _json(request, optional=True)
        return 200, self.dmp.validate(patient_id, doc).to_json()

    def dmp_action(self, request: Request, patient_id: str, doc: str) -> tuple[int, Any]:
        return 200, self.dmp.act(patient_id, doc, _json(request)).to_json()

    def dmp_consent(self, request: Request, patient_id: str) -> tuple[int, Any]:
        self.dmp.set_consent(patient_id, _json(request))
        return 204, None

    def mss_send(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, self.mss.send(patient_id, _json(request)).to_json()

    def mss_fetch(self, request: Request) -> tuple[int, Any]:
        _json(request, optional=True)
        return 200, {"messages": [m.to_json() for m in self.mss.fetch()]}

    def mss_reply(self, request: Request) -> tuple[int, Any]:
        return 200, self.mss.reply(_json(request)).to_json()

    def annuaire_search(self, request: Request) -> tuple[int, Any]:
        idnps, family, given = (request.args.get(name, "").strip() for name in ("idnps", "family", "given"))
        if not (idnps or family or given):
            raise InvalidInput("give 'idnps', or 'family' and/or 'given'")
        if max(len(idnps), len(family), len(given)) > MAX_QUERY:
            raise InvalidInput(f"a search term is longer than {MAX_QUERY} characters")
        endpoint = self.service.endpoints.annuaire()
        if endpoint is None:
            raise Conflict("no Annuaire Santé endpoint configured (PUT /config/endpoints)")
        client = AnnuaireClient(endpoint, self.service.call_timeout_s, self.service.defects)
        trace: dict[str, Any] = {
            "timestamp": self.service.clock.iso(),
            "service": "Annuaire Santé",
            "operation": "search Practitioner",
        }
        try:
            found = client.find(idnps, family, given)
        except AnnuaireUnavailable as exc:
            self.service.store.add_trace({**trace, "return_code": "error", "detail": str(exc)})
            raise
        self.service.store.add_trace({**trace, "return_code": "ok", "detail": f"{len(found)} practitioner(s)"})
        return 200, {"correspondents": [c.to_json() for c in found]}

    def identity_feed(self, request: Request) -> tuple[int, Any]:
        body = _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            raise InvalidInput("the body must be an object with a 'message' string (ER7)")
        return 200, self.feeds.receive(body["message"]).to_json()

    def worklist(self, request: Request) -> tuple[int, Any]:
        return 200, {"items": self.service.store.list_work_items()}

    def traces(self, request: Request) -> tuple[int, Any]:
        return 200, {"items": self.service.store.list_traces()}

    # -- Pro Santé Connect and local accounts -------------------------------------------------------
    def psc_client(self, request: Request) -> tuple[int, Any]:
        return 200, self.psc.client(self._base(request))

    def psc_login(self, request: Request) -> tuple[int, Any]:
        _json(request, optional=True)
        return 200, self.psc.start_login(self._base(request))

    def psc_callback(self, request: Request) -> tuple[int, Any]:
        return 200, self.psc.callback(_query(request, ("code", "state", "error", "error_description")))

    def psc_ciba(self, request: Request) -> tuple[int, Any]:
        return 202, self.psc.start_ciba(_json(request))

    def psc_session(self, request: Request) -> tuple[int, Any]:
        return 200, self.psc.session_json()

    def psc_logout(self, request: Request) -> tuple[int, Any]:
        _json(request, optional=True)
        return 200, self.psc.logout(self._base(request))

    def psc_logged_out(self, request: Request) -> tuple[int, Any]:
        return 200, self.psc.logged_out(_query(request, ("state",)))

    def create_user(self, request: Request) -> tuple[int, Any]:
        return 201, self.psc.create_user(_json(request))

    def user_login(self, request: Request) -> tuple[int, Any]:
        return 200, self.psc.password_login(_json(request))

    # -- copies of identity documents ---------------------------------------------------------------
    def store_id_document(self, request: Request, patient_id: str) -> tuple[int, Any]:
        request.max_content_length = ID_DOCUMENT_BODY_BYTES
        return 201, {"document_id": self.id_documents.store_copy(patient_id, _json(request))}

    def list_id_documents(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, {"documents": self.id_documents.list_copies(patient_id)}

    def read_id_document(self, request: Request, patient_id: str, doc: str) -> tuple[int, Any]:
        return 200, self.id_documents.read_copy(patient_id, doc)

    def record_activity(self, request: Request, patient_id: str) -> tuple[int, Any]:
        self.id_documents.record_activity(patient_id, _json(request))
        return 204, None

    def raw_storage(self, request: Request) -> tuple[int, Any]:
        return 200, {"items": [item.to_json() for item in self.id_documents.raw_storage()]}

    def run_maintenance(self, request: Request) -> tuple[int, Any]:
        _json(request, optional=True)
        return 200, {"deleted": self.id_documents.run_maintenance()}

    # -- agenda and data portability ---------------------------------------------------------------
    def create_appointment(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 201, self.portability.create_appointment(patient_id, _json(request))

    def list_appointments(self, request: Request, patient_id: str) -> tuple[int, Any]:
        return 200, self.portability.list_appointments(patient_id)

    def portability_export(self, request: Request) -> tuple[int, Any]:
        return 200, self.portability.export(_json(request))

    def portability_import(self, request: Request) -> tuple[int, Any]:
        request.max_content_length = PORTABILITY_BODY_BYTES
        return 200, self.portability.import_archive(_json(request))

    def _base(self, request: Request) -> str:
        return self.base_url or request.host_url.rstrip("/")


def _json(request: Request, optional: bool = False) -> Any:
    raw = request.get_data(cache=False)
    if not raw.strip():
        if optional:
            return None
        raise BadJson("a JSON body is required")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(f"the body is not JSON: {exc}") from None


def _query(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The named query parameters (the first of each), each cut to a sane length."""
    return {name: request.args.get(name, "")[:MAX_PARAMETER] for name in names if name in request.args}


def _problem(status: int, title: str, detail: str) -> Response:
    body = json.dumps({"title": title, "status": status, "detail": detail}, ensure_ascii=False)
    return Response(body, status=status, content_type="application/problem+json; charset=utf-8")
