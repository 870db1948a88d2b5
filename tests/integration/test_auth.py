"""Who may do what: every route of the app, for every kind of user, on a real
broker and database; sign-in, its rate limit, tokens, the access log, the
full image and the user commands."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session, select
from starlette.routing import BaseRoute, Mount, Route
from typer.testing import CliRunner

from hospital_hub.api import create_app
from hospital_hub.auth import SESSION_COOKIE, LoginLimiter, SessionStore, create_token, create_user
from hospital_hub.db import make_engine, migrate
from hospital_hub.models import AccessLog, CaseImage, Offer, User, UserCreate, utcnow
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.messages import Envelope, encode
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests import samples
from tests.services import wait_until

PASSWORD = "a long test password"


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(out, format="PNG")
    return out.getvalue()


IMAGE_PNG = _png()
"""A small real grey PNG (the preview renders it)."""
PRINCIPALS = ("anon", "admin", "dispatcher", "doc_a", "doc_b", "er_service_a", "ambulance",
              "other_ambulance")


def _everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(PRINCIPALS, status)


def _rule(anon: int, default: int, **others: int) -> dict[str, int]:
    return {**_everyone(default), "anon": anon, **others}


SERVICES_403 = {"er_service_a": 403, "ambulance": 403, "other_ambulance": 403}
AMBULANCES_403 = {"ambulance": 403, "other_ambulance": 403}
CASE_READ = _rule(401, 200, doc_b=404, **AMBULANCES_403)
"""Admins and dispatchers see every case; an ER's users only cases offered to
their ER (others do not exist for them); ambulances read no case."""

# (method, path) -> expected status per principal. Path parameters are filled
# with a case offered to hospital A (from ambulance "ambulance") and with A.
# Mutating routes get an empty body: 422 means "allowed; the body is checked next".
RULES: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/health"): _everyone(200),
    ("GET", "/health/live"): _everyone(200),
    ("GET", "/health/ready"): _everyone(200),
    ("GET", "/metrics"): _everyone(200),  # open unless GOLDENHOUR_HUB_METRICS_TOKEN is set
    ("GET", "/login"): _everyone(200),
    ("POST", "/login"): _everyone(422),
    ("POST", "/logout"): _everyone(303),
    ("GET", "/openapi.json"): _rule(401, 200),
    ("GET", "/docs"): _rule(303, 200),
    ("GET", "/"): _rule(303, 200, doc_a=303, doc_b=303, **SERVICES_403),
    ("GET", "/er/{hospital_id}"): _rule(303, 200, doc_b=404, **SERVICES_403),
    ("POST", "/er/{hospital_id}/cases/{case_id}/decision"):
        _rule(303, 422, dispatcher=403, doc_b=404, **SERVICES_403),
    ("POST", "/er/{hospital_id}/capacity"):
        _rule(303, 422, dispatcher=403, doc_b=404, **SERVICES_403),
    ("GET", "/api/hospitals"): _rule(401, 200, **AMBULANCES_403),
    ("GET", "/api/hospitals/{hospital_id}"): _rule(401, 200, doc_b=404, **AMBULANCES_403),
    ("PUT", "/api/hospitals/{hospital_id}/capacity"):
        _rule(401, 422, dispatcher=403, doc_b=404, **AMBULANCES_403),
    ("GET", "/api/hospitals/{hospital_id}/offers"): _rule(401, 200, doc_b=404, **AMBULANCES_403),
    ("GET", "/api/ambulances"): _rule(401, 403, admin=200, dispatcher=200),
    ("GET", "/api/cases"): _rule(401, 200, **AMBULANCES_403),
    ("GET", "/api/cases/{case_id}"): CASE_READ,
    ("GET", "/api/cases/{case_id}/record.json"): CASE_READ,
    ("GET", "/api/cases/{case_id}/record.pdf"): CASE_READ,
    ("GET", "/api/cases/{case_id}/thumbnail.jpg"): CASE_READ,
    # 404 here: the sample diagnosis has no heat maps
    ("GET", "/api/cases/{case_id}/overlays/{finding}.jpg"): _rule(401, 404, **AMBULANCES_403),
    ("GET", "/api/cases/{case_id}/image"): CASE_READ,
    ("GET", "/api/cases/{case_id}/preview.png"): CASE_READ,
    ("GET", "/api/cases/{case_id}/fhir"): CASE_READ,
    # 404 here: the image added below is not the one the sample diagnosis read
    ("GET", "/api/cases/{case_id}/dicom/sr"): _rule(401, 404, **AMBULANCES_403),
    ("GET", "/api/cases/{case_id}/dicom/sc"): _rule(401, 404, **AMBULANCES_403),
    ("GET", "/api/events"): _rule(401, 200, **AMBULANCES_403),
    ("POST", "/lang"): _everyone(422),
    ("GET", "/cases"): _rule(303, 200, **SERVICES_403),
    ("GET", "/er/{hospital_id}/cases/{case_id}"): _rule(303, 200, doc_b=404, **SERVICES_403),
    ("GET", "/static/{path}"): _everyone(200),
    ("GET", "/static/swagger/{path}"): _everyone(200),  # Swagger UI's assets for /docs
    # dispatch's re-offer (hospital_hub/dispatch_routes.py): 409/redirect as the case is offered
    ("POST", "/api/cases/{case_id}/reoffer"): _rule(401, 403, admin=409, dispatcher=409),
    ("POST", "/cases/{case_id}/reoffer"): _rule(303, 403, admin=303, dispatcher=303),
    ("GET", "/api/dispatch/alerts"): _rule(401, 403, admin=200, dispatcher=200),
    ("GET", "/api/cases/{case_id}/audit"): _rule(401, 403, admin=200, dispatcher=200),
    ("POST", "/api/cases/{case_id}/offers/{hospital_id}/decision"):
        _rule(401, 422, dispatcher=403, doc_b=404, **AMBULANCES_403),
    ("POST", "/api/cases/{case_id}/updates"):
        _rule(401, 403, admin=422, ambulance=422, other_ambulance=404),
    # model updates (hospital_hub/model_updates.py): 404 here, as this hub offers no model
    ("GET", "/api/models/offer"): _rule(401, 403, admin=404, ambulance=404, other_ambulance=404),
    ("GET", "/api/models/files/{name}/{version}/{filename}"):
        _rule(401, 403, admin=404, ambulance=404, other_ambulance=404),
    # ER verdicts and field performance (hospital_hub/verdict_routes.py)
    ("GET", "/api/cases/{case_id}/verdict"): CASE_READ,
    ("PUT", "/api/cases/{case_id}/verdict"):
        _rule(401, 422, dispatcher=403, doc_b=404, **AMBULANCES_403),
    ("POST", "/er/{hospital_id}/cases/{case_id}/verdict"):
        _rule(303, 422, dispatcher=403, doc_b=404, **SERVICES_403),
    ("GET", "/performance"): _rule(303, 403, admin=200, dispatcher=200),
    ("GET", "/api/performance"): _rule(401, 403, admin=200, dispatcher=200),
}


@dataclass
class Hub:
    """A hub with a case offered to hospital A (not to B) and a client per user."""

    client: TestClient
    runtime: HubRuntime
    case_id: str
    ambulance_id: str
    a: str
    b: str
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)

    def call(self, who: str, method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        """A request as ``who``, cookies from earlier responses forgotten."""
        self.client.cookies.clear()
        headers = {**self.credentials.get(who, {}), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        kwargs.setdefault("follow_redirects", False)
        response = self.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
        self.client.cookies.clear()
        return response

    def sign_in(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.call("anon", "POST", "/login",
                             data={"username": username, "password": password})
        assert response.status_code == 303, response.text
        return {"Cookie": f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"}


def _send_case(mqtt_settings: MqttSettings, uid: str, ambulance_id: str) -> str:
    sender = PahoCommunicator(mqtt_settings, client_id=f"auth-edge-{uid}")
    sender.start()
    case_id = f"20261125T120000Z-{uid}"
    envelope = Envelope.wrap(samples.diagnosis(ambulance_id=ambulance_id), sender=ambulance_id,
                             case_id=case_id)
    sender.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance_id, case_id=case_id),
                   encode(envelope))
    sender.stop()
    return case_id


@pytest.fixture
def hub(database_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[Hub]:
    runtime = HubRuntime(load_hub_settings(hub_id=f"auth-{uid}", database_url=database_url,
                                           mqtt=mqtt_settings))
    with TestClient(create_app(runtime)) as client:
        ambulance_id = f"amb-{uid}"
        case_id = _send_case(mqtt_settings, uid, ambulance_id)

        def offered() -> list[str]:
            with Session(runtime.engine) as session:
                return [o.hospital_id for o in session.exec(
                    select(Offer).where(Offer.case_id == case_id).order_by(Offer.rank)).all()]

        assert wait_until(lambda: len(offered()) == 3)
        a = offered()[0]
        b = next(h for h in ("bos-mgh", "bos-bmc", "bos-tufts", "bos-bwh", "bos-bidmc")
                 if h not in offered())
        hub = Hub(client, runtime, case_id, ambulance_id, a, b)
        people = {"admin": UserCreate(username="root", role="admin", password=PASSWORD),
                  "dispatcher": UserCreate(username="disp", role="dispatcher", password=PASSWORD),
                  "doc_a": UserCreate(username="doc-a", role="er_doctor", hospital_id=a,
                                      password=PASSWORD),
                  "doc_b": UserCreate(username="doc-b", role="er_doctor", hospital_id=b,
                                      password=PASSWORD)}
        for who, spec in people.items():
            create_user(runtime.engine, spec)
            hub.credentials[who] = hub.sign_in(spec.username)
        services = {"er_service_a": UserCreate(username="er-svc-a", role="service", hospital_id=a),
                    "ambulance": UserCreate(username="amb-svc", role="service",
                                            ambulance_id=ambulance_id),
                    "other_ambulance": UserCreate(username="amb-other", role="service",
                                                  ambulance_id="amb-other")}
        for who, spec in services.items():
            create_user(runtime.engine, spec)
            token = create_token(runtime.engine, spec.username)
            hub.credentials[who] = {"Authorization": f"Bearer {token}"}
        _add_image(runtime, case_id, complete=True)
        yield hub


def _add_image(runtime: HubRuntime, case_id: str, complete: bool) -> None:
    data = IMAGE_PNG
    with Session(runtime.engine) as session:
        session.add(CaseImage(case_id=case_id, image_sha256=f"{int(complete)}" * 64,
                              media_type="image/png", total_bytes=len(data), chunk_count=1,
                              received_chunks=1 if complete else 0, complete=complete,
                              completed_at=utcnow() if complete else None,
                              data=data if complete else None))
        session.commit()


def _flatten(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's lazily included router
        if included is not None:
            yield from _flatten(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
            continue
        if isinstance(route, Mount) and route.path in ("/static", "/static/swagger"):
            yield "GET", route.path + "/{path}"  # public assets, no data
            continue
        assert isinstance(route, APIRoute | Route), f"no rule for {route!r} (a mount?)"
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, prefix + route.path


def _routes(hub: Hub) -> list[tuple[str, str]]:
    found = list(_flatten(hub.client.app.routes))  # type: ignore[attr-defined]
    assert ("GET", "/api/cases/{case_id}") in found and ("GET", "/er/{hospital_id}") in found
    return found


def test_every_route_has_a_rule_and_every_user_gets_what_the_rule_says(hub: Hub) -> None:
    routes = _routes(hub)
    missing = sorted(set(routes) - set(RULES))
    assert not missing, f"routes without an access rule (add them to RULES and the docs): {missing}"
    assert not set(RULES) - set(routes), "rules for routes that no longer exist"
    wrong = []
    # Signing out ends the session on the hub: sign out after every other route.
    for method, path in sorted(routes, key=lambda route: route == ("POST", "/logout")):
        url = (path.replace("{case_id}", hub.case_id).replace("{hospital_id}", hub.a)
               .replace("/swagger/{path}", "/swagger/swagger-ui.css").replace("{path}", "console.css"))
        if path == "/api/events":
            url += "?max_s=0"  # the stream ends at once (a test client waits for the end)
        for who, expected in RULES[(method, path)].items():
            got = hub.call(who, method, url).status_code
            if got != expected:
                wrong.append(f"{who} {method} {path}: {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_anonymous_visitors_are_sent_to_login_and_get_nothing_else(hub: Hub) -> None:
    page = hub.call("anon", "GET", f"/er/{hub.a}")
    assert page.headers["location"] == f"/login?next=%2Fer%2F{hub.a}"
    api = hub.call("anon", "GET", f"/api/cases/{hub.case_id}")
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
    assert hub.case_id not in api.text
    assert hub.call("anon", "GET", f"/api/cases/{hub.case_id}",
                    headers={"Cookie": f"{SESSION_COOKIE}=forged.value"}).status_code == 401
    # A cookie with non-ASCII text is just another forgery, not a server error.
    odd = hub.call("anon", "GET", f"/api/cases/{hub.case_id}",
                   headers={"Cookie": f"{SESSION_COOKIE}=x.".encode() + "\u00e9".encode()})
    assert odd.status_code == 401


def test_an_er_sees_only_cases_offered_to_it(hub: Hub) -> None:
    def ids(who: str, **params: str) -> list[str]:
        page = hub.call(who, "GET", "/api/cases", params=params).json()
        return [c["id"] for c in page["items"]]

    assert hub.case_id in ids("dispatcher") and hub.case_id in ids("doc_a")
    assert hub.case_id in ids("er_service_a")
    assert ids("doc_b") == [] and ids("doc_a", hospital_id=hub.b) == []
    assert ids("doc_b", hospital_id=hub.a) == []
    hospitals = hub.call("doc_b", "GET", "/api/hospitals").json()
    assert [h["id"] for h in hospitals] == [hub.b]
    assert hub.case_id not in hub.call("doc_b", "GET", f"/er/{hub.b}").text
    assert hub.call("doc_b", "GET", f"/api/cases/{hub.case_id}").json() == {
        "detail": f"no case {hub.case_id}"}
    assert hub.call("doc_b", "GET", "/api/cases/nope").json() == {"detail": "no case nope"}
    assert hub.call("doc_a", "GET", "/").headers["location"] == f"/er/{hub.a}"
    # In the record, an ER sees its own offer, not how the other ERs answered.
    record = hub.call("doc_a", "GET", f"/api/cases/{hub.case_id}/record.json").json()
    assert {o["hospital_id"] for o in record["offers"]} == {hub.a}
    assert all(e.get("hospital_id") in (None, hub.a) for e in record["events"])
    full = hub.call("dispatcher", "GET", f"/api/cases/{hub.case_id}/record.json").json()
    assert len(full["offers"]) > 1


def test_decisions_capacity_and_updates_only_for_your_own(hub: Hub) -> None:
    decision = {"decision": "decline", "reason": "full", "decided_by": "Dr Who"}
    url = f"/api/cases/{hub.case_id}/offers/{hub.a}/decision"
    assert hub.call("doc_b", "POST", url, json=decision).status_code == 404
    assert hub.call("dispatcher", "POST", url, json=decision).status_code == 403
    declined = hub.call("er_service_a", "POST", url, json=decision)
    assert declined.status_code == 200 and declined.json()["outcome"] == "declined"
    with Session(hub.runtime.engine) as session:
        offer = session.exec(select(Offer).where(Offer.case_id == hub.case_id,
                                                 Offer.hospital_id == hub.a)).one()
    assert offer.decided_by == "Dr Who via er-svc-a"

    capacity = {"er_beds_free": 1, "icu_beds_free": 0, "accepting": True}
    assert hub.call("doc_a", "PUT", f"/api/hospitals/{hub.a}/capacity",
                    json=capacity).status_code == 200
    assert hub.call("doc_a", "PUT", f"/api/hospitals/{hub.b}/capacity",
                    json=capacity).status_code == 404
    assert hub.call("doc_a", "POST", f"/er/{hub.a}/capacity",
                    data={"er_beds_free": 2, "icu_beds_free": 1}).status_code == 303
    assert hub.call("doc_a", "POST", f"/er/{hub.a}/capacity", data={
        "er_beds_free": 2, "icu_beds_free": 1}, headers={
        **hub.credentials["doc_a"], "Origin": "https://evil.example"}).status_code == 403

    handover = {"ambulance_id": hub.ambulance_id, "action": "handover",
                "handover": {"S": "SpO2 88%"}}
    updates = f"/api/cases/{hub.case_id}/updates"
    assert hub.call("ambulance", "POST", updates, json=handover).status_code == 200
    assert hub.call("other_ambulance", "POST", updates, json={
        **handover, "ambulance_id": "amb-other"}).status_code == 404
    assert hub.call("ambulance", "POST", updates, json={
        **handover, "ambulance_id": "amb-other"}).status_code == 403


def test_full_image_only_when_complete(hub: Hub, uid: str, mqtt_settings: MqttSettings) -> None:
    image = hub.call("doc_a", "GET", f"/api/cases/{hub.case_id}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == IMAGE_PNG
    with Session(hub.runtime.engine) as session:
        for row in session.exec(select(CaseImage)).all():
            row.complete, row.data = False, None
            session.add(row)
        session.commit()
    assert hub.call("admin", "GET", f"/api/cases/{hub.case_id}/image").status_code == 404


def test_views_and_changes_are_in_the_audit_not_in_the_record(hub: Hub) -> None:
    assert hub.call("doc_a", "GET", f"/api/cases/{hub.case_id}/record.pdf").status_code == 200
    assert hub.call("doc_a", "GET", f"/api/cases/{hub.case_id}/record.pdf").status_code == 200
    assert hub.call("doc_a", "GET", f"/er/{hub.a}").status_code == 200
    accept = hub.call("doc_a", "POST", f"/api/cases/{hub.case_id}/offers/{hub.a}/decision",
                      json={"decision": "accept"})
    assert accept.status_code == 200
    assert hub.call("dispatcher", "GET", f"/api/cases/{hub.case_id}/audit").status_code == 200
    audit = hub.call("dispatcher", "GET", f"/api/cases/{hub.case_id}/audit").json()
    seen = [(a["username"], a["action"], a["what"]) for a in audit["access"]]
    assert seen.count(("doc-a", "view", "record.pdf")) == 1  # repeats within 10 min: once
    assert ("doc-a", "view", "er_page") in seen
    assert ("doc-a", "change", "decision") in seen
    assert ("disp", "view", "audit") in seen
    change = next(a for a in audit["access"] if a["what"] == "decision")
    assert change["detail"] == {"decision": "accept", "outcome": "accepted"}
    assert change["hospital_id"] == hub.a and change["at"]
    assert any(e["kind"] == "accepted" and e["actor"] == "doc-a" for e in audit["events"])
    record = hub.call("admin", "GET", f"/api/cases/{hub.case_id}/record.json").json()
    assert not any(e["kind"] in ("view", "viewed") for e in record["events"])
    with Session(hub.runtime.engine) as session:
        logins = session.exec(select(AccessLog).where(AccessLog.action == "login")).all()
    assert {row.username for row in logins} >= {"root", "disp", "doc-a", "doc-b"}


def test_login_rate_limit_per_name_and_per_address(hub: Hub) -> None:
    for _ in range(5):
        failed = hub.call("anon", "POST", "/login", data={"username": "doc-a", "password": "nope"})
        assert failed.status_code == 401 and "Wrong username or password" in failed.text
    limited = hub.call("anon", "POST", "/login", data={"username": "doc-a", "password": PASSWORD})
    assert limited.status_code == 429  # even the right password, until the window has passed
    assert 0 < int(limited.headers["retry-after"]) <= 300
    assert SESSION_COOKIE not in limited.cookies
    # The address has 5 failures too: another name from it is refused as well.
    assert hub.call("anon", "POST", "/login", data={
        "username": "disp", "password": PASSWORD}).status_code == 429


@pytest.fixture
def limiter_engine(tmp_path):  # type: ignore[no-untyped-def]
    """A migrated SQLite database for the limiter's counts."""
    engine = make_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_parallel_guesses_cannot_slip_under_the_limit(limiter_engine) -> None:  # type: ignore[no-untyped-def]
    """Each attempt is counted before the password is checked: a burst of
    simultaneous guesses gets exactly max_failures tries."""
    limiter = LoginLimiter(limiter_engine, max_failures=5, window_s=300)
    allowed = [limiter.attempt("doc", "10.0.0.1") is None for _ in range(40)]
    assert allowed.count(True) == 5
    limiter.succeeded("doc", "10.0.0.9")  # a success elsewhere clears the name only
    assert limiter.attempt("doc", "10.0.0.1") is not None  # the address is still limited


