"""The crew page's FastAPI app: start a case, follow it, send vitals and the handover.

Built by :func:`create_app` around a running :class:`EdgeAgent`; every action
goes through the agent and so through its durable outbox, and works the same
whether or not the broker is reachable.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from edge_agent.agent import EdgeAgent
from edge_agent.outbox import OutboxFull
from edge_agent.web import views
from edge_agent.web.hub_status import HubStatus
from edge_agent.web.i18n import TEXT, pick_lang, translator
from edge_agent.web.ops import OPS_PATHS, add_ops_routes
from edge_agent.web.security import COOKIE, PinGate, Session, SessionSigner, csrf_ok
from shared.errors import GoldenhourError, InputImageError
from shared.messages import Patient, Vitals

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
UPLOAD_NAME = "crew-xray"
"""Neutral name an upload is stored under while it is diagnosed (file names can carry patient names)."""
OPEN_PATHS = ("/pin", "/static/", "/lang/", *OPS_PATHS)


def create_app(agent: EdgeAgent, *, crew_pin: str | None = None, session_secret: bytes | None = None,
               session_ttl_s: float | None = None) -> FastAPI:
    """The crew page for ``agent``.

    ``crew_pin`` (default: the agent's ``crew_pin`` setting) puts a PIN screen
    in front of everything; ``session_secret`` signs the session cookie
    (default: the ``crew_session_secret`` setting, else random per start).
    """
    settings = agent.settings
    if crew_pin is None and settings.crew_pin is not None:
        crew_pin = settings.crew_pin.get_secret_value()
    if session_secret is None:
        configured = settings.crew_session_secret
        session_secret = (configured.get_secret_value().encode() if configured
                          else secrets.token_bytes(32))
    signer = SessionSigner(session_secret, session_ttl_s or settings.crew_session_ttl_s)
    gate = PinGate(crew_pin or None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["vitals_text"] = views.vitals_text
    hub = HubStatus().attach(agent.messenger)  # the hub's workers, from their retained status
    templates.env.globals["hub_view"] = lambda: hub.view(agent.communicator.connected)
    app = FastAPI(title="goldenhour crew page", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.agent = agent
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def session_and_pin(request: Request, call_next: Any) -> Response:
        session = signer.load(request.cookies.get(COOKIE))
        fresh = session is None
        if session is None:
            session = signer.new(unlocked=not gate.enabled)
        request.state.session = session
        path = request.url.path
        if gate.enabled and not session.unlocked and not path.startswith(OPEN_PATHS):
            if path == "/live":
                response: Response = JSONResponse({"locked": True}, status_code=401)
            else:
                response = RedirectResponse(f"/pin?next={quote(path, safe='')}", status_code=303)
        else:
            response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; "
                                    "frame-ancestors 'none'; form-action 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        new = getattr(request.state, "new_session", None)
        if new is not None:
            session, fresh = new, True
        if fresh:
            response.set_cookie(COOKIE, signer.dump(session), max_age=int(signer.ttl_s),
                                httponly=True, samesite="strict", path="/")
        return response

    def render(request: Request, name: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        lang = pick_lang(request.cookies.get("lang"))
        session: Session = request.state.session
        context.update(request=request, t=translator(lang), lang=lang,
                       other_lang="ko" if lang == "en" else "en", csrf=session.csrf,
                       pin_enabled=gate.enabled, link=views.link(agent),
                       locked=gate.enabled and not session.unlocked,
                       path=request.url.path)
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    async def checked_form(request: Request) -> FormData | None:
        # Text fields keep Starlette's 1 MiB limit and files spool to disk; a body
        # larger than the biggest allowed X-ray is refused before it is parsed.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 1024 * 1024:
            return None
        form = await request.form(max_files=2, max_fields=50)
        token = form.get("csrf_token")
        if not csrf_ok(request.state.session, token if isinstance(token, str) else None):
            logger.warning("crew page form refused: missing or wrong CSRF token",
                           extra={"path": request.url.path})
            return None
        return form

    def refused() -> HTMLResponse:
        return HTMLResponse("<h1>403: form expired or forged; reload the page</h1>",
                            status_code=403)

    @app.get("/health")
    def health() -> dict[str, object]:
        """Liveness, for a supervisor."""
        return {"ok": True, "connected": agent.communicator.connected}

    add_ops_routes(app, agent)  # /health/live, /health/ready, /metrics

    @app.get("/pin", response_class=HTMLResponse)
    def pin_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "pin.html", next=_local(next), error=None)

    @app.post("/pin", response_class=HTMLResponse)
    async def pin_submit(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return refused()
        target = _local(str(form.get("next") or "/"))
        result = gate.check(str(form.get("pin") or ""))
        if result is not True:
            logger.warning("crew page: wrong PIN", extra={"locked_out": result is None})
            return render(request, "pin.html", 401 if result is False else 429, next=target,
                          error="wrong_pin" if result is False else "too_many")
        request.state.new_session = signer.new(unlocked=True)
        logger.info("crew page unlocked")
        return RedirectResponse(target, status_code=303)

    @app.post("/lock")
    async def lock(request: Request) -> Response:
        if await checked_form(request) is None:
            return refused()
        request.state.new_session = signer.new(unlocked=not gate.enabled)
        return RedirectResponse("/pin" if gate.enabled else "/", status_code=303)

    @app.get("/lang/{code}")
    def set_lang(code: str, next: str = "/") -> Response:
        response = RedirectResponse(_local(next), status_code=303)
        if code in TEXT:
            response.set_cookie("lang", code, max_age=365 * 86400, samesite="strict", path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return render(request, "index.html", cases=views.cases(agent), error=None)

    @app.post("/cases")
    async def new_case(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return refused()
        upload = form.get("xray")
        if not isinstance(upload, UploadFile):
            return render(request, "index.html", 400, cases=views.cases(agent),
                          error="xray_file")
        if upload.size is not None and upload.size > MAX_UPLOAD_BYTES:
            return render(request, "index.html", 400, cases=views.cases(agent),
                          error="xray_file")
        data = await upload.read()
        try:
            patient = _patient(form)
            record = await _run_sync(_submit, agent, data, upload.filename or "", patient)
        except ValidationError as exc:
            return render(request, "index.html", 400, cases=views.cases(agent),
                          error_text=_first_error(exc), error=None)
        except InputImageError as exc:
            # The reason (turned film, corrupt file, not a chest X-ray...) names the upload, not its
            # temporary file.
            reason = re.sub(rf"{UPLOAD_NAME}\.\w+", "uploaded image", str(exc))
            reason = reason.removeprefix("uploaded image: ")
            return render(request, "index.html", 400, cases=views.cases(agent),
                          error_text=f"image not usable (PNG, JPEG or DICOM): {reason}"[:400], error=None)
        except OutboxFull:
            return render(request, "index.html", 507, cases=views.cases(agent),
                          error_text="outbox full: case not queued", error=None)
        return RedirectResponse(f"/cases/{record.case_id}", status_code=303)

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: str, sent: str | None = None) -> HTMLResponse:
        view = views.case(agent, case_id)
        if view is None:
            return HTMLResponse("<h1>404: no such case</h1>", status_code=404)
        return render(request, "case.html", case=view, draft=views.draft_handover(view),
                      keys=views.ATMIST_KEYS, sent=sent, error_text=None)

    @app.get("/cases/{case_id}/overlays/{finding}.jpg")
    def overlay(case_id: str, finding: str) -> Response:
        """A top-3 finding's AI heat map over the X-ray, from the case's stored diagnosis."""
        data = views.overlay_jpeg(agent, case_id, finding)
        if data is None:
            return HTMLResponse("<h1>404: no such heat map</h1>", status_code=404)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, no-store"})

    def case_error(request: Request, case_id: str, text: str, status_code: int = 400
                   ) -> HTMLResponse:
        view = views.case(agent, case_id)
        if view is None:
            return HTMLResponse("<h1>404: no such case</h1>", status_code=404)
        return render(request, "case.html", status_code, case=view,
                      draft=views.draft_handover(view), keys=views.ATMIST_KEYS, sent=None,
                      error_text=text)

    @app.post("/cases/{case_id}/{action}")
    async def case_action(request: Request, case_id: str, action: str) -> Response:
        form = await checked_form(request)
        if form is None:
            return refused()
        view = views.case(agent, case_id)
        if view is None or action not in ("vitals", "handover", "cancel", "divert"):
            return HTMLResponse("<h1>404</h1>", status_code=404)
        try:
            if action == "vitals":
                vitals = _vitals(form)
                if vitals is None:
                    return case_error(request, case_id, "vitals: enter at least one sign")
                agent.update(case_id, "vitals", vitals=vitals)
            elif action == "handover":
                handover = {k: str(form.get(f"h_{k}") or "").strip() for k in views.ATMIST_KEYS}
                handover = views.mark_ai({k: v for k, v in handover.items() if v},
                                         view.diagnosis)
                agent.update(case_id, "handover", handover=handover)
            else:
                agent.update(case_id, action, reason=str(form.get("reason") or "").strip()
                             or None)
        except ValidationError as exc:
            return case_error(request, case_id, _first_error(exc))
        except GoldenhourError as exc:
            return case_error(request, case_id, type(exc).__name__, 507)
        return RedirectResponse(f"/cases/{case_id}?sent={action}", status_code=303)

    @app.get("/live")
    def live(request: Request, case: str | None = None) -> JSONResponse:
        """Fragments of the page that change by themselves (polled by crew.js)."""
        lang = pick_lang(request.cookies.get("lang"))
        context: dict[str, Any] = {"t": translator(lang), "link": views.link(agent)}
        fragments = {"link": templates.get_template("_link.html").render(context)}
        if case:
            view = views.case(agent, case)
            if view is not None:
                fragments["case"] = templates.get_template("_case_live.html").render(
                    {**context, "case": view})
        else:
            fragments["cases"] = templates.get_template("_cases.html").render(
                {**context, "cases": views.cases(agent)})
        return JSONResponse({"fragments": fragments}, headers={"Cache-Control": "no-store"})

    return app


async def _run_sync(function: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


def _submit(agent: EdgeAgent, data: bytes, filename: str, patient: Patient | None) -> Any:
    """Write the upload under a neutral name (file names can carry patient
    names) and submit it to the agent."""
    suffix = _suffix(data, filename)
    if len(data) > MAX_UPLOAD_BYTES or not data:
        raise InputImageError("upload empty or too large")
    with tempfile.TemporaryDirectory(prefix="goldenhour-crew-") as folder:
        path = Path(folder) / f"{UPLOAD_NAME}{suffix}"
        path.write_bytes(data)
        return agent.submit(path, patient=patient)


def _suffix(data: bytes, filename: str) -> str:
    if data[128:132] == b"DICM":
        return ".dcm"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    suffix = Path(filename).suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return ".dcm"  # DICOM without the preamble
    raise InputImageError("not a PNG, JPEG or DICOM file")


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _patient(form: FormData) -> Patient | None:
    values: dict[str, Any] = {
        "name": None if form.get("name_unknown") else _text(form, "name"),
        "age_years": _text(form, "age_years"), "sex": _text(form, "sex"),
        "chief_complaint": _text(form, "chief_complaint")}
    values = {k: v for k, v in values.items() if v is not None}
    return Patient.model_validate(values) if values else None


def _vitals(form: FormData) -> Vitals | None:
    values: dict[str, Any] = {key: _text(form, key) for key in
                              ("spo2_pct", "resp_rate", "heart_rate", "systolic_bp",
                               "temperature_c", "avpu")}
    values = {k: v for k, v in values.items() if v is not None}
    if not values and not form.get("supplemental_o2"):
        return None
    if form.get("supplemental_o2"):
        values["supplemental_o2"] = True
    elif values:
        values["supplemental_o2"] = False
    return Vitals.model_validate({"taken_at": datetime.now(UTC), **values})


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _local(target: str) -> str:
    """Only same-site paths as redirect targets."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