def test_the_limiter_window_slides(limiter_engine) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    limiter = LoginLimiter(limiter_engine, max_failures=2, window_s=300, clock=lambda: now[0])
    limiter.failed("doc", "10.0.0.1")
    now[0] += 100
    limiter.failed("DOC", "10.0.0.1")
    assert limiter.retry_after("doc", "10.0.0.1") == 200
    assert limiter.retry_after("doc", "10.0.0.3") is None  # a name is not locked for everyone
    now[0] += 200
    assert limiter.retry_after("doc", "10.0.0.1") is None


def test_sessions_end_on_expiry_and_password_change(hub: Hub) -> None:
    with Session(hub.runtime.engine) as session:
        user = session.exec(select(User).where(User.username == "doc-a")).one()
    now = [10_000.0]
    sessions = SessionStore(hub.runtime.engine, b"k" * 32, max_age_s=60, clock=lambda: now[0])
    cookie = sessions.start(user)
    with Session(hub.runtime.engine) as session:
        assert sessions.user(session, cookie) is not None
        assert SessionStore(hub.runtime.engine, b"x" * 32, 60).user(session, cookie) is None
        now[0] += 61
        assert sessions.user(session, cookie) is None
    create_user(hub.runtime.engine, UserCreate(username="doc-a", role="er_doctor",
                                               hospital_id=hub.a, password="a new password!"),
                replace=True)
    assert hub.call("doc_a", "GET", f"/er/{hub.a}").status_code == 303


def test_tokens_are_stored_hashed_and_bad_ones_refused(hub: Hub) -> None:
    token = hub.credentials["er_service_a"]["Authorization"].split()[1]
    with Session(hub.runtime.engine) as session:
        stored = session.exec(select(User).where(User.username == "er-svc-a")).one()
    assert stored.token_hash and token not in stored.token_hash and stored.password_hash is None
    for header in (f"Bearer {token}x", "Bearer ", f"Basic {token}"):
        assert hub.call("anon", "GET", "/api/cases",
                        headers={"Authorization": header}).status_code == 401
    assert hub.call("anon", "POST", "/login", data={"username": "er-svc-a",
                                                    "password": "whatever"}).status_code == 401
    create_token(hub.runtime.engine, "er-svc-a")  # a new token retires the old one
    assert hub.call("er_service_a", "GET", "/api/cases").status_code == 401


def test_user_commands(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.cli import _register_plugins, app

    _register_plugins()
    monkeypatch.setenv("GOLDENHOUR_HUB_DATABASE_URL", database_url)
    runner = CliRunner()
    made = runner.invoke(app, ["hub", "create-user", "doc", "--role", "er_doctor", "--hospital-id",
                               "bos-mgh", "--password-stdin"], input="doctor's password\n")
    assert made.exit_code == 0, made.output
    assert "doc: er_doctor at bos-mgh" in made.output
    again = runner.invoke(app, ["hub", "create-user", "doc", "--role", "dispatcher",
                                "--password-stdin"], input="doctor's password\n")
    assert again.exit_code == 1 and "exists" in again.output
    short = runner.invoke(app, ["hub", "create-user", "x", "--role", "admin", "--password-stdin"],
                          input="short\n")
    assert short.exit_code == 1 and "short" not in short.output.split(":", 1)[1]
    unbound = runner.invoke(app, ["hub", "create-user", "d2", "--role", "er_doctor",
                                  "--password-stdin"], input="doctor's password\n")
    assert unbound.exit_code == 1 and "needs a hospital id" in unbound.output
    service = runner.invoke(app, ["hub", "create-user", "gw", "--role", "service",
                                  "--hospital-id", "bos-mgh"])
    assert service.exit_code == 0, service.output
    token = runner.invoke(app, ["hub", "create-token", "gw"])
    assert token.exit_code == 0 and re.fullmatch(r"ghs_[\w-]{43}\n", token.output)
    assert runner.invoke(app, ["hub", "create-token", "doc"]).exit_code == 1
    listed = runner.invoke(app, ["hub", "list-users"]).output
    assert re.search(r"doc +er_doctor +bos-mgh +password +active", listed)
    assert re.search(r"gw +service +bos-mgh +token +active", listed)
    assert token.output.strip() not in listed
